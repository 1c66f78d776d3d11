"""Long recordings for inference: fixed windows with a hop, and the windows that hold speech.

A minute-long call is cut into windows of ``window`` samples every ``hop`` samples (plus one
window ending at the last sample, so the tail is covered); a recording shorter than one
window is a single window. A window is kept as speech when its RMS level (dBFS: 0 dB is a
full-scale square wave of amplitude 1.0) passes both thresholds:

- ``floor_dbfs`` (absolute): level >= floor_dbfs, e.g. -60 dBFS. A recording none of whose
  windows passes is "silent".
- ``threshold_db`` (relative to the recording's peak): level >= (level of the loudest
  window of the same recording) - threshold_db, e.g. 40 dB. This drops pauses and line
  noise between turns whatever the recording's gain.

Either threshold can be None (off).
"""

import math

import torch


def window_bounds(n_samples, window, hop):
    """[(start, end), ...] sample ranges covering ``n_samples``."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be > 0 samples (got {window}, {hop})")
    if n_samples <= window:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return [(s, s + window) for s in starts]


def levels_dbfs(wav, bounds):
    """RMS level (dBFS) of each window of a 1-D signal."""
    out = []
    for a, b in bounds:
        rms = float(wav[a:b].float().pow(2).mean().sqrt()) if b > a else 0.0
        out.append(20.0 * math.log10(rms) if rms > 0 else -math.inf)
    return torch.tensor(out)


def speech_mask(levels, threshold_db=40.0, floor_dbfs=-60.0):
    """Bool tensor: which windows hold speech (see the module docstring)."""
    keep = torch.ones(len(levels), dtype=torch.bool)
    if floor_dbfs is not None:
        keep &= levels >= floor_dbfs
    if threshold_db is not None and len(levels):
        keep &= levels >= levels.max() - threshold_db
    return keep


def speech_windows(wav, sample_rate, window_seconds, hop_seconds, threshold_db=40.0,
                   floor_dbfs=-60.0):
    """(bounds of all windows, bool mask of the speech ones) for a 1-D signal."""
    window = max(1, int(round(window_seconds * sample_rate)))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    bounds = window_bounds(wav.shape[-1], window, hop)
    return bounds, speech_mask(levels_dbfs(wav, bounds), threshold_db, floor_dbfs)
