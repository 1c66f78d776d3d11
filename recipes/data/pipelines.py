"""DynamicItemDataset pipelines: read + resample + crop audio, encode the three labels.

A file that fails to load mid-training is logged and dropped from its batch by
``SkipBadCollate``; it never stops the run.
"""

import logging
import random

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from recipes.age import age_interval
from recipes.data.audio import AudioError, check_signal, load_audio
from recipes.data.channel import utterance_generator
from recipes.data.speech import speech_crop
from recipes.labels import MISSING

logger = logging.getLogger(__name__)
OUTPUT_KEYS = ("id", "sig", "ok", "gender_idx", "age_sup_idx", "age_sub_idx", "age_years")


def make_dataset(csv_path, label_space, sample_rate, crop_seconds=None, sort=False,
                 channel=None, label_noise_rate=0.0, label_noise_seed=0, speech=None):
    """A DynamicItemDataset giving ``id, sig, gender, age_sup, age_sub, ok``.

    csv_path: a manifest, or a list of manifests (pooled corpora, one label space).

    crop_seconds: random crop of this length (training), taken where the speech is
        (``training_crop``); None = whole utterance.
    speech: the speech / non-speech thresholds (recipes.data.speech.SpeechConfig or a
        dict from YAML; None = its defaults), the same as preparation's.
    channel: optional callable ``(wav, uid) -> wav`` (e.g. data.channel.TelephoneChannel),
        applied to the whole utterance before cropping, reproducibly per utterance.
    label_noise_rate: share of utterances whose age sub-group is moved to a neighbouring
        group (fixed per utterance), as the label noise of paper 004.
    """
    data = sb.dataio.dataset.DynamicItemDataset(load_pooled_csv(csv_path))

    @sb.utils.data_pipeline.takes("wav", "duration", "id")
    @sb.utils.data_pipeline.provides("sig", "ok")
    def audio_pipeline(wav, duration, uid):
        try:
            sig = load_audio(wav, sample_rate)
            if channel is not None:  # degrade the whole utterance, then crop
                sig = channel(sig, uid)
            sig = training_crop(sig, sample_rate, crop_seconds, speech, wav)
        except AudioError as err:
            logger.warning("skipping utterance %s: %s", uid, err)
            yield torch.zeros(1)
            yield False
            return
        yield sig
        yield True

    @sb.utils.data_pipeline.takes("gender", "age", "age_group", "id")
    @sb.utils.data_pipeline.provides("gender_idx", "age_sup_idx", "age_sub_idx")
    def label_pipeline(gender, age, age_group, uid):
        yield from label_tensors(label_space, gender, age, age_group, uid, label_noise_rate, label_noise_seed)

    @sb.utils.data_pipeline.takes("age", "age_group")
    @sb.utils.data_pipeline.provides("age_years")
    def age_pipeline(age, age_group):  # [lower, upper] years of the age head (recipes/age.py)
        return torch.tensor(age_interval(label_space, age, age_group), dtype=torch.float)

    data.add_dynamic_item(audio_pipeline)
    data.add_dynamic_item(label_pipeline)
    data.add_dynamic_item(age_pipeline)
    data.set_output_keys(list(OUTPUT_KEYS))
    if sort:
        data = data.filtered_sorted(sort_key="duration", reverse=True)
    return data


def training_crop(sig, sample_rate, crop_seconds, speech=None, name="signal"):
    """A ``crop_seconds`` crop holding speech (recipes/data/speech.py: never an all-silent
    crop of a file that has speech), or the whole signal when crop_seconds is None or the
    signal is shorter. AudioError for a signal with no speech frame or NaN/inf samples."""
    check_signal(sig, name, sample_rate, speech)
    try:
        return speech_crop(sig, sample_rate, crop_seconds, speech, name)[0]
    except ValueError as err:
        raise AudioError(str(err)) from None


def crop_window(duration, crop_seconds):
    """(start_s, dur_s) of a random training crop, or (None, None): the whole utterance.
    Crops draw from python's ``random`` (saved in every checkpoint, recipes/checkpoint.py
    RandomState), never from torch's: after an intra-epoch recovery the torch state is
    restored only at the next training step."""
    if crop_seconds is not None and duration > crop_seconds:
        return random.uniform(0.0, duration - crop_seconds), crop_seconds
    return None, None


def crop_signal(sig, start, dur, sample_rate):
    """The [start, start + dur) seconds of an in-memory signal (all of it if start is None)."""
    if start is None:
        return sig
    a = int(start * sample_rate)
    return sig[a:a + int(dur * sample_rate)]


def load_pooled_csv(csv_paths):
    """One SpeechBrain data dict (ID -> row) from one manifest or a list of them (pooled
    corpora); a label column a corpus lacks (gender, age, age_group) is empty: missing."""
    paths = [csv_paths] if isinstance(csv_paths, (str, bytes)) or hasattr(csv_paths, "__fspath__") else csv_paths
    data, origin = {}, {}
    for path in paths:
        for uid, row in sb.dataio.dataio.load_data_csv(path).items():
            if uid in data:
                raise ValueError(f"{path}: utterance ID {uid!r} is also in {origin[uid]}; pooled corpora "
                                 "need distinct IDs")
            for key in ("gender", "age", "age_group"):
                row.setdefault(key, "")
            data[uid], origin[uid] = row, path
    return data


def label_tensors(label_space, gender, age, age_group, uid, label_noise_rate=0.0, label_noise_seed=0):
    """(gender, age-sup, age-sub) class indices as LongTensors of shape (1,); an empty
    gender, or empty age and age_group, is a missing label: index -1 (no loss, not scored)."""
    sub = missing_or(lambda: label_space.sub_index(age, age_group), age, age_group)
    if label_noise_rate > 0 and sub != MISSING:
        sub = neighbour_flip(sub, uid, label_noise_rate, label_noise_seed, label_space.n_sub)
    sup = label_space.sup_index(sub) if sub != MISSING else MISSING
    gender_idx = missing_or(lambda: label_space.gender_index(gender), gender)
    return torch.LongTensor([gender_idx]), torch.LongTensor([sup]), torch.LongTensor([sub])


def missing_or(index, *values):
    """MISSING when every value is empty (None or blank), else ``index()``."""
    if all(v is None or str(v).strip() == "" for v in values):
        return MISSING
    return index()


def neighbour_flip(sub, uid, rate, seed, n_sub):
    """With probability ``rate`` (fixed per utterance) move ``sub`` to a neighbouring bin."""
    g = utterance_generator(seed + 7919, uid)
    if torch.rand(1, generator=g).item() >= rate or n_sub < 2:
        return sub
    step = 1 if torch.rand(1, generator=g).item() < 0.5 else -1
    if not 0 <= sub + step < n_sub:
        step = -step
    return sub + step


class SkipBadCollate:
    """PaddedBatch over the examples whose audio loaded; None if none did."""

    def __call__(self, examples):
        good = [e for e in examples if e.get("ok", True)]  # no "ok": audio not read (cached)
        if len(good) < len(examples):
            logger.warning("dropped %d bad utterance(s) from a batch", len(examples) - len(good))
        if not good:
            return None
        return PaddedBatch(good)
