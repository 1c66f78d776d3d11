"""The one speech / non-speech decision of the project (preparation, training crops, inference).

A signal is cut into non-overlapping frames of ``frame_seconds``; a frame holds speech when
its RMS level (dBFS: 0 dB is a full-scale square wave of amplitude 1.0) passes both
thresholds:

- ``floor_dbfs`` (absolute): level >= floor_dbfs, e.g. -60 dBFS: digital silence, hold
  silence and line noise below it are non-speech whatever the recording's gain;
- ``threshold_db`` (relative): level >= (loudest frame of the same signal) - threshold_db,
  e.g. 40 dB: pauses between words of a loud recording are non-speech.

Either threshold can be None (off). A file "has speech" when at least
``min_speech_seconds`` of its frames hold speech: preparation drops the others
(``speech_problem``), training crops are taken where the speech is (``speech_crop``), so
a file that passed preparation never gives an all-silent crop. NaN / inf samples are an
error (``NonFiniteAudio``), never "silent".

The levels are those of the signal without its DC offset (its mean), so a line's DC offset
does not turn silence into "speech".

``detector: energy`` (default) is the energy rule alone. It cannot tell speech from stationary
sounds at a speech level (white or pink noise, hum, DTMF, music). ``detector: silero`` also
asks the Silero VAD model that the ``silero-vad`` wheel ships (no download; run on CPU at 8 or
16 kHz, other rates resampled to 16 kHz): a frame holds speech when it passes the energy rule
AND the model's speech probability for its time is >= ``vad_threshold``. What each detector
says on speech, silence, noise, hum, music and tones: benchmarks/results/speech_detectors.md.
The thresholds come from YAML::

    speech: !new:recipes.data.speech.SpeechConfig
        floor_dbfs: -60.0
        threshold_db: 40.0
        frame_seconds: 0.02
        min_speech_seconds: 0.5
        detector: energy          # or silero
        vad_threshold: 0.5

API: ``speech_mask(signal, sample_rate, cfg) -> bool frame mask``,
``speech_seconds(signal, sample_rate, cfg) -> float``, ``frame_bounds`` (sample range of
each frame), ``keep_speech`` (the speech frames only), ``speech_problem`` (None or why a
file is unusable), ``speech_crop`` (a training crop that holds speech).
"""

import random
import threading
from dataclasses import dataclass

import numpy as np
import torch

from recipes.yaml_options import YamlOptions

DETECTORS = ("energy", "silero")


class NonFiniteAudio(ValueError):
    """A signal with NaN or inf samples."""


@dataclass
class SpeechConfig(YamlOptions):
    WHAT = "speech config"
    floor_dbfs: float = -60.0
    threshold_db: float = 40.0
    frame_seconds: float = 0.02
    min_speech_seconds: float = 0.5
    detector: str = "energy"
    vad_threshold: float = 0.5

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"speech detector must be one of {DETECTORS}, got {self.detector!r}")


