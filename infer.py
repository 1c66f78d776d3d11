#!/usr/bin/env python3
"""Profile audio files with a trained (or exported) folder: per file, each task's label and
probability. Non-speech frames (silence, low noise: recipes/data/speech.py, the thresholds
of training) are dropped, the speech is cut into windows whose probabilities are averaged;
a file with less than min_speech_seconds of speech is reported as silent, one with NaN /
inf samples as an error. The age pair printed is the best-scoring pair that respects the label
hierarchy (age-sub inside age-sup); when the two heads' own argmaxes disagree, the table
says so and the JSON keeps them (age_sup_raw, age_sub_raw, hierarchy_adjusted). A model with
an age head (age_regression) also prints the age in years (and +- its sigma, if predicted).

With --json every input gets one record; an input that cannot be read (missing file, a
directory, unreadable audio) gets {"file": ..., "error": "..."}. The exit code is 1 when
some input failed, 0 otherwise.

    python infer.py results/demo/1234 a.wav b.flac ...            # a table
    python infer.py results/demo/1234 call.wav --window 4 --hop 2 --json
"""

import argparse
import json
import sys

from recipes.data.audio import AudioError
from recipes.data.speech import SpeechConfig
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.inference.records import (CALL_HEADER, CLIP_WARNING, add_interface_options, call_json, call_row, json_row,
                                      overrides_from, table_row)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="output folder of train.py, or a folder written by export.py")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--device", default="cpu")
    add_interface_options(ap)
    ap.add_argument("--json", action="store_true", help="one JSON object per file instead of a table")
    ap.add_argument("--embedding", action="store_true", help="with --json: include the embedding")
    calls = ap.add_argument_group("calls (docs/calls.md): one record per speaker of each file")
    calls.add_argument("--speakers", choices=["auto"], default=None,
                       help="auto: profile each speaker of a call (stereo: one party per channel; mono: voices told apart)")
    calls.add_argument("--caller-channel", choices=["left", "right", "0", "1"], default=None,
                       help="stereo calls: the caller's channel (the other is the agent)")
    calls.add_argument("--agents", default=None, help="a folder of agent recordings: their voices are the agents")
    calls.add_argument("--rttm", default=None, help="a folder to write <file>.rttm (who speaks when) into")
    args = ap.parse_args(argv)
    if args.speakers is None and (args.caller_channel or args.agents or args.rttm):
        ap.error("--caller-channel, --agents and --rttm need --speakers auto")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        profiler = SpeakerProfilerInterface.from_folder(args.folder, args.device, overrides=overrides_from(args))
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    if args.speakers:
        return profile_calls(profiler, args)
    failed = 0
    min_speech = SpeechConfig.coerce(getattr(profiler.hparams, "speech", None)).min_speech_seconds
    if not args.json:
        age = "\tage_years" if getattr(profiler.model.heads, "age", None) is not None else ""
        print(f"file\tgender\tp\tage_sup\tp\tage_sub\tp{age}\tspeech_windows")
    for path in args.files:
        error = None
        try:
            res = profiler.classify_file(path)
        except AudioError as err:  # missing, a directory, unreadable, NaN samples: the file's record
            error = str(err)
        if error is not None:
            print(f"{path}\terror: {error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": error}))
            failed += 1
            continue
        if res["clipped_fraction"] > CLIP_WARNING:
            print(f"{path}: clipped: {100 * res['clipped_fraction']:.1f}% of the samples sit flat at the extremes; "
                  "the labels are less reliable", file=sys.stderr)
        if res["silent"]:
            print(f"{path}: no speech: {res['speech_seconds']:.2f} s above the speech thresholds, "
                  f"{min_speech} s needed (speech.min_speech_seconds)", file=sys.stderr)
        print(json_row(path, res, args.embedding) if args.json else table_row(path, res))
    return 1 if failed else 0


def profile_calls(profiler, args):
    """--speakers auto: one JSON record (or table row) per speaker of each call; a call that
    cannot be read gets {"file": ..., "error": ...} and the others are still profiled."""
    failed = 0
    if not args.json:
        print(CALL_HEADER)
    for path in args.files:
        try:
            records = profiler.profile_call(path, caller_channel=args.caller_channel, agents=args.agents,
                                            rttm=args.rttm)
        except (AudioError, ValueError) as err:
            print(f"{path}\terror: {err}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": str(err)}))
            failed += 1
            continue
        for rec in records:
            print(json.dumps(call_json(rec)) if args.json else call_row(rec))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
