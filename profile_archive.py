#!/usr/bin/env python3
"""Profile an archive of recordings into a parquet table, on Ray Data (docs/deploy.md).

    python profile_archive.py MODEL --input calls/ --output results.parquet          # this machine
    python profile_archive.py MODEL --input calls.csv --output results.parquet --address auto   # a Ray cluster
    python profile_archive.py MODEL --input calls/ --output calls.parquet --speakers auto --caller-channel right

--input is a folder (its audio files, any depth) or a CSV with a path column (path, wav or file;
--path-column). The output is a folder of parquet files with one row per file (per speaker with
--speakers auto): the keys infer.py --json prints, nested values as JSON text, and an `error`
column for a file that could not be profiled (the job goes on). Running the same command again
skips the files the output holds already (it says how many) and adds only the new ones. Without
--address Ray starts on this machine for the job (--workers model copies, --threads each).
"""

import argparse
import os
import sys

from recipes.archive.inputs import PartWriter, done_files, list_inputs
from recipes.archive.rows import schema
from recipes.inference.records import add_interface_options, overrides_from, positive


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a train.py output folder or an export.py folder")
    ap.add_argument("--input", required=True, help="a folder of audio files, or a CSV of paths")
    ap.add_argument("--output", required=True, help="the parquet output folder (created; a rerun adds to it)")
    ap.add_argument("--path-column", default=None, help="the CSV column of the paths (default: path, wav or file)")
    ap.add_argument("--address", default=None,
                    help="a Ray cluster: auto (the cluster of `ray start` on this node) or ray://host:10001 "
                         "(default: Ray on this machine for this job only)")
    ap.add_argument("--workers", type=positive(int), default=None,
                    help="model copies (Ray actors; default: the CPUs Ray sees / --threads)")
    ap.add_argument("--threads", type=positive(int), default=1, help="torch threads (and Ray CPUs) per worker")
    ap.add_argument("--batch-files", type=positive(int), default=8, help="files per worker call")
    ap.add_argument("--rows-per-part", type=positive(int), default=500,
                    help="rows per parquet part (a part is also written after 60 s)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_interface_options(ap)
    calls = ap.add_argument_group("calls (docs/calls.md): one row per speaker of each file")
    calls.add_argument("--speakers", choices=["auto"], default=None)
    calls.add_argument("--caller-channel", choices=["left", "right", "0", "1"], default=None)
    calls.add_argument("--agents", default=None, help="a folder of agent recordings: their voices are the agents")
    args = ap.parse_args(argv)
    if args.speakers is None and (args.caller_channel or args.agents):
        ap.error("--caller-channel and --agents need --speakers auto")
    return args


def main(argv=None):
    args = parse_args(argv)
    from recipes.model_folder import pretrained_source

    try:
        model = os.path.abspath(pretrained_source(args.folder))  # refreshed here once, not by every worker
        items = list_inputs(args.input, args.path_column)
        known = done_files(args.output, schema(args.speakers == "auto"))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    todo = [it for it in items if it["file"] not in known]
    skipped = len(items) - len(todo)
    print(f"{len(items)} file(s) in {args.input}; {skipped} already in {args.output}: skipped; {len(todo)} to profile",
          flush=True)
    if not todo:
        return 0
    from recipes.archive import job

    writer = PartWriter(args.output, schema(args.speakers == "auto"), rows_per_part=args.rows_per_part)
    worker = {"overrides": overrides_from(args), "speakers": args.speakers, "caller_channel": args.caller_channel,
              "agents": os.path.abspath(args.agents) if args.agents else None}
    done, errors, rate = job.run(todo, model, writer, workers=args.workers, threads=args.threads,
                           address=args.address, batch_files=args.batch_files, worker_kwargs=worker,
                           progress=not args.no_progress)
    speed = f"; {rate:.2f} files/s after the first rows" if rate else ""
    print(f"profiled {done} file(s) into {args.output} ({errors} with an error row; {skipped} skipped{speed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
