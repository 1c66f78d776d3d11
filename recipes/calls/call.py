"""The caller, not the call: one record per speaker of a two-party recording.

A call is read in blocks (recipes/calls/reader.py). In each block, per channel, the speech
frames come from the one speech decision of the model's folder (recipes/data/speech.py).

- **Stereo** (one party per channel): a speech frame of a channel is its party's when the other
  channel has no speech there, or speech at least ``dominance_db`` quieter than this channel
  (measured above the other channel's line-noise floor): crosstalk and echo put the other party
  15-30 dB lower, so they are never profiled, and overlapped speech (within ``dominance_db``) is
  left out of both profiles. Short pauses inside a party's speech belong to its turn (as in mono),
  never the frames of the other party or of overlap. A stereo file whose channels carry the same
  signal is a mono call (said so).
- **Mono**: the speech is cut into windows, each gets a voiceprint (recipes/calls/voiceprint.py)
  and the voiceprints are clustered into 1-``max_speakers`` voices (recipes/calls/diarize.py).

Each speaker's profile is the mean of the model's probabilities over its windows (as
``classify_file`` averages a recording's windows), with the hierarchy-consistent age pair.
Roles (recipes/calls/roles.py): ``caller_channel`` for stereo; enrolled agents (a folder of
agent recordings: a voice at least ``agent_threshold`` cosine-similar to one is that agent, the
caller is the voice farthest from them); ``first_speaker_role``; else every speaker is ``unknown``.
"""

import os

import numpy as np
import torch

from recipes.calls.diarize import cluster, merge_close, rttm_lines, segments, window_spans, within
from recipes.calls.options import CallOptions
from recipes.calls.reader import blocks, call_info, channels_identical, mono_of
from recipes.calls.roles import assign_roles, split_enrolled_voice
from recipes.calls.voiceprint import Voiceprints
from recipes.data.audio import clipped_fraction
from recipes.data.speech import SpeechConfig, fill_short_gaps, frame_length, frame_levels_dbfs, speech_mask
from recipes.labels import TASKS

CHANNEL_NAMES = {0: "left", 1: "right"}
CALLER_CHANNELS = {"left": 0, "right": 1, "0": 0, "1": 1}


def parse_caller_channel(value):
    """left / right / 0 / 1 (or None) -> channel index."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in CALLER_CHANNELS:
        raise ValueError(f"caller_channel must be left, right, 0 or 1, got {value!r}")
    return CALLER_CHANNELS[key]


def runs(mask):
    """[(first, last + 1), ...] of the True stretches of a bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


NOISE_FLOOR_PERCENTILE = 10  # a channel's line-noise floor: this percentile of its frame powers in the block


def above_floor_db(levels_db):
    """Frame levels (dBFS) less the channel's noise floor (power subtraction): the level of what
    the channel carries above its line noise (crosstalk, speech)."""
    power = 10 ** (levels_db / 10)
    return 10 * np.log10(np.maximum(power - np.percentile(power, NOISE_FLOOR_PERCENTILE), 1e-12))


def stream_masks(x, sample_rate, speech, dominance_db, mono):
    """Per stream (channel, or 0 for mono), (the bool frame mask of its own speech, the frames its
    windows must not reach: another party's speech or overlap; None for mono)."""
    if mono:
        return {0: (speech_mask(mono_of(x), sample_rate, speech).numpy(), None)}
    masks = {c: speech_mask(x[c], sample_rate, speech).numpy() for c in range(x.shape[0])}
    levels = {c: frame_levels_dbfs(x[c], sample_rate, speech).numpy() for c in range(x.shape[0])}
    out = {}
    for c in masks:
        rest = [o for o in levels if o != c]
        if not rest:
            out[c] = masks[c], None
            continue
        # another channel's speech is crosstalk of this party when it is dominance_db below this
        # channel (above its own line noise: that noise can be as loud as this party's quiet frames)
        others = np.max([above_floor_db(levels[o]) for o in rest], axis=0)
        blocked = np.any([masks[o] for o in rest], axis=0) & (levels[c] - others < dominance_db)
        out[c] = masks[c] & ~blocked, blocked  # its party alone; overlap left out of both
    return out


def cut_windows(mask, n_frame, sample_rate, opts, offset_s, run_base, blocked=None):
    """(start sample, end sample, start s, end s, run id) windows of the speech runs of a mask;
    short pauses inside speech belong to the turn, except ``blocked`` frames (another party's)."""
    mask = fill_short_gaps(mask, int(opts.fill_gap_seconds * sample_rate / n_frame))
    if blocked is not None:
        mask = mask & ~blocked
    win, hop = int(opts.window_seconds * sample_rate), int(opts.hop_seconds * sample_rate)
    shortest = int(opts.min_window_seconds * sample_rate)
    out = []
    for k, (f0, f1) in enumerate(runs(mask)):
        a, b = f0 * n_frame, f1 * n_frame
        if b - a < shortest:
            continue
        starts = list(range(a, max(a + 1, b - win + 1), hop))
        if starts[-1] + win < b:
            starts.append(b - win)
        for s in starts:
            e = min(s + win, b)
            out.append((s, e, float(offset_s + s / sample_rate), float(offset_s + e / sample_rate), run_base + k))
    return out


