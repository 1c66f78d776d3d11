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
import sys

from recipes.inference.deploy import NotExportable
from recipes.inference.export_run import export_folder


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


def main(argv=None):
    args = parse_args(argv)
    try:
        report = export_folder(args.folder, args.out, int8=args.int8, onnx=not args.no_onnx, opset=args.opset,
                               check_seconds=args.check_seconds, eval_manifest=args.eval_manifest,
                               eval_limit=args.eval_limit)
    except (FileNotFoundError, NotExportable) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
