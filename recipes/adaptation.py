"""Domain statistics for a frozen model: re-estimate its global feature normalisation on
another domain (the weights stay frozen), and embed a whole dataset once.

A teacher trained on clean speech normalises telephone speech with clean-speech statistics,
and its predictions collapse (benchmarks/results/mkd_table_*.md, "teacher" rows); re-estimating the
mean/std of its Fbank features on the student's degraded training audio is a cheap fix that
changes no learnt parameter (the idea of AdaBN, applied to the input normaliser only).
"""

import logging

import torch
from speechbrain.processing.features import InputNormalization

logger = logging.getLogger(__name__)


@torch.no_grad()
def adapt_normalizer(model, loader, device="cpu"):
    """Replace ``model.mean_var_norm``'s global statistics by those of the audio in
    ``loader`` (batches with ``sig``); returns the number of utterances used."""
    fresh = InputNormalization(norm_type="global", std_norm=model.mean_var_norm.std_norm,
                               update_until_epoch=1).to(device)
    fresh.train()
    n = 0
    for batch in loader:
        if batch is None:
            continue
        wavs, lens = batch.sig
        wavs, lens = wavs.to(device), lens.to(device)
        fresh(model.compute_features(wavs), lens, epoch=0)
        n += len(batch.id)
    if n == 0:
        raise ValueError("adapt_normalizer: no audio could be read from the loader")
    norm = model.mean_var_norm
    norm.glob_mean, norm.glob_std = fresh.glob_mean.clone(), fresh.glob_std.clone()
    logger.info("feature statistics re-estimated on %d utterances", n)
    return n


@torch.no_grad()
def embed_dataset(model, loader, device="cpu"):
    """id -> ``model.embed`` of each whole utterance in ``loader`` (on CPU)."""
    out = {}
    for batch in loader:
        if batch is None:
            continue
        wavs, lens = batch.sig
        emb = model.embed(wavs.to(device), lens.to(device)).cpu()
        out.update(zip(batch.id, emb))
    return out
