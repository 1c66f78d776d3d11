"""Compressed sparse storage of a pruned model, loading it back, and sparse CPU compute.

- ``save_sparse``: encoder + heads (+ feature statistics) in one file; every tensor with
  two or more dimensions is kept in compressed sparse row form (002 Section IV-C: "CSR
  with low bit index": int32 row pointers, int16 column indices where they fit, float32
  values) when that is smaller than the dense tensor, the rest dense.
- ``load_sparse_profiler``: a dense ``ProfilerModel`` (for ``infer.py``-style use) from
  a folder's ``inference.yaml`` and such a file.
- ``to_sparse_compute``: a copy of a model whose pruned Linear / Conv1d / Conv2d layers
  multiply with their CSR weights (``torch.sparse`` matmul on im2col columns), to time the
  forward pass dense vs sparse.
"""

import copy
import os
import warnings

import torch
import torch.nn.functional as F

from recipes.inference.model import ProfilerModel
from recipes.model_folder import load_inference_hparams, require_trained

FORMAT = "profiling-sparse-csr-v1"


def _csr(matrix):
    """torch's CSR layout (its "beta" warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return matrix.to_sparse_csr()


def _csr_entry(t):
    rows = t.reshape(t.shape[0], -1)
    csr = _csr(rows)
    col_dtype = torch.int16 if rows.shape[1] <= torch.iinfo(torch.int16).max else torch.int32
    return {"shape": list(t.shape), "crow": csr.crow_indices().to(torch.int32),
            "col": csr.col_indices().to(col_dtype), "values": csr.values()}


def _entry_bytes(entry):
    return sum(v.numel() * v.element_size() for v in entry.values() if torch.is_tensor(v))


def _pack(state):
    out = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if t.dim() >= 2 and t.is_floating_point():
            entry = _csr_entry(t)
            if _entry_bytes(entry) < t.numel() * t.element_size():
                out[name] = entry
                continue
        out[name] = t
    return out


def _unpack(packed):
    state = {}
    for name, v in packed.items():
        if isinstance(v, dict):
            shape = v["shape"]
            ncols = 1
            for s in shape[1:]:
                ncols *= s
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                csr = torch.sparse_csr_tensor(v["crow"].long(), v["col"].long(), v["values"], (shape[0], ncols))
            v = csr.to_dense().reshape(shape)
        state[name] = v
    return state


def save_sparse(path, encoder, heads, normalizer=None):
    """Writes the compressed file atomically and returns its size in bytes."""
    blob = {"format": FORMAT, "encoder": _pack(encoder.state_dict()), "heads": _pack(heads.state_dict()),
            "normalizer": None if normalizer is None else normalizer._statistics_dict()}
    torch.save(blob, path + ".tmp")
    os.replace(path + ".tmp", path)
    return os.path.getsize(path)


def load_sparse_state(path):
    """{"encoder": state_dict, "heads": state_dict, "normalizer": stats or None}, dense."""
    blob = torch.load(path, map_location="cpu")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparse model file written by save_sparse ({FORMAT})")
    return {"encoder": _unpack(blob["encoder"]), "heads": _unpack(blob["heads"]), "normalizer": blob["normalizer"]}


def load_sparse_profiler(folder, path=None, device="cpu"):
    """A dense ProfilerModel: the architecture from <folder>/inference.yaml, every weight
    and the feature statistics from the sparse file (default <folder>/pruned_model.pt)."""
    path = path or os.path.join(folder, "pruned_model.pt")
    require_trained(folder, "a prune.py output folder")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {folder} a prune.py output folder?")
    model = ProfilerModel(load_inference_hparams(folder))
    state = load_sparse_state(path)
    model.encoder.load_state_dict(state["encoder"])
    model.heads.load_state_dict(state["heads"])
    if state["normalizer"] is not None:
        model.mean_var_norm._load_statistics_dict(state["normalizer"])
    return model.to(device).eval()


# ---- sparse compute ------------------------------------------------------------------
class SparseLinear(torch.nn.Module):
    """y = x W^T + b with W in CSR form."""

    def __init__(self, linear):
        super().__init__()
        self.weight = _csr(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x):
        y = (self.weight @ x.reshape(-1, x.shape[-1]).T).T.reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


class SparseConv(torch.nn.Module):
    """Conv1d / Conv2d (groups 1, zero padding) as a CSR matmul on im2col columns."""

    def __init__(self, conv):
        super().__init__()
        self.one_d = isinstance(conv, torch.nn.Conv1d)
        as2d = lambda v, fill: (fill, v[0]) if self.one_d else tuple(v)  # noqa: E731  (1-D: height 1)
        self.kernel, self.dilation = as2d(conv.kernel_size, 1), as2d(conv.dilation, 1)
        self.padding, self.stride = as2d(conv.padding, 0), as2d(conv.stride, 1)
        self.out_channels = conv.out_channels
        self.weight = _csr(conv.weight.detach().reshape(conv.out_channels, -1))
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x):
        x4 = x.unsqueeze(2) if self.one_d else x
        out_sizes = [(x4.shape[2 + i] + 2 * self.padding[i] - self.dilation[i] * (self.kernel[i] - 1) - 1)
                     // self.stride[i] + 1 for i in range(2)]
        ys = []
        for item in x4.split(1):  # one utterance at a time: im2col columns stay small
            cols = F.unfold(item, self.kernel, dilation=self.dilation, padding=self.padding, stride=self.stride)
            ys.append(self.weight @ cols[0])
        y = torch.stack(ys)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        y = y.reshape(x4.shape[0], self.out_channels, *out_sizes)
        return y.squeeze(2) if self.one_d else y


def _sparse_version(module, min_sparsity):
    if isinstance(module, torch.nn.Linear):
        make = SparseLinear
    elif (isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)) and module.groups == 1
          and module.padding_mode == "zeros" and not isinstance(module.padding, str)):
        make = SparseConv
    else:
        return None
    w = module.weight
    return make(module) if 1.0 - torch.count_nonzero(w).item() / w.numel() >= min_sparsity else None


def to_sparse_compute(model, min_sparsity=0.5):
    """A copy of ``model`` (eval) whose Linear / Conv layers with at least ``min_sparsity``
    zero weights compute with CSR weights; returns (copy, number of layers replaced)."""
    model = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(model.named_modules()):
        sparse = _sparse_version(module, min_sparsity)
        if sparse is not None:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, sparse)
            replaced += 1
    return model, replaced
