"""SpeakerProfilerInterface: THE inference class of the project (a SpeechBrain ``Pretrained``).

For a batch of waveforms (any sample rate) or a list of files it returns, per recording, a
dict (documented in ``SpeakerProfilerInterface`` and docs/deploy.md): each task's label and
probabilities, and the embedding. Long recordings are cut into windows (``window_seconds``
every ``hop_seconds``) after its non-speech frames are dropped (recipes/inference/windows.py, with the
``speech`` thresholds of recipes/data/speech.py that preparation and training use); the
recording's probabilities are the MEAN OF THE PROBABILITIES of its windows (and its embedding
the mean of their embeddings). A recording with less than ``speech.min_speech_seconds`` of
speech gives ``silent: True`` and labels None, not an error; NaN / inf samples raise
AudioError naming the file. The age pair reported is the best-scoring
pair that respects the label hierarchy; the raw argmaxes stay in the dict.

Loading (local folders only, nothing is downloaded):

    from recipes.inference.interface import SpeakerProfilerInterface
    profiler = SpeakerProfilerInterface.from_folder("results/demo/1234")  # trained or exported
    profiler.classify_file("call.wav")["gender"]  # {"label": "f", "prob": 0.93, "probs": {...}}
    probs, emb = profiler.model(wavs, lengths)    # the network itself (recipes.inference.model.ProfilerModel)

    from speechbrain.inference.interfaces import foreign_class
    profiler = foreign_class(source="results/demo/1234/pretrained", pymodule_file="custom_interface.py",
                             classname="SpeakerProfilerInterface")

The trained and exported folder formats (and the SpeechBrain pretrained folder that
``from_folder`` loads, refreshed when a later checkpoint became the best one) are owned by
recipes/model_folder.py.
"""

import os

import torch
import torchaudio.functional as AF
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained

from recipes.age import AGE_KEY
from recipes.data.audio import AudioError, clipped_fraction, load_audio, remove_dc
from recipes.data.speech import NonFiniteAudio, SpeechConfig, check_finite
from recipes.model_folder import (TEACHER_DIR, PRETRAINED_YAML, has_interface_options, load_normalizer,
                                  pretrained_source, teacher_norm_path)
from recipes.inference.windows import speech_windows
from recipes.labels import TASKS
from recipes.ordinal import decode


def check_options(hp):
    """The windowing options, checked once at load (a zero hop would never end)."""
    for key in ("window_seconds", "hop_seconds"):
        value = getattr(hp, key)
        if not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"{key} must be a number of seconds above 0, got {value!r}")
    batch = hp.window_batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"window_batch_size must be an integer >= 1, got {batch!r}")
    if not isinstance(getattr(hp, "bf16_autocast", False), bool):
        raise ValueError(f"bf16_autocast must be True or False, got {hp.bf16_autocast!r}")


def consistent_age_pair(p_sup, p_sub, parent, how="argmax"):
    """(sup index, sub index) of the joint scores q[sub] = p_sup[parent[sub]] * p_sub[sub], which
    respect the hierarchy: their argmax (the best-scoring pair; the raw argmax pair whenever that
    one is consistent), or with ``how="median"`` their posterior median (recipes/ordinal.py)."""
    sub = int(decode(p_sup[parent] * p_sub, how))
    return int(parent[sub]), sub


