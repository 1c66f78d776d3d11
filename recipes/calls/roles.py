"""Who is the caller: the roles of a call's voices (caller / agent / unknown).

- ``caller_channel`` (stereo): that channel's party is the caller, the other the agent.
- Enrolled voices (a folder of agent recordings and IVR prompts, recipes/calls/voiceprint.py):
  each enrolled voice is first matched to the one voice most similar to it (cosine >=
  ``agent_threshold``); a voice still at least that similar to an enrolled one (the same agent
  heard in another recording condition) is the call center's side too. The caller is the voice
  with most speech among the others; when every voice left sounds like an enrolled one, the one
  least like them all (GE2E voiceprints of 8 kHz speech put even two different people 0.7 apart).
  A voice of fewer than ``CALLER_MIN_WINDOWS`` windows (a stray fragment of the agent, say) is the caller
  only when no larger voice is left.
- When every voice of a mono call is matched to an enrolled one, the caller's windows were
  clustered into one of them: ``split_enrolled_voice`` splits off the windows of a matched voice
  that are clearly farther from its enrolled voiceprint.
- ``first_speaker_role``: the first voice heard is the agent (or the caller); else ``unknown``.
"""

import numpy as np
import torch

from recipes.calls.diarize import centroids

CALLER_MIN_WINDOWS = 3  # a caller, and each group of a split voice: at least this many windows (2 are noise)


def match_enrolled(sims, threshold):
    """{voice: enrolled index}: each enrolled voice to the one voice most similar to it, greedily
    by similarity, when at least ``threshold`` (``sims``: (enrolled, voices) cosines)."""
    matched, used = {}, set()
    for i in np.argsort(-sims, axis=None):
        a, j = divmod(int(i), sims.shape[1])
        if sims[a, j] < threshold:
            break
        if j not in matched and a not in used:
            matched[j] = a
            used.add(a)
    return matched


def similarity_cut(values):
    """0/1 groups of 1-D ``values``: Otsu's cut, the threshold that minimises the summed
    within-group squared deviation (1 = the higher group)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    k = np.arange(1, len(v))  # values in the lower group, for each cut
    s1, s2 = np.cumsum(v), np.cumsum(v ** 2)
    low = s2[:-1] - s1[:-1] ** 2 / k
    high = (s2[-1] - s2[:-1]) - (s1[-1] - s1[:-1]) ** 2 / (len(v) - k)
    i = int(np.argmin(low + high))
    return (np.asarray(values) > (v[i] + v[i + 1]) / 2).astype(int)


def split_enrolled_voice(embs, labels, enrolled, threshold, margin):
    """Window labels of a mono call with one voice more when every voice is an enrolled one: matched
    to it, or a piece of it (within ``margin`` as like its enrolled voiceprint as the matched voice).
    Another voice heard, however like an enrolled one it sounds, is where the caller is (a split
    would mostly cut a fragment off the agent's voice). The windows of each matched voice are
    cut in two by their similarity to its enrolled voiceprint (``similarity_cut``: the axis that
    tells the agent from a caller clustered into it, not, say, two recording conditions of one
    person); the voice whose two groups' centroids differ most in that similarity, by at least
    ``margin``, loses its farther group to a new voice (``embs``: (n, D) unit vectors,
    ``enrolled``: (E, D))."""
    sims = enrolled @ centroids(embs, labels).T
    matched = match_enrolled(sims, threshold)
    matched_sim = {a: sims[a, v] for v, a in matched.items()}
    for v in range(labels.max() + 1):
        a = int(sims[:, v].argmax())
        if v not in matched and (sims[a, v] < threshold or a not in matched_sim
                                 or sims[a, v] < matched_sim[a] - margin):
            return labels  # a voice besides the enrolled ones (not a piece of one) was heard
    best = None
    for voice, a in matched.items():
        idx = np.flatnonzero(labels == voice)
        if len(idx) < 2 * CALLER_MIN_WINDOWS:
            continue
        groups = similarity_cut(embs[idx] @ enrolled[a])
        if np.bincount(groups, minlength=2).min() < CALLER_MIN_WINDOWS:
            continue
        to_enrolled = centroids(embs[idx], groups) @ enrolled[a]
        gap = float(to_enrolled.max() - to_enrolled.min())
        if gap >= margin and (best is None or gap > best[0]):
            best = gap, idx[groups == int(to_enrolled.argmin())]
    if best is None:
        return labels
    out = labels.copy()
    out[best[1]] = labels.max() + 1
    return out


def assign_roles(speakers, caller, agent_prints, opts, notes):
    """Sets ``role`` (caller / agent / unknown) and, for an enrolled agent, ``agent`` on each
    speaker dict (``channel``, ``voiceprint``, ``windows``, ``speech_seconds``, ``segments``)."""
    for s in speakers:
        s["role"], s["agent"] = "unknown", None
    if not speakers:
        return
    if caller is not None:
        for s in speakers:
            s["role"] = "caller" if s["channel"] == caller else "agent"
        return
    if agent_prints:
        names = list(agent_prints)
        sims = (torch.stack([agent_prints[n] for n in names]) @ torch.stack([s["voiceprint"] for s in speakers]).T).numpy()
        for j, s in enumerate(speakers):
            s["agent_similarity"] = round(float(sims[:, j].max()), 3)
        for j, a in match_enrolled(sims, opts.agent_threshold).items():
            speakers[j]["role"], speakers[j]["agent"] = "agent", names[a]
        free = [s for s in speakers if s["role"] != "agent"]
        if not free:
            notes.append("every voice matches an enrolled agent: no caller found")
            return
        free = [s for s in free if s["windows"] >= CALLER_MIN_WINDOWS] or free
        unlike = [s for s in free if s["agent_similarity"] < opts.agent_threshold]
        if unlike:
            callr = max(unlike, key=lambda s: s["speech_seconds"])
        else:
            callr = min(free, key=lambda s: s["agent_similarity"])
            notes.append("every voice sounds like an enrolled one: the least like them is taken for the caller")
        for j, s in enumerate(speakers):
            if s is callr:
                s["role"] = "caller"
            elif s["role"] == "unknown" and s["agent_similarity"] >= opts.agent_threshold:
                s["role"], s["agent"] = "agent", names[int(sims[:, j].argmax())]  # the same agent, heard otherwise
        return
    if opts.first_speaker_role:
        first = min(speakers, key=lambda s: s["segments"][0][0] if s["segments"] else float("inf"))
        other = "caller" if opts.first_speaker_role == "agent" else "agent"
        for s in speakers:
            s["role"] = opts.first_speaker_role if s is first else (other if len(speakers) == 2 else "unknown")
