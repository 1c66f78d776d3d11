#!/usr/bin/env python3
"""Rebuild the profile shipped in the repository (``builtin``: recipes/builtin_profile/) from the
shared corpora and measure it, in one command:

    python benchmarks/builtin_profile.py

1. trains hparams/pooled/ge2e.yaml (the frozen GE2E encoder of the resemblyzer wheel, heads
   trained on Common Voice and speechocean762 together, the telephone channel on half the
   training clips), unless its folder holds a finished run;
2. exports its best checkpoint into recipes/builtin_profile/ without the encoder weights the
   wheel already holds (recipes/model_folder.py drop_rebuilt_weights): the heads alone;
3. profiles each corpus's test split with the shipped folder through the inference interface
   (``SpeakerProfilerInterface.from_folder("builtin")``: windows, speech detection) and writes
   per corpus and per gender figures to benchmarks/results/builtin_profile.md (the model card,
   docs/builtin_profile.md, quotes them).
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import CV_DATA, ROOT, SO_DATA, command_item, machine, manifest_clips, rel, run_once, script_command, table_path, write_markdown  # noqa: E402

RECIPE = "hparams/pooled/ge2e.yaml"
RUN = "results/pooled/ge2e_mc_ch_True/1234"  # the recipe's default output folder
SEED = 1234
CORPORA = (("Common Voice sample (58 languages)", "manifests"),
           ("speechocean762 (Mandarin-accented English)", "manifests_speechocean762"))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_folder", default=CV_DATA, help="Common Voice release folder")
    ap.add_argument("--speechocean_folder", default=SO_DATA)
    ap.add_argument("--run", default=RUN, help="the training run's output folder")
    ap.add_argument("--out", default=None, help="the folder to write (default: the shipped recipes/builtin_profile)")
    ap.add_argument("--limit", type=int, default=0, help="test clips per corpus (0: all)")
    return ap.parse_args(argv)


def train(args):
    run = os.path.join(ROOT, args.run)
    cmd = [sys.executable, "train.py", RECIPE, f"--data_folder={args.data_folder}",
           f"--speechocean_folder={args.speechocean_folder}", f"--output_folder={args.run}", f"--seed={SEED}",
           "--noprogressbar"]
    return run, run_once(run, cmd, os.path.join(run + "_train.log"))


def ship(run, out):
    """Export the run's best checkpoint into ``out`` (replaced whole only once complete)."""
    from recipes.model_folder import drop_rebuilt_weights, export_pretrained

    tmp = out.rstrip("/") + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    export_pretrained(run, tmp)
    slim = drop_rebuilt_weights(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return slim


def truth(ls, row):
    g = ls.gender_index(row["gender"])
    sub = ls.sub_index(age=row.get("age"), age_group=row.get("age_group"))
    return ls.genders[g], ls.age_sub[sub], ls.age_sup[ls.sup_index(sub)]


def groups(ls):
    """Row groups of the table: name -> whether a manifest row belongs (exact ages: by age too)."""
    out = {"all": lambda r: True}
    out.update({f"gender {g}": (lambda r, g=g: ls.genders[ls.gender_index(r["gender"])] == g) for g in ls.genders})
    out["adults (exact age 20 or more)"] = lambda r: r.get("age") not in (None, "") and float(r["age"]) >= 20
    out["under 20 (exact age)"] = lambda r: r.get("age") not in (None, "") and float(r["age"]) < 20
    return out


def score(rows, results, ls):
    """Per group: n, gender accuracy (and macro-F1 where both genders are in the group), age group
    and super-group accuracy."""
    from sklearn.metrics import f1_score

    table = {}
    for group, member in groups(ls).items():
        pairs = [(truth(ls, r), res) for r, res in zip(rows, results)
                 if not res.get("error") and not res.get("silent") and member(r)]
        if not pairs:
            continue
        t_g, p_g = [t[0] for t, _ in pairs], [res["gender"]["label"] for _, res in pairs]
        acc = lambda i, key: 100.0 * sum(t[i] == res[key]["label"] for t, res in pairs) / len(pairs)  # noqa: E731
        f1 = (100.0 * f1_score(t_g, p_g, average="macro", labels=ls.genders)) if len(set(t_g)) > 1 else None
        table[group] = {"n": len(pairs), "gender_acc": acc(0, "gender"), "gender_f1": f1,
                        "age_sub_acc": acc(1, "age_sub"), "age_sup_acc": acc(2, "age_sup")}
    skipped = sum(1 for res in results if res.get("error") or res.get("silent"))
    return table, skipped


def evaluate(run, folder, limit):
    from recipes.inference.interface import SpeakerProfilerInterface

    profiler = SpeakerProfilerInterface.from_folder(folder)
    ls = profiler.label_space
    out = []
    for name, manifests in CORPORA:
        rows = manifest_clips(os.path.join(run, manifests, "test.csv"), limit)
        t0 = time.time()
        results = profiler.classify_files([r["wav"] for r in rows])
        out.append((name, *score(rows, results, ls), time.time() - t0))
    return out, ls


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from recipes.model_folder import BUILTIN, BUILTIN_DIR

    out = os.path.abspath(args.out) if args.out else BUILTIN_DIR
    run, (command, seconds) = train(args)
    slim = ship(run, out)
    figures, ls = evaluate(run, out if args.out else BUILTIN, args.limit)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / 1e6
    lines = [
        "# The shipped profile (`builtin`): test figures per corpus and gender",
        "",
        f"Machine: {machine()}. Written by `{script_command(__file__, *(sys.argv[1:] if argv is None else argv))}`.",
        "",
        f"The folder `{rel(out)}` ({size:.1f} MB{', heads only: the GE2E encoder weights come from the resemblyzer wheel' if slim else ''}) "
        f"was exported from the best checkpoint of `{rel(run)}`, trained by",
        command_item(command, seconds),
        "",
        "Each corpus's speaker-disjoint test split (clean audio: the telephone channel was applied to half the",
        "training clips only), profiled through `SpeakerProfilerInterface.from_folder(\"builtin\")` (4 s windows,",
        "speech detection, the probabilities averaged over windows). Age groups: "
        + ", ".join(f"{k} {lo:.0f}-{hi:.0f}" for k, (lo, hi) in ls.age_bins.items()) + "; super-groups: "
        + ", ".join(f"{sup} ({', '.join(s for s in ls.age_sub if ls.sub_to_sup[s] == sup)})" for sup in ls.age_sup)
        + ".",
        "",
        "| corpus | speakers | clips | gender acc % | gender macro-F1 % | age group acc % | age super-group acc % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, table, skipped, secs in figures:
        for group, m in table.items():
            f1 = "-" if m["gender_f1"] is None else f"{m['gender_f1']:.1f}"
            lines.append(f"| {name} | {group} | {m['n']} | {m['gender_acc']:.1f} | "
                         f"{f1} | {m['age_sub_acc']:.1f} | {m['age_sup_acc']:.1f} |")
    lines += ["", "Clips not scored (no speech found, or unreadable): "
              + "; ".join(f"{name} {skipped}" for name, _, skipped, _ in figures) + ".",
              "Profiling time: " + "; ".join(f"{name} {secs:.0f} s" for name, _, _, secs in figures) + "."]
    write_markdown(table_path("builtin_profile.md"), lines)


if __name__ == "__main__":
    main()
