"""Deployable graphs of a trained model: TorchScript, torch.export, ONNX and int8.

``ExportableProfiler`` is the whole model in one module: waveform ``wavs`` (batch, samples),
float32 at the model's sample rate, and relative lengths ``lengths`` (batch,) in (0, 1]
(1.0 = the whole row; padded rows are shorter) -> ``gender``, ``age_sup``, ``age_sub``
probabilities (batch, classes) and ``embedding`` (batch, emb_dim), then, for a model with an
age head, ``age_years`` (batch, 1) years, or (batch, 2) years and sigma. Fbank, the global
feature normalisation, the encoder and the heads (and an MKD student's teacher, when its
heads read [student; teacher]) are all inside the graph: the Fbank STFT exports as the ONNX
``STFT`` operator (opset >= 17), so an ONNX runtime takes raw audio too.

int8 is dynamic quantization (weights int8, activations quantized on the fly):
``torch.ao.quantization.quantize_dynamic`` only handles ``Linear`` (no ``Conv1d``), so the
1x1 convolutions (most of ECAPA's weights: TDNN 1x1 blocks, SE, MFA, attention, the
embedding layer) are first rewritten as the equivalent ``Linear``; the wider convolutions
(kernel > 1) stay float32.
"""

import contextlib
import copy
import csv
import os
import sys

import torch
from speechbrain.dataio import dataio as sb_dataio

from recipes.data.audio import AudioError, load_audio

OUTPUTS = ("gender", "age_sup", "age_sub", "embedding")
AGE_OUTPUT = "age_years"  # the age head's output (recipes/age.py), last, when the model has one
INPUTS = ("wavs", "lengths")


class NotExportable(ValueError):
    """A model whose encoder cannot be traced (``ProfilingEncoder.exportable`` False)."""


class ExportableProfiler(torch.nn.Module):
    """(wavs, lengths) -> (gender, age_sup, age_sub probabilities, embedding[, age_years]);
    see the module doc. ``outputs``: the output names, in order."""

    def __init__(self, profiler):
        super().__init__()
        for enc in (profiler.encoder, getattr(profiler.teacher, "encoder", None)):
            if enc is not None and not enc.exportable:
                raise NotExportable(f"{type(enc).__name__} cannot be exported to TorchScript / ONNX "
                                 f"({enc.export_blocker}): "
                                 "profile with infer.py / the inference class, or export a student that "
                                 "does not read it (an ECAPA / ResNet encoder, concat_teacher: False)")
        self.profiler = profiler
        self.sample_rate = profiler.sample_rate
        self.has_age = getattr(profiler.heads, "age", None) is not None
        self.outputs = OUTPUTS + ((AGE_OUTPUT,) if self.has_age else ())

    def forward(self, wavs, lengths):
        probs, emb = self.profiler(wavs, lengths)
        if self.has_age:
            return probs["gender"], probs["age_sup"], probs["age_sub"], emb, probs[AGE_OUTPUT]
        return probs["gender"], probs["age_sup"], probs["age_sub"], emb


def _length_to_mask(length, max_len=None, dtype=None, device=None):
    """speechbrain.dataio.dataio.length_to_mask without ``len(length)`` (a Python int that
    torch.jit.trace would freeze to the example's batch size)."""
    if max_len is None:
        max_len = length.max().long().item()
    mask = torch.arange(max_len, device=length.device, dtype=length.dtype).unsqueeze(0) < length.unsqueeze(1)
    return mask.to(dtype=dtype or length.dtype, device=device or length.device)


@contextlib.contextmanager
def traceable_masks():
    """Swap SpeechBrain's ``length_to_mask`` for a batch-size-free one in every imported module."""
    orig = sb_dataio.length_to_mask
    patched = [m for m in list(sys.modules.values()) if vars(m).get("length_to_mask") is orig]
    for m in patched:
        m.length_to_mask = _length_to_mask
    try:
        yield
    finally:
        for m in patched:
            m.length_to_mask = orig


def example_input(sample_rate, batch=2, seconds=3.0, seed=0):
    """Random (wavs, lengths) with one padded row (for tracing and parity checks)."""
    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(batch, int(seconds * sample_rate), generator=g)
    lengths = torch.ones(batch)
    if batch > 1:
        lengths[-1] = 0.6
        wavs[-1, int(0.6 * wavs.shape[1]):] = 0.0
    return wavs, lengths


