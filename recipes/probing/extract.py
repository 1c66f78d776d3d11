"""Utterance-level representations of every named layer, via forward hooks (paper 000/001).

Frame-level outputs are pooled over valid (non-padded) frames: ``mean`` or ``meanstd``.
ECAPA blocks give (batch, channels, time); ResNet stages (batch, channels, time, freq),
averaged over frequency first; pooling / embedding layers are already utterance-level.
The heads' hidden layers (``head_gender`` ...) are tapped too.
"""

import os

import numpy as np
import torch
from speechbrain.dataio.dataio import length_to_mask


def pool_frames(out, lengths, pooling="mean"):
    """(batch, C[, T[, F]]) -> (batch, C) or (batch, 2C) pooled over valid frames."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.dim() == 4:  # ResNet: (batch, channels, time, freq)
        out = out.mean(dim=3)
    if out.dim() == 2:
        return out
    if out.shape[-1] == 1:
        return out.squeeze(-1)
    t = out.shape[-1]
    mask = length_to_mask(lengths * t, max_len=t, device=out.device).to(out.dtype)
    mask[:, 0] = 1.0
    mask = mask.unsqueeze(1)
    n = mask.sum(-1)
    mean = (out * mask).sum(-1) / n
    if pooling == "mean":
        return mean
    var = ((out - mean.unsqueeze(-1)) ** 2 * mask).sum(-1) / n
    return torch.cat([mean, var.clamp(min=1e-8).sqrt()], dim=-1)


def probe_layers(model):
    """Ordered name -> module: the encoder's named layers, then each head's hidden layer."""
    layers = dict(model.encoder.named_layers())
    for task, head in model.heads.heads.items():
        layers[f"head_{task}"] = head.hidden
    return layers


@torch.no_grad()
def extract(model, batches, pooling="mean"):
    """Run ``model`` (a recipes.inference.model.ProfilerModel, e.g. SpeakerProfilerInterface.model) over batches of (ids, wavs, lens).

    Returns (ids, {layer: np.ndarray (N, D)}), layers in network order.
    """
    layers = probe_layers(model)
    store, hooks = {}, []
    for name, module in layers.items():
        hooks.append(module.register_forward_hook(lambda m, i, o, n=name: store.__setitem__(n, o)))
    ids, feats = [], {name: [] for name in layers}
    try:
        model.eval()
        for batch_ids, wavs, lens in batches:
            store.clear()
            model(wavs, lens)
            for name in layers:
                feats[name].append(pool_frames(store[name], lens, pooling).cpu().float().numpy())
            ids.extend(batch_ids)
    finally:
        for h in hooks:
            h.remove()
    return ids, {name: np.concatenate(v) for name, v in feats.items()}


def cached_extract(path, model, batches_fn, pooling="mean"):
    """extract() once, then reuse the cache file (npz) for every task."""
    if os.path.isfile(path):
        data = np.load(path, allow_pickle=False)
        names = [str(n) for n in data["__layers__"]]
        return [str(i) for i in data["__ids__"]], {n: data[n] for n in names}
    ids, feats = extract(model, batches_fn(), pooling)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, __ids__=np.array(ids), __layers__=np.array(list(feats)), **feats)
    os.replace(tmp, path)
    return ids, feats


def concat_all(feats):
    """The "ALL" representation and each layer's (start, end) columns in it."""
    spans, start = {}, 0
    for name, x in feats.items():
        spans[name] = (start, start + x.shape[1])
        start += x.shape[1]
    return np.concatenate(list(feats.values()), axis=1), spans
