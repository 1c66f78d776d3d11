#!/usr/bin/env python3
"""Write WebDataset shards (tar files) from a manifest CSV, for corpora too large for
per-file reads (the pattern of SpeechBrain's VoxLingua107 recipe). The shard format is
described in recipes/data/shards.py.

    python local/make_shards.py results/demo/1234/manifests/train.csv shards/train --sample-rate 8000
    python local/make_shards.py .../manifests/test.csv shards/test --sample-rate 8000 --no-shuffle

Training from shards needs no manual step: ``use_shards: True`` in the YAML makes train.py
write ``<shard_folder>/{train,valid,test}`` from the manifests when missing or out of date.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recipes.data.shards import write_shards  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", help="manifest CSV (recipes/data/manifest.py format)")
    ap.add_argument("out_folder")
    ap.add_argument("--sample-rate", type=int, required=True, help="the recipe's sample_rate")
    ap.add_argument("--samples-per-shard", type=int, default=1000)
    ap.add_argument("--no-shuffle", action="store_true", help="keep the evaluation order (valid/test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    meta = write_shards(args.manifest, args.out_folder, args.sample_rate, args.samples_per_shard,
                        shuffle=not args.no_shuffle, seed=args.seed)
    print(f"{meta['num_samples']} samples in {len(meta['shards'])} shards -> {args.out_folder}")


if __name__ == "__main__":
    main()