def to_torchscript(model, example, path):
    """torch.jit.trace of the model (dynamic batch and length), saved to ``path``."""
    with traceable_masks(), torch.no_grad():
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
    traced.save(path)
    return torch.jit.load(path)


def dynamic_shapes(sample_rate, min_seconds=0.25):
    """Any batch size and any length from ``min_seconds`` to an hour."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    time = torch.export.Dim("time", min=int(min_seconds * sample_rate), max=sample_rate * 3600)
    return {"wavs": {0: batch, 1: time}, "lengths": {0: batch}}


def to_exported_program(model, example, path):
    """torch.export program (the successor of TorchScript), saved as ``.pt2``:
    ``torch.export.load(path).module()(wavs, lengths)``."""
    with traceable_masks(), torch.no_grad():
        program = torch.export.export(model.eval(), example, dynamic_shapes=dynamic_shapes(model.sample_rate))
    torch.export.save(program, path)
    return torch.export.load(path).module()


def to_onnx(model, example, path, opset=18):
    """ONNX export (torch.export based), dynamic batch and length (see ``dynamic_shapes``)."""
    with traceable_masks(), torch.no_grad():
        torch.onnx.export(model.eval(), example, path, dynamo=True, opset_version=opset, verbose=False,
                          input_names=list(INPUTS), output_names=list(getattr(model, "outputs", OUTPUTS)),
                          external_data=False,
                          dynamic_shapes=dynamic_shapes(model.sample_rate))
    return path


def onnx_session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_onnx(session, wavs, lengths):
    out = session.run(None, {"wavs": wavs.numpy(), "lengths": lengths.numpy()})
    return tuple(torch.from_numpy(o) for o in out)


def quantize_onnx_int8(src, dst):
    """onnxruntime dynamic int8 quantization of an exported ONNX file (Conv -> ConvInteger,
    MatMul -> MatMulInteger). The exporter's intermediate shape annotations are dropped
    first: onnxruntime's own shape inference disagrees with some of them and stops."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(src)
    del graph.graph.value_info[:]
    tmp = f"{dst}.noshapes.onnx"
    onnx.save(graph, tmp)
    try:
        quantize_dynamic(tmp, dst, weight_type=QuantType.QInt8)
    finally:
        os.remove(tmp)
    return dst


class PointwiseLinear(torch.nn.Module):
    """A 1x1 ``Conv1d`` as a ``Linear`` over channels: (batch, C_in, T) -> (batch, C_out, T)."""

    def __init__(self, conv):
        super().__init__()
        self.linear = torch.nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x):
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def is_pointwise(m):
    return (isinstance(m, torch.nn.Conv1d) and m.kernel_size == (1,) and m.stride == (1,)
            and m.groups == 1 and m.padding in ((0,), "valid", "same"))


def quantize_int8(model):
    """A copy of ``model`` with 1x1 convolutions as Linear, then dynamic int8 Linear layers."""
    from torch.ao.quantization import quantize_dynamic

    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if is_pointwise(child):
                setattr(module, child_name, PointwiseLinear(child))
    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def max_abs_diff(a, b):
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(a, b))


def manifest_accuracy(models, manifest, label_space, sample_rate, limit=None):
    """Accuracy of each task for each model (name -> callable(wavs, lengths)) on the whole
    utterances of a manifest CSV, one at a time; unreadable files are skipped."""
    with open(manifest) as f:
        rows = list(csv.DictReader(f))[:limit]
    correct = {m: {t: 0 for t in OUTPUTS[:3]} for m in models}
    n = 0
    for row in rows:
        try:
            wav = load_audio(row["wav"], sample_rate).unsqueeze(0)
        except AudioError:
            continue
        sub = label_space.sub_index(row["age"], row.get("age_group", ""))
        truth = {"gender": label_space.gender_index(row["gender"]), "age_sup": label_space.sup_index(sub),
                 "age_sub": sub}
        n += 1
        for name, fn in models.items():
            with torch.no_grad():
                out = fn(wav, torch.ones(1))
            for t, p in zip(OUTPUTS[:3], out[:3]):
                correct[name][t] += int(int(p[0].argmax()) == truth[t])
    return {"n_utterances": n,
            **{m: {t: c / max(n, 1) for t, c in acc.items()} for m, acc in correct.items()}}