def _numpy(signal):
    """A float64 1-D numpy view of a signal (numpy: no thread-pool start-up per call)."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    return np.asarray(signal, dtype=np.float64).reshape(-1)


def check_finite(signal, name="signal"):
    """Raise NonFiniteAudio naming ``name`` when a sample is NaN or inf."""
    finite = np.isfinite(_numpy(signal))
    if not finite.all():
        raise NonFiniteAudio(f"{int((~finite).sum())} non-finite (NaN/inf) sample(s) in {name}")


def frame_length(sample_rate, cfg=None):
    return max(1, int(round(SpeechConfig.coerce(cfg).frame_seconds * sample_rate)))


def frame_levels_dbfs(signal, sample_rate, cfg=None, name="signal"):
    """RMS level (dBFS) of each frame of a 1-D signal (the last, partial frame included)."""
    x = _numpy(signal)
    if not np.isfinite(x).all():
        check_finite(x, name)
    if x.size:
        x = x - x.mean()  # the level without the DC offset
    n = frame_length(sample_rate, cfg)
    pad = (-x.size) % n
    power = np.concatenate([x * x, np.zeros(pad)]).reshape(-1, n).sum(axis=1)
    counts = np.full(power.shape, float(n))
    if pad:  # the partial last frame: mean square over its real samples only
        counts[-1] = n - pad
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(power / counts)
    return torch.from_numpy(levels)


def speech_mask(signal, sample_rate, cfg=None, name="signal"):
    """Bool tensor (n_frames,): which frames of a 1-D signal hold speech."""
    cfg = SpeechConfig.coerce(cfg)
    levels = frame_levels_dbfs(signal, sample_rate, cfg, name).numpy()
    keep = np.isfinite(levels)
    if cfg.floor_dbfs is not None:
        keep &= levels >= cfg.floor_dbfs
    if cfg.threshold_db is not None and levels.size:
        keep &= levels >= levels.max() - cfg.threshold_db
    if cfg.detector == "silero" and keep.any():
        keep &= cached_vad_mask(signal, sample_rate, keep.size, frame_length(sample_rate, cfg), cfg.vad_threshold)
    return torch.from_numpy(keep)


_MASKS = {}
MAX_CACHED_MASKS = 200_000  # a few hundred bytes each


def cached_vad_mask(signal, sample_rate, n_frames, frame_len, threshold):
    """``vad_frame_mask``, kept per signal (a hash of its samples): training crops the same
    utterance every epoch and the model costs about 1/150 of real time on one thread."""
    x = _numpy(signal)
    key = (hash(x.tobytes()), x.size, sample_rate, frame_len, threshold)
    mask = _MASKS.get(key)
    if mask is None:
        mask = vad_frame_mask(signal, sample_rate, n_frames, frame_len, threshold)
        if len(_MASKS) >= MAX_CACHED_MASKS:
            _MASKS.clear()
        _MASKS[key] = mask
    return mask


_VAD = threading.local()  # the model keeps a recurrent state: one per thread (service worker threads)


def silero_model():
    """This thread's Silero VAD model (the silero-vad wheel's ONNX copy: the same weights and
    decisions as its TorchScript copy, probabilities within 1e-6, 30 % faster, one thread)."""
    if getattr(_VAD, "model", None) is None:
        import warnings

        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # only the silero detector needs the wheel

        # importing silero_vad sets the whole process to one torch thread: the caller's count is kept
        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its loader prints deprecation notices
            _VAD.model = load_silero_vad(onnx=True)
    return _VAD.model


def vad_frame_mask(signal, sample_rate, n_frames, frame_len, threshold):
    """Bool array (n_frames,): the Silero VAD speech probability at each frame's centre is >=
    ``threshold`` (``silero_model``)."""
    model = silero_model()
    x = torch.as_tensor(_numpy(signal), dtype=torch.float32)
    x = x - x.mean()
    rate = sample_rate
    if rate not in (8000, 16000):
        import torchaudio.functional as AF

        x, rate = AF.resample(x, sample_rate, 16000), 16000
    chunk = 256 if rate == 8000 else 512  # the model's window at each rate
    if x.numel() < chunk:
        return np.zeros(n_frames, dtype=bool)
    with torch.no_grad():
        probs = vad_probabilities(model, x, rate, chunk)
    centres = (np.arange(n_frames) + 0.5) * frame_len / sample_rate  # seconds
    idx = np.minimum((centres * rate / chunk).astype(int), probs.size - 1)
    # the model decides per 32 ms chunk: pauses shorter than VAD_MIN_SILENCE inside speech stay
    # speech (as silero's own speech timestamps do), so kept speech is not spliced syllables
    return fill_short_gaps(probs[idx] >= threshold, int(round(VAD_MIN_SILENCE * sample_rate / frame_len)))


VAD_MIN_SILENCE = 0.25  # seconds
VAD_SEGMENT_SECONDS, VAD_CONTEXT_SECONDS = 4.0, 0.5  # long signals: segments run as one batch
VAD_BATCH_ABOVE_SECONDS = 20.0  # shorter signals (training clips) run as one sequence


def vad_probabilities(model, x, rate, chunk):
    """The model's speech probability per ``chunk`` of the 1-D ``x``. A signal longer than
    VAD_BATCH_ABOVE_SECONDS is cut into VAD_SEGMENT_SECONDS segments, each led by
    VAD_CONTEXT_SECONDS of the audio before it (the recurrent state warms up on it), run as one
    batch: 9x faster on a 60 s call block (one thread). The decisions differ from one sequential
    pass as much as the model's own dependence on where a sequence starts: on 70 s of real
    speech both a segmented run and a sequential run started 10 s later agree with it on 97 %
    of the chunks."""
    model.reset_states()
    if x.numel() <= VAD_BATCH_ABOVE_SECONDS * rate:
        return model.audio_forward(x.unsqueeze(0), rate)[0].numpy()
    seg = int(VAD_SEGMENT_SECONDS * rate) // chunk * chunk
    ctx = int(VAD_CONTEXT_SECONDS * rate) // chunk * chunk
    n_seg = -(-x.numel() // seg)
    padded = torch.nn.functional.pad(x, (ctx, n_seg * seg - x.numel()))
    rows = torch.stack([padded[i * seg: i * seg + ctx + seg] for i in range(n_seg)])
    probs = model.audio_forward(rows, rate)[:, ctx // chunk:]
    return probs.reshape(-1)[: -(-x.numel() // chunk)].numpy()


def fill_short_gaps(mask, frames):
    """A bool frame mask with its False stretches of at most ``frames`` frames between True
    frames set True."""
    out = mask.copy()
    edges = np.diff(np.concatenate([[1], mask.astype(np.int8), [1]]))
    for a, b in zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)):
        if 0 < a and b < mask.size and b - a <= frames:
            out[a:b] = True
    return out


def frame_bounds(n_frames, n_samples, sample_rate, cfg=None):
    """[(start, end), ...] sample range of each frame of ``speech_mask``."""
    n = frame_length(sample_rate, cfg)
    return [(i * n, min((i + 1) * n, n_samples)) for i in range(n_frames)]


def speech_seconds(signal, sample_rate, cfg=None, name="signal"):
    """Seconds of speech in a 1-D signal (frames of ``speech_mask``)."""
    mask = speech_mask(signal, sample_rate, cfg, name)
    n = frame_length(sample_rate, cfg)
    if not mask.any():
        return 0.0
    full = int(mask[:-1].sum()) * n
    last = (signal.numel() - (mask.numel() - 1) * n) if bool(mask[-1]) else 0
    return (full + last) / float(sample_rate)


def keep_speech(signal, sample_rate, cfg=None, name="signal"):
    """The speech frames of a 1-D signal, concatenated (empty when there is none)."""
    mask = speech_mask(signal, sample_rate, cfg, name)
    keep = torch.zeros(signal.numel(), dtype=torch.bool)
    for (a, b), m in zip(frame_bounds(mask.numel(), signal.numel(), sample_rate, cfg), mask.tolist()):
        if m:
            keep[a:b] = True
    return signal.reshape(-1)[keep]


def speech_problem(signal, sample_rate, cfg=None, name="signal"):
    """None when the signal has at least ``min_speech_seconds`` of speech, else the reason."""
    cfg = SpeechConfig.coerce(cfg)
    if signal.numel() == 0:
        return f"empty audio {name}"
    got = speech_seconds(signal, sample_rate, cfg, name)
    if got >= cfg.min_speech_seconds:
        return None
    what = "all-silent" if got == 0 else "too little speech in"
    return (f"{what} audio {name} ({got:.2f} s of speech above {cfg.floor_dbfs} dBFS, "
            f"need {cfg.min_speech_seconds} s)")


def speech_crop(signal, sample_rate, crop_seconds, cfg=None, name="signal", rng=random):
    """A random ``crop_seconds`` crop that holds speech: (crop, start_sample).

    Among the crops on the frame grid, those holding at least min(min_speech_seconds, the
    most speech any crop holds) seconds of speech are eligible; one is drawn with ``rng``
    (python's ``random`` by default, the generator the recipes seed and checkpoint).
    A signal no longer than the crop is returned whole. Raises ValueError when the signal
    holds no speech frame at all (such a file does not pass preparation).
    """
    cfg = SpeechConfig.coerce(cfg)
    if crop_seconds is None or signal.numel() <= int(round(crop_seconds * sample_rate)):
        return signal, 0
    n_crop = int(round(crop_seconds * sample_rate))
    mask = speech_mask(signal, sample_rate, cfg, name)
    if not mask.any():
        raise ValueError(f"all-silent audio {name}: no speech frame above {cfg.floor_dbfs} dBFS")
    n = frame_length(sample_rate, cfg)
    win = max(1, n_crop // n)  # frames per crop
    csum = torch.cat([torch.zeros(1, dtype=torch.long), mask.long().cumsum(0)])
    last_start = max(0, (signal.numel() - n_crop) // n)  # crops that fit in the signal
    starts = torch.arange(last_start + 1)
    ends = (starts + win).clamp(max=mask.numel())
    in_crop = (csum[ends] - csum[starts]).float() * n / sample_rate
    need = min(cfg.min_speech_seconds, float(in_crop.max()))
    eligible = torch.nonzero(in_crop >= need - 1e-9).flatten().tolist()
    start = eligible[rng.randrange(len(eligible))] * n
    return signal[start:start + n_crop], start