class CallAccumulator:
    """The windows of a call as they are read: model probabilities, voiceprints, times."""

    def __init__(self, profiler, opts, voiceprints):
        self.profiler, self.opts, self.voiceprints = profiler, opts, voiceprints
        self.streams = {}  # stream -> dict of lists
        self.speech = {}  # stream -> [(start s, end s)] of its speech frames (pauses not filled)
        self.runs = 0

    def add(self, x, offset_s, sample_rate, masks, n_frame):
        for stream, (mask, blocked) in masks.items():
            sig = mono_of(x) if len(masks) == 1 else x[stream]
            # pauses belong to the turn; stereo: never the frames of another party or of overlap
            wins = cut_windows(mask, n_frame, sample_rate, self.opts, offset_s, self.runs, blocked)
            self.speech.setdefault(stream, []).extend(
                (offset_s + f0 * n_frame / sample_rate, offset_s + f1 * n_frame / sample_rate) for f0, f1 in runs(mask))
            self.runs += len(runs(mask))  # run ids unique across blocks (closing gaps only merges runs)
            if not wins:
                continue
            chunks = [sig[a:b] for a, b, *_ in wins]
            probs, embs = self.profiler.run_windows(chunks)
            prints = self.voiceprints.embed(chunks, model_embeddings=embs)
            store = self.streams.setdefault(stream, {"probs": [], "emb": [], "print": [], "times": []})
            store["probs"].append(probs)
            store["emb"].append(embs)
            store["print"].append(prints)
            store["times"] += [(ta, tb, run) for _, _, ta, tb, run in wins]

    def stream(self, stream):
        s = self.streams[stream]
        probs = {t: torch.cat([p[t] for p in s["probs"]]) for t in s["probs"][0]}
        return probs, torch.cat(s["emb"]), torch.cat(s["print"]), s["times"]


def speaker_record(profiler, probs, emb, sel, n_all):
    """The profile of the windows ``sel`` (bool tensor) of a stream: the interface's result dict."""
    mean = {t: p[sel].mean(0) for t, p in probs.items()}
    res = profiler._result(mean, emb[sel].mean(0), n_all, int(sel.sum()))
    gender = probs["gender"][sel].argmax(1)
    label = profiler.class_names["gender"].index(res["gender"]["label"])
    res["confidence"] = round(float((gender == label).float().mean()), 3)  # windows agreeing on gender
    return res


