#!/usr/bin/env python3
"""Profile audio files with a trained folder: per file, each task's label and probability.

    python infer.py results/demo/1234 a.wav b.flac ...
"""

import argparse
import sys

from recipes.data.audio import AudioError
from recipes.inference import SpeakerProfiler


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="output folder of train.py")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        profiler = SpeakerProfiler.from_folder(args.folder, args.device)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    failed = 0
    print("file\tgender\tp\tage_sup\tp\tage_sub\tp")
    for path in args.files:
        try:
            res = profiler.classify_file(path)
        except AudioError as err:
            print(f"{path}\terror: {err}", file=sys.stderr)
            failed += 1
            continue
        cells = [f"{res[t][0]}\t{res[t][1]:.3f}" for t in ("gender", "age_sup", "age_sub")]
        print(path + "\t" + "\t".join(cells))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
