"""Long recordings for inference: the speech of a recording, cut into fixed windows.

Speech and non-speech are decided by recipes/data/speech.py (the decision preparation and
training crops use, with the same ``speech`` thresholds from YAML): frames of
``frame_seconds`` below ``floor_dbfs`` or more than ``threshold_db`` under the loudest frame
are non-speech. With ``drop_non_speech`` (the default) those frames are removed before the
model sees anything, so leading / trailing silence, hold silence and low line noise do not
change the answer; the remaining speech is cut into windows of ``window`` samples every
``hop`` samples (plus one window ending at the last sample, so the tail is covered; speech
shorter than one window is a single window). Without it, the windows are cut from the whole
recording and a window is kept when it holds at least one speech frame.

A recording with less than ``min_speech_seconds`` of speech gives no window ("silent").
NaN / inf samples raise ``recipes.data.speech.NonFiniteAudio``: an error, never "silent".
"""

import torch

from recipes.data.speech import SpeechConfig, check_finite, frame_length, speech_mask


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


def speech_samples(wav, sample_rate, speech=None, name="signal"):
    """Bool tensor (n_samples,): the samples of a 1-D signal in speech frames."""
    check_finite(wav, name)
    mask = speech_mask(wav, sample_rate, speech, name)
    return mask.repeat_interleave(frame_length(sample_rate, speech))[:wav.numel()]  # frame -> its samples


def speech_windows(wav, sample_rate, window_seconds, hop_seconds, speech=None, drop_non_speech=True,
                   name="signal"):
    """(windows: list of 1-D tensors for the model, n_windows: windows of the whole recording,
    speech_seconds) of a 1-D signal; no window when it holds less than min_speech_seconds
    of speech (see the module docstring)."""
    cfg = SpeechConfig.coerce(speech)
    window = max(1, int(round(window_seconds * sample_rate)))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    wav = wav.reshape(-1)
    bounds = window_bounds(wav.numel(), window, hop)
    keep = speech_samples(wav, sample_rate, cfg, name)
    seconds = int(keep.sum()) / float(sample_rate)
    if wav.numel() == 0 or seconds == 0 or seconds < cfg.min_speech_seconds:
        return [], len(bounds), seconds
    if drop_non_speech:
        speech_only = wav[keep]
        return [speech_only[a:b] for a, b in window_bounds(speech_only.numel(), window, hop)], len(bounds), seconds
    return [wav[a:b] for a, b in bounds if keep[a:b].any()], len(bounds), seconds
