"""Who speaks when in a mono call: the voiceprints of its speech windows clustered into 1 to
``max_speakers`` voices (scikit-learn's agglomerative clustering, cosine distance, average
linkage, the count set by a distance threshold; a long call's voices are found on at most
``MAX_CLUSTERED`` windows spread over it), tiny clusters folded into the nearest voice,
then a re-segmentation pass (each window to its nearest voice centroid, a majority vote over
its neighbours); a speaker's segments are the speech frames inside its windows' spans (pauses
shorter than ``segment_gap_seconds`` bridged), written as RTTM.
"""

import numpy as np

MIN_WINDOWS = 2  # a "voice" heard in fewer windows is folded into the nearest one
MAX_CLUSTERED = 1000  # windows clustered at most (about 17 minutes of speech at a 1 s hop)


def first_appearance(labels):
    """Labels renumbered 0, 1, ... in order of first appearance."""
    order = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    return np.array([order[int(lab)] for lab in labels], dtype=int)


def centroids(embs, labels):
    cents = np.stack([embs[labels == k].mean(0) for k in range(labels.max() + 1)])
    return cents / np.linalg.norm(cents, axis=1, keepdims=True).clip(min=1e-8)


def cluster(embs, max_speakers=4, threshold=0.5):
    """Speaker label of each window (``embs``: (n, D) unit vectors in time order)."""
    from sklearn.cluster import AgglomerativeClustering

    embs = np.asarray(embs, dtype=np.float64)
    n = len(embs)
    if n < 2 or max_speakers == 1:
        return np.zeros(n, dtype=int)
    # a long call: the voices are found on MAX_CLUSTERED windows spread evenly over it (the
    # clustering's time and memory grow with the square of the count), then every window
    # goes to its nearest voice
    picked = np.unique(np.linspace(0, n - 1, min(n, MAX_CLUSTERED)).round().astype(int))
    sample = embs[picked]
    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=threshold).fit(sample).labels_
    if labels.max() + 1 > max_speakers:
        labels = AgglomerativeClustering(n_clusters=max_speakers, metric="cosine", linkage="average").fit(sample).labels_
    labels = fold_small(sample, first_appearance(labels))
    if len(picked) < n:
        labels = first_appearance((embs @ centroids(sample, labels).T).argmax(1))
    return resegment(embs, labels)


def fold_small(embs, labels):
    """Clusters of fewer than MIN_WINDOWS windows joined to the nearest larger one."""
    counts = np.bincount(labels)
    big = [k for k, c in enumerate(counts) if c >= MIN_WINDOWS]
    if not big or len(big) == len(counts):
        return labels
    cents = centroids(embs, labels)
    for k in set(range(len(counts))) - set(big):
        nearest = big[int(np.argmax(cents[big] @ cents[k]))]
        labels = np.where(labels == k, nearest, labels)
    return first_appearance(labels)


def resegment(embs, labels, passes=2):
    """Each window to its nearest voice centroid, then a majority vote of it and its two
    neighbours (a one-window flicker inside a turn is not a speaker change)."""
    for _ in range(passes):
        if labels.max() == 0:
            break
        labels = (embs @ centroids(embs, labels).T).argmax(1)
        smooth = labels.copy()
        # a trio's majority differs from its middle only when both neighbours agree against it
        flip = np.flatnonzero(labels[:-2] == labels[2:]) + 1
        smooth[flip] = labels[flip - 1]
        labels = first_appearance(fold_small(embs, first_appearance(smooth)))
    return labels


def window_spans(windows):
    """The part of its speech stretch each window owns: ``windows`` are (start, end, run id)
    in seconds; consecutive windows of a run split at the midpoint of their centres."""
    spans = []
    for i, (a, b, run) in enumerate(windows):
        lo = a if i == 0 or windows[i - 1][2] != run else (windows[i - 1][0] + windows[i - 1][1] + a + b) / 4
        hi = b if i == len(windows) - 1 or windows[i + 1][2] != run else (a + b + windows[i + 1][0] + windows[i + 1][1]) / 4
        spans.append((lo, hi))
    return spans


def segments(spans, labels, speaker, gap=0.3):
    """[[start, end], ...] seconds of ``speaker``: its spans merged across gaps <= ``gap``."""
    return merge_close([span for span, lab in zip(spans, labels) if lab == speaker], gap)


def merge_close(segs, gap):
    """Sorted [start, end] pairs merged across gaps <= ``gap`` seconds."""
    out = []
    for a, b in segs:
        if out and a - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [[round(a, 3), round(b, 3)] for a, b in out]


def within(segs, speech, shortest=0.05):
    """The parts of ``segs`` ([[start, end], ...] s, sorted) inside the ``speech`` stretches
    (sorted (start, end) pairs): a speaker's segments are its speech, not the pauses its windows
    span; pieces shorter than ``shortest`` seconds are left out."""
    out, j = [], 0
    for a, b in segs:
        while j < len(speech) and speech[j][1] <= a:
            j += 1
        k = j
        while k < len(speech) and speech[k][0] < b:
            lo, hi = max(a, speech[k][0]), min(b, speech[k][1])
            if hi - lo >= shortest:
                out.append([round(lo, 3), round(hi, 3)])
            k += 1
    return out


def rttm_lines(file_id, speaker_segments):
    """RTTM (the format diarization tools read): one SPEAKER line per segment."""
    lines = []
    for speaker, segs in speaker_segments.items():
        for a, b in segs:
            lines.append(f"SPEAKER {file_id} 1 {a:.3f} {b - a:.3f} <NA> <NA> {speaker} <NA> <NA>")
    return sorted(lines, key=lambda line: float(line.split()[3]))