class CallSession:
    """The speakers of one call as its blocks arrive (a file read in blocks, or a live stream):
    ``add_block`` takes each (channels, samples) block at the model's rate, ``records`` gives the
    per-speaker records (``final``: the voices of a mono call clustered over the whole call;
    else each window goes to the nearest voice heard so far, bounded work per block)."""

    def __init__(self, profiler, n_channels, mono, caller_channel=None, agents=None, options=None):
        self.profiler = profiler
        self.opts = CallOptions.coerce(options if options is not None else getattr(profiler.hparams, "call", None))
        self.speech = SpeechConfig.coerce(getattr(profiler.hparams, "speech", None))
        self.sr, self.n_channels, self.mono = profiler.sample_rate, n_channels, mono
        self.voiceprints = Voiceprints(self.opts.voiceprint, profiler.model, self.sr, profiler.device)
        self.acc = CallAccumulator(profiler, self.opts, self.voiceprints)
        self.n_frame = frame_length(self.sr, self.speech)
        self.notes, self.flat, self.total, self.seconds = [], 0.0, 0, 0.0
        self.caller = parse_caller_channel(caller_channel)
        if self.caller is not None and (mono or self.caller >= n_channels):
            self.notes.append(f"caller_channel {caller_channel} ignored: the call is mono")
            self.caller = None
        self.agent_prints = self.voiceprints.enrol(agents, self.opts.window_seconds) if agents else {}
        self.online = {}  # stream -> voice centroids of the running (online) assignment

    def add_block(self, offset, x):
        self.flat += clipped_fraction(x.reshape(-1)) * x.numel()
        self.total += x.numel()
        self.seconds = max(self.seconds, offset + x.shape[1] / self.sr)
        self.acc.add(x, offset, self.sr, stream_masks(x, self.sr, self.speech, self.opts.dominance_db, self.mono),
                     self.n_frame)

    def labels(self, stream, prints, final):
        if not self.mono:
            return np.zeros(len(prints), dtype=int)
        if final:
            labels = cluster(prints.numpy(), self.opts.max_speakers, self.opts.cluster_threshold)
            if self.agent_prints:  # the caller's windows may hide in an enrolled voice's cluster
                enrolled = torch.stack(list(self.agent_prints.values())).numpy()
                labels = split_enrolled_voice(prints.numpy(), labels, enrolled, self.opts.agent_threshold,
                                              self.opts.enrolled_split_margin)
            if labels.max() + 1 >= self.opts.max_speakers:
                self.notes.append(f"{self.opts.max_speakers} or more voices: at most "
                                  f"{self.opts.max_speakers} are told apart")
            return labels
        return self.online_labels(stream, prints)

    def online_labels(self, stream, prints):
        """Each window not yet assigned goes to the nearest voice centroid (a new voice when all
        are farther than cluster_threshold, up to max_speakers): bounded work per window."""
        state = self.online.setdefault(stream, {"labels": [], "sums": []})
        for v in prints[len(state["labels"]):]:
            cents = [s / s.norm() for s in state["sums"]]
            sims = [float(c @ v) for c in cents]
            if sims and (max(sims) >= 1 - self.opts.cluster_threshold or len(cents) >= self.opts.max_speakers):
                k = int(np.argmax(sims))
                state["sums"][k] = state["sums"][k] + v
            else:
                k = len(state["sums"])
                state["sums"].append(v.clone())
            state["labels"].append(k)
        return np.asarray(state["labels"], dtype=int)

    def records(self, name, final=True, rttm=None):
        base = {"file": str(name), "call": {"seconds": round(self.seconds, 3), "channels": self.n_channels,
                                            "mode": "mono" if self.mono else "stereo", "notes": self.notes},
                "clipped_fraction": round(self.flat / max(self.total, 1), 4)}
        speakers = []
        for stream in sorted(self.acc.streams):
            probs, emb, prints, times = self.acc.stream(stream)
            labels = self.labels(stream, prints, final)
            spans = window_spans(times)
            for k in range(int(labels.max()) + 1):
                sel = torch.from_numpy(labels == k)
                if not bool(sel.any()):
                    continue
                segs = merge_close(within(segments(spans, labels, k, gap=0.0), self.acc.speech[stream]),
                                   self.opts.segment_gap_seconds)  # its speech, not the pauses its windows span
                speakers.append({"speaker": f"S{k + 1}" if self.mono else CHANNEL_NAMES.get(stream, f"channel{stream}"),
                                 "channel": None if self.mono else stream,
                                 "speech_seconds": round(sum(b - a for a, b in segs), 3), "segments": segs,
                                 "voiceprint": torch.nn.functional.normalize(prints[sel].mean(0), dim=0),
                                 "windows": int(sel.sum()),
                                 **speaker_record(self.profiler, probs, emb, sel, len(times))})
        assign_roles(speakers, self.caller, self.agent_prints, self.opts, self.notes)
        if rttm:
            os.makedirs(rttm, exist_ok=True)
            stem = os.path.splitext(os.path.basename(str(name)))[0]
            with open(os.path.join(rttm, f"{stem}.rttm"), "w") as f:
                f.write("\n".join(rttm_lines(stem, {s["speaker"]: s["segments"] for s in speakers})) + "\n")
        if not speakers:
            if final and "no speech in the call" not in self.notes:
                self.notes.append("no speech in the call")
            return [{**base, "speaker": None, "role": None, "speech_seconds": 0.0, "segments": [], "confidence": None,
                     **self.profiler._result(None, None, 0, 0)}]
        return [{**base, **{k: v for k, v in s.items() if k not in ("voiceprint", "windows")}} for s in speakers]


def profile_call(profiler, path, caller_channel=None, agents=None, options=None, rttm=None):
    """Records (dicts) of the speakers of the call at ``path`` (see the module docstring);
    ``rttm``: a folder to write <file stem>.rttm into. AudioError for an unreadable file."""
    opts = CallOptions.coerce(options if options is not None else getattr(profiler.hparams, "call", None))
    _, _, n_channels = call_info(path)
    identical = n_channels > 1 and all(channels_identical(x[:2]) for _, x in blocks(path, profiler.sample_rate,
                                                                                       opts.block_seconds))
    session = CallSession(profiler, n_channels, n_channels == 1 or identical, caller_channel, agents, opts)
    if identical:
        session.notes.insert(0, "the two channels carry the same signal: profiled as a mono call")
    for offset, x in blocks(path, profiler.sample_rate, opts.block_seconds):
        session.add_block(offset, x)
    return session.records(path, final=True, rttm=rttm)


def record_keys():
    """The keys every speaker record has (scripts can rely on them)."""
    return ("file", "speaker", "role", "speech_seconds", "segments", "confidence", "clipped_fraction", *TASKS)