class SpeakerProfilerInterface(Pretrained):
    """Gender / age-sup / age-sub of recordings, with windowing and silence skipping.

    Each result is a dict:

    - ``silent`` (bool: less than ``speech.min_speech_seconds`` of speech), ``speech_seconds``,
      ``n_windows`` (windows of the whole recording), ``n_speech_windows`` (windows of its
      speech given to the model);
    - for each task ``gender``, ``age_sup``, ``age_sub``:
      ``{"label": str, "prob": float, "probs": {label: float}}`` (None values when silent).
      ``probs`` are the model's (mean over speech windows). The age labels are the
      hierarchy-consistent pair with the highest ``probs[age_sup] * probs[age_sub]`` (with
      ``age_sub_decode: median``, the posterior median of those joint scores);
    - ``age_sup_raw``, ``age_sub_raw``: the label of each age head on its own (argmax; the
      age sub-group by the heads' ``age_sub_decode``: argmax or posterior median), and
      ``hierarchy_adjusted`` (bool): True when that raw pair broke the hierarchy (an age-sub
      outside the age-sup) and the age labels above were replaced by the consistent pair;
    - ``embedding``: tensor (emb_dim,), None when silent;
    - ``clipped_fraction``: share of the samples flat at the signal's extremes (clipping, recipes/
      data/audio.py); above ``clip_warning`` (1 %) the labels are less reliable: a clipped
      recording's spectrum is not the speaker's (tested: x30 gain flips the gender of a clip);
    - with an age head (``age_regression``): ``age_years`` (float, mean over the windows) and
      ``age_sigma`` (its predicted sigma in years, ``age_loss: gaussian_nll``; else None).

    Options (YAML, overridable): window_seconds, hop_seconds, speech (SpeechConfig: floor_dbfs,
    threshold_db, frame_seconds, min_speech_seconds), drop_non_speech, window_batch_size. ``model`` is the network (recipes.inference.model.
    ProfilerModel: waveforms at ``sample_rate`` -> (probabilities, embeddings)) for batch use
    (probing, export, benchmarks).
    """

    HPARAMS_NEEDED = ["sample_rate", "label_space", "window_seconds", "hop_seconds", "window_batch_size"]
    MODULES_NEEDED = ["profiler"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_options(self.hparams)
        self.sample_rate = self.hparams.sample_rate
        ls = self.hparams.label_space
        self.label_space = ls
        self.class_names = {"gender": list(ls.genders), "age_sup": list(ls.age_sup),
                            "age_sub": list(ls.age_sub)}
        self.parent = ls.parent_index()
        self.bf16 = bool(getattr(self.hparams, "bf16_autocast", False))  # folders exported before: float32

    @property
    def model(self):
        """The network (recipes.inference.model.ProfilerModel), in eval mode on ``self.device``."""
        return self.mods.profiler

    @classmethod
    def from_folder(cls, folder, device="cpu", overrides=None, random_init=False, **kwargs):
        """Load a train.py output folder or an exported folder (no download).

        random_init: the same architecture with fresh random encoder and head weights (only
        the feature statistics are loaded): the random-init control of probing."""
        source = os.path.abspath(pretrained_source(folder))
        rng = torch.get_rng_state()  # random_init draws what a first instantiation would
        overrides = dict(overrides or {})
        if os.path.isdir(os.path.join(source, TEACHER_DIR)):  # an MKD student's teacher, stored with it
            overrides.setdefault("teacher_folder", os.path.join(source, TEACHER_DIR))
        if not has_interface_options(source):  # exported before some interface options: they are new keys
            kwargs.setdefault("overrides_must_match", False)
        obj = cls.from_hparams(source=source, overrides=overrides,
                               run_opts={"device": device}, **kwargs)
        if obj.model.teacher is not None and teacher_norm_path(source):
            load_normalizer(obj.model.teacher.mean_var_norm, teacher_norm_path(source), obj.device)
        if random_init:
            torch.set_rng_state(rng)
            with open(os.path.join(source, PRETRAINED_YAML)) as f:
                fresh = load_hyperpyyaml(f, overrides or {})  # new modules, random weights
            obj.model.encoder.load_state_dict(fresh["encoder"].random_state_dict())
            obj.model.heads.load_state_dict(fresh["heads"].state_dict())
        return obj

    # ---- public API ----------------------------------------------------------------------
    def classify_file(self, path):
        """Result dict for one audio file (any rate; stereo is downmixed)."""
        return self.classify_files([path], errors="raise")[0]

    def classify_files(self, paths, errors="record"):
        """Result dicts for audio files, in order. A file that cannot be read (missing, a
        directory, unreadable, NaN / inf samples) gives ``{"file": path, "error": message}``
        and the others are still profiled; ``errors="raise"``: its AudioError is raised."""
        if errors not in ("record", "raise"):
            raise ValueError(f"classify_files: errors must be 'record' or 'raise', got {errors!r}")
        results, signals, kept = [None] * len(paths), [], []
        for i, path in enumerate(paths):
            try:
                signals.append(load_audio(path, self.sample_rate))
                kept.append(i)
            except AudioError as err:
                if errors == "raise":
                    raise
                results[i] = {"file": str(path), "error": str(err)}
        for i, res in zip(kept, self.classify_signals(signals, names=[paths[i] for i in kept], dc_removed=True)):
            results[i] = res
        return results

    def profile_call(self, path, caller_channel=None, agents=None, rttm=None):
        """One record per speaker of a call (stereo: one party per channel; mono: the voices
        told apart), each with ``file``, ``speaker``, ``role`` (caller / agent / unknown),
        ``speech_seconds``, ``segments`` and the profile keys of ``classify_file``
        (recipes/calls/call.py). ``caller_channel``: left / right / 0 / 1 for stereo;
        ``agents``: a folder of agent recordings; ``rttm``: a folder for <file stem>.rttm."""
        from recipes.calls.call import profile_call

        return profile_call(self, path, caller_channel=caller_channel, agents=agents, rttm=rttm)

    def classify_batch(self, wavs, wav_lens=None, sample_rate=None):
        """wavs (batch, samples) or (samples,); wav_lens: relative lengths (1.0 = whole row);
        sample_rate: of ``wavs`` (default: the model's). Returns one result dict per row."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        n = wavs.shape[1]
        return self.classify_signals([w[: int(round(float(rel) * n))] for w, rel in zip(wavs, wav_lens)],
                                     sample_rate)

    def forward(self, wavs, wav_lens=None, sample_rate=None):
        return self.classify_batch(wavs, wav_lens, sample_rate)

    def classify_signals(self, signals, sample_rate=None, names=None, dc_removed=False):
        """Result dicts for a list of 1-D signals of any lengths at ``sample_rate``;
        ``names`` (e.g. file paths) name a signal in errors (AudioError for NaN / inf);
        ``dc_removed``: the signals went through the front-end high-pass already (load_audio)."""
        sr = sample_rate or self.sample_rate
        hp = self.hparams
        speech = SpeechConfig.coerce(getattr(hp, "speech", None))  # older folders: the defaults
        drop = getattr(hp, "drop_non_speech", True)
        windows, owner, counts = [], [], []
        for i, sig in enumerate(signals):
            name = names[i] if names is not None else f"signal {i}"
            sig = sig.detach().float().cpu()
            try:
                check_finite(sig, name)  # before the filter and resampling spread a NaN
                clipped = clipped_fraction(sig)
                if not dc_removed:  # as load_audio does for files (and training)
                    sig = remove_dc(sig, sr)
                if sr != self.sample_rate:
                    sig = AF.resample(sig, sr, self.sample_rate)
                kept, n_all, seconds = speech_windows(sig, self.sample_rate, hp.window_seconds, hp.hop_seconds,
                                                      speech, drop, name)
            except NonFiniteAudio as err:
                raise AudioError(str(err)) from None
            windows += kept
            owner += [i] * len(kept)
            counts.append((n_all, len(kept), seconds, clipped))
        probs, embs = self.run_windows(windows)
        owner = torch.tensor(owner, dtype=torch.long)
        results = []
        for i, (n_all, n_kept, seconds, clipped) in enumerate(counts):
            sel = owner == i
            mean_probs = {t: p[sel].mean(0) for t, p in probs.items()} if n_kept else None
            res = self._result(mean_probs, embs[sel].mean(0) if n_kept else None, n_all, n_kept)
            results.append({**res, "speech_seconds": round(seconds, 3), "clipped_fraction": round(clipped, 4)})
        return results

    # ---- internals -----------------------------------------------------------------------
    @torch.no_grad()
    def run_windows(self, windows):
        """(dict task -> (n, classes) probabilities, (n, emb_dim) embeddings) of 1-D windows,
        ``window_batch_size`` at a time (zero-padded, with relative lengths)."""
        probs, embs = {t: [] for t in TASKS}, []
        bs = max(1, int(self.hparams.window_batch_size))
        for k in range(0, len(windows), bs):
            chunk = windows[k:k + bs]
            lens = torch.tensor([len(w) for w in chunk], dtype=torch.float)
            batch = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.bf16):
                p, e = self.mods.profiler(batch.to(self.device), (lens / lens.max()).to(self.device))
            for t in TASKS:
                probs[t].append(p[t].float().cpu())
            if AGE_KEY in p:  # (n, 1 or 2): years [and sigma], averaged like the probabilities
                probs.setdefault(AGE_KEY, []).append(p[AGE_KEY].float().cpu())
            embs.append(e.float().cpu())
        if not embs:
            return {t: torch.zeros(0, len(self.class_names[t])) for t in TASKS}, torch.zeros(0, 0)
        return {t: torch.cat(v) for t, v in probs.items()}, torch.cat(embs)

    def _result(self, probs, emb, n_windows, n_speech):
        out = {"silent": probs is None, "n_windows": n_windows, "n_speech_windows": n_speech,
               "embedding": emb}
        if probs is None:
            out.update({t: {"label": None, "prob": None, "probs": None} for t in TASKS})
            out.update(age_sup_raw=None, age_sub_raw=None, hierarchy_adjusted=False)
            if getattr(self.model.heads, "age", None) is not None:
                out.update(age_years=None, age_sigma=None)
            return out
        how = getattr(self.model.heads, "decode", {})  # folders without age_sub_decode: argmax
        raw = {t: int(decode(probs[t], how.get(t, "argmax"))) for t in TASKS}
        chosen = dict(raw)
        if int(self.parent[raw["age_sub"]]) != raw["age_sup"]:
            chosen["age_sup"], chosen["age_sub"] = consistent_age_pair(probs["age_sup"], probs["age_sub"], self.parent,
                                                                       how.get("age_sub", "argmax"))
        for t in TASKS:
            i = chosen[t]
            out[t] = {"label": self.class_names[t][i], "prob": float(probs[t][i]),
                      "probs": dict(zip(self.class_names[t], probs[t].tolist()))}
        out["age_sup_raw"] = self.class_names["age_sup"][raw["age_sup"]]
        out["age_sub_raw"] = self.class_names["age_sub"][raw["age_sub"]]
        out["hierarchy_adjusted"] = (raw["age_sup"], raw["age_sub"]) != (chosen["age_sup"], chosen["age_sub"])
        if AGE_KEY in probs:
            age = probs[AGE_KEY].tolist()
            out["age_years"] = age[0]
            out["age_sigma"] = age[1] if len(age) > 1 else None
        return out
