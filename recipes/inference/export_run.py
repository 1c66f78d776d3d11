"""The export run of export.py: TorchScript, torch.export, ONNX and optional int8 graphs of a
trained folder (recipes/inference/deploy.py builds them), the SpeechBrain pretrained folder
beside them, and export.json with the parity checks and the int8 accuracy change."""

import json
import os

import torch

from recipes.inference.deploy import (INPUTS, ExportableProfiler, example_input, manifest_accuracy,
                                      max_abs_diff, onnx_session, quantize_int8, quantize_onnx_int8, run_onnx,
                                      to_exported_program, to_onnx, to_torchscript)
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.model_folder import export_pretrained, require_trained


def export_folder(folder, out, int8=False, onnx=True, opset=18, check_seconds=3.0, eval_manifest=None,
                  eval_limit=None):
    """export.py: the graphs of a trained folder written into ``out`` with their parity checks
    (and, with ``int8``, the int8 models and their accuracy change on ``eval_manifest``,
    default <folder>/manifests/test.csv). Returns the report written as export.json."""
    require_trained(folder)
    os.makedirs(out, exist_ok=True)
    profiler = SpeakerProfilerInterface.from_folder(folder)
    model = ExportableProfiler(profiler.model).eval()
    sr = model.sample_rate
    example = example_input(sr, batch=2, seconds=check_seconds)
    check = example_input(sr, batch=3, seconds=check_seconds * 1.5, seed=1)  # other shape
    with torch.no_grad():
        ref = model(*check)
    ls = profiler.label_space
    report = {"sample_rate": sr, "inputs": list(INPUTS), "outputs": list(model.outputs),
              "classes": {"gender": list(ls.genders), "age_sup": list(ls.age_sup), "age_sub": list(ls.age_sub)},
              "max_abs_diff_vs_pytorch": {}}
    export_pretrained(folder, out)

    ts = to_torchscript(model, example, os.path.join(out, "model.pt"))
    report["max_abs_diff_vs_pytorch"]["torchscript"] = max_abs_diff(ts(*check), ref)
    pt2 = to_exported_program(model, example, os.path.join(out, "model.pt2"))
    report["max_abs_diff_vs_pytorch"]["torch_export"] = max_abs_diff(pt2(*check), ref)
    if onnx:
        path = to_onnx(model, example, os.path.join(out, "model.onnx"), opset=opset)
        report["max_abs_diff_vs_pytorch"]["onnx"] = max_abs_diff(run_onnx(onnx_session(path), *check), ref)
    if int8:
        q = quantize_int8(model)
        qts = to_torchscript(q, example, os.path.join(out, "model_int8.pt"))
        report["max_abs_diff_vs_pytorch"]["torchscript_int8"] = max_abs_diff(qts(*check), ref)
        models = {"fp32": model, "int8": q}
        if onnx:
            qpath = quantize_onnx_int8(path, os.path.join(out, "model_int8.onnx"))
            qsess = onnx_session(qpath)
            report["max_abs_diff_vs_pytorch"]["onnx_int8"] = max_abs_diff(run_onnx(qsess, *check), ref)
            models["onnx_int8"] = lambda w, l: run_onnx(qsess, w, l)  # noqa: E731
        manifest = eval_manifest or os.path.join(folder, "manifests", "test.csv")
        if os.path.isfile(manifest):
            acc = manifest_accuracy(models, manifest, ls, sr, eval_limit)
            report["int8_accuracy"] = {"manifest": manifest, **acc}
    with open(os.path.join(out, "export.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report
