"""Embeddings of whole training utterances computed once and kept on disk.

Two users: an MKD student's frozen teacher (``teacher_cache``) and a recipe whose own encoder
is frozen (``frozen_encoder_cache``, e.g. the pretrained GE2E teacher: only the heads train,
so every epoch after the first pass costs the heads alone). The file is reused only when its
key (model, manifest, channel...) is the same; otherwise the embeddings are made again.
"""

import logging
import os

import torch
import speechbrain as sb
from speechbrain.dataio.dataloader import make_dataloader

from recipes.adaptation import embed_dataset
from recipes.data.pipelines import OUTPUT_KEYS, make_dataset

logger = logging.getLogger(__name__)


def is_frozen(module):
    """True when no parameter of ``module`` trains."""
    return not any(p.requires_grad for p in module.parameters())


def whole_utterance_loader(train_csv, hparams):
    """The training utterances of ``train_csv`` (a manifest or a list: pooled corpora), whole,
    through the recipe's (deterministic) training channel, batched as evaluation batches."""
    data = make_dataset(train_csv, hparams.label_space, hparams.sample_rate, sort=True,
                        channel=hparams.train_channel)
    return make_dataloader(data, **hparams.eval_dataloader_opts)


def cached_embeddings(path, key, model, loader, device, what="embedding cache"):
    """id -> ``model.embed`` of each utterance of ``loader``, read from ``path`` when it was
    made with the same ``key``; written atomically by the main process."""
    if os.path.isfile(path):
        saved = torch.load(path)
        if saved.get("key") == key:
            return saved["emb"]
    cache = embed_dataset(model, loader, device)
    if sb.utils.distributed.if_main_process():
        torch.save({"key": key, "emb": cache}, path + ".tmp")
        os.replace(path + ".tmp", path)
    logger.info("%s: %d training utterances embedded once (%s)", what, len(cache), path)
    return cache


def cached_batch(cache, batch, stage, device):
    """The cached embeddings of every utterance of ``batch``, else None (never at test: the
    test is embedded afresh)."""
    if cache and stage != sb.Stage.TEST and all(u in cache for u in batch.id):
        return torch.stack([cache[u] for u in batch.id]).to(device)
    return None


def skip_cached_audio(dataset, cache):
    """Training batches of ``dataset`` stop loading audio when ``cache`` holds every one of its
    utterances (only ids and labels are read then); otherwise the dataset is left as it is."""
    if cache is None or not hasattr(dataset, "set_output_keys"):
        return False
    if not all(uid in cache for uid in dataset.data_ids):
        return False
    dataset.set_output_keys([k for k in OUTPUT_KEYS if k not in ("sig", "ok")])
    logger.info("training batches read ids and labels only: every utterance is in the embedding cache")
    return True


def manifests_key(paths):
    """[path, size, path, size, ...] of the manifests a cache was made from (absolute paths)."""
    return [x for p in paths for x in (os.path.abspath(p), os.path.getsize(p))]


def settings_key(module):
    """A module's class and plain settings (numbers, strings): what the cache depends on."""
    if module is None:
        return None
    plain = {k: v for k, v in vars(module).items() if isinstance(v, (bool, int, float, str))}
    return [type(module).__name__, sorted(plain.items())]


class BrainEmbedder:
    """``embed(wavs, lens)`` through a Brain's own front-end and (frozen) encoder."""

    def __init__(self, modules):
        self.modules = modules

    @torch.no_grad()
    def embed(self, wavs, lens):
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        return self.modules.encoder(feats, lens)
