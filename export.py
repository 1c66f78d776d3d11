#!/usr/bin/env python3
"""Export a trained folder for deployment: TorchScript, ONNX, optional int8.

    python export.py results/demo/1234 --out exported/demo [--int8]

Writes into --out:
  model.pt          TorchScript (torch.jit.load), features included
  model.pt2         torch.export program (torch.export.load(path).module()), features included
  model.onnx        ONNX (onnxruntime), features included (the STFT is the ONNX STFT op)
  model_int8.pt     --int8: dynamic int8 (Linear + 1x1 convolutions), TorchScript
  model_int8.onnx   --int8: onnxruntime dynamic int8 of model.onnx
  hyperparams.yaml, *.ckpt, custom_interface.py
                    the SpeechBrain pretrained folder (recipes/inference/interface.py: foreign_class)
  export.json       inputs/outputs, class names, parity with PyTorch, int8 accuracy change
Every graph takes wavs (batch, samples) float32 at the model's sample rate and lengths
(batch,) relative in (0, 1], and returns gender, age_sup, age_sub probabilities and the
embedding; a model trained with age_regression also returns age_years (batch, 1 or 2: years,
and sigma with age_loss: gaussian_nll).
"""

import argparse
import json
import os
import sys

import torch

from recipes.inference.deploy import (INPUTS, ExportableProfiler, example_input, manifest_accuracy,
                            max_abs_diff, onnx_session, quantize_int8, quantize_onnx_int8, run_onnx,
                            to_exported_program, to_onnx, to_torchscript)
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.model_folder import export_pretrained, require_trained


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="output folder of train.py")
    ap.add_argument("--out", required=True, help="folder to write the exported files into")
    ap.add_argument("--int8", action="store_true", help="also write dynamic int8 models")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17 for STFT)")
    ap.add_argument("--check-seconds", type=float, default=3.0,
                    help="length of the random audio used for the parity checks")
    ap.add_argument("--eval-manifest", default=None,
                    help="CSV to measure the int8 accuracy change on (default: <folder>/manifests/test.csv)")
    ap.add_argument("--eval-limit", type=int, default=None, help="at most this many utterances")
    return ap.parse_args(argv)


def export(args):
    os.makedirs(args.out, exist_ok=True)
    require_trained(args.folder)
    profiler = SpeakerProfilerInterface.from_folder(args.folder)
    model = ExportableProfiler(profiler.model).eval()
    sr = model.sample_rate
    example = example_input(sr, batch=2, seconds=args.check_seconds)
    check = example_input(sr, batch=3, seconds=args.check_seconds * 1.5, seed=1)  # other shape
    with torch.no_grad():
        ref = model(*check)
    ls = profiler.label_space
    report = {"sample_rate": sr, "inputs": list(INPUTS), "outputs": list(model.outputs),
              "classes": {"gender": list(ls.genders), "age_sup": list(ls.age_sup), "age_sub": list(ls.age_sub)},
              "max_abs_diff_vs_pytorch": {}}
    export_pretrained(args.folder, args.out)

    ts = to_torchscript(model, example, os.path.join(args.out, "model.pt"))
    report["max_abs_diff_vs_pytorch"]["torchscript"] = max_abs_diff(ts(*check), ref)
    pt2 = to_exported_program(model, example, os.path.join(args.out, "model.pt2"))
    report["max_abs_diff_vs_pytorch"]["torch_export"] = max_abs_diff(pt2(*check), ref)
    if not args.no_onnx:
        path = to_onnx(model, example, os.path.join(args.out, "model.onnx"), opset=args.opset)
        report["max_abs_diff_vs_pytorch"]["onnx"] = max_abs_diff(run_onnx(onnx_session(path), *check), ref)
    if args.int8:
        q = quantize_int8(model)
        qts = to_torchscript(q, example, os.path.join(args.out, "model_int8.pt"))
        report["max_abs_diff_vs_pytorch"]["torchscript_int8"] = max_abs_diff(qts(*check), ref)
        models = {"fp32": model, "int8": q}
        if not args.no_onnx:
            qpath = quantize_onnx_int8(path, os.path.join(args.out, "model_int8.onnx"))
            qsess = onnx_session(qpath)
            report["max_abs_diff_vs_pytorch"]["onnx_int8"] = max_abs_diff(run_onnx(qsess, *check), ref)
            models["onnx_int8"] = lambda w, l: run_onnx(qsess, w, l)  # noqa: E731
        manifest = args.eval_manifest or os.path.join(args.folder, "manifests", "test.csv")
        if os.path.isfile(manifest):
            acc = manifest_accuracy(models, manifest, ls, sr, args.eval_limit)
            report["int8_accuracy"] = {"manifest": manifest, **acc}
    with open(os.path.join(args.out, "export.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def main(argv=None):
    args = parse_args(argv)
    try:
        report = export(args)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
