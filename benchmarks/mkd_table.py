#!/usr/bin/env python3
"""Table-1-style benchmark of mixup KD (paper 004) on degraded speechocean762-8k or Common Voice.

Teacher: a core-recipe output folder trained on the clean train split (default: the "+CH"
run of benchmarks/core_recipe.py). Students: same speakers through the telephone channel
(band limit, mu-law, noise, packet loss) with 10% neighbour label noise; rows base /
+MKD / +CH / +MKD+CH from hparams/speechocean762/mkd.yaml (student encoders/<pair>_student.yaml). Test: the degraded copy
of the test split. Writes benchmarks/results/mkd_table_<pair>.md.

    python benchmarks/mkd_table.py --pair ecapa_cpu --epochs 6 --seeds 1234
    python benchmarks/mkd_table.py --corpus commonvoice --epochs 3 --rows +CH +MKD+CH \
        --teacher results/bench_cv/ge2e_ch_plain/1234 --skip_adapted_teacher
        (Common Voice: the frozen GE2E teacher of benchmarks/commonvoice.py's ge2e_ch_plain row;
        writes benchmarks/results/mkd_table_commonvoice_<pair>.md)
"""

import argparse
import csv
import io
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from speechbrain.dataio.dataloader import make_dataloader  # noqa: E402

from benchmarks.common import (CV_DATA, ROOT, SO_DATA, argv_without, cached_json, command_item, machine,  # noqa: E402
                               read_csv, run_logged, script_command, table_path, teacher_hparam, teacher_manifests,
                               write_markdown)
from recipes.adaptation import adapt_normalizer  # noqa: E402
from recipes.data.pipelines import SkipBadCollate, make_dataset  # noqa: E402
from recipes.config.recipe_yaml import load_recipe  # noqa: E402
from recipes.evaluation.metrics import PredictionCollector, compute_results  # noqa: E402
from recipes.inference.interface import SpeakerProfilerInterface  # noqa: E402
from recipes.model_folder import encoder_class_name  # noqa: E402

VARIANTS = {"adapt": {"teacher_adapt_norm": True}, "student-only heads": {"concat_teacher": False},
            "no cache": {"teacher_cache": False}, "balanced": {"balance_sampling_by": "[gender,age_sub]"}}
ROWS = [("base", False, False), ("+MKD", True, False), ("+CH", False, True), ("+MKD+CH", True, True)]
# corpus -> (data folder, default teacher under results/, results folder, test / train description)
CORPORA = {
    "speechocean762": (SO_DATA, "bench_core/{pair}_ch", "bench_mkd",
                       "the telephone-degraded copy of the test split (125 unseen speakers). Student training "
                       "data: the same 113 train speakers as the teacher"),
    "commonvoice": (CV_DATA, "bench_cv/ge2e_ch_plain", "bench_mkd_cv",
                    "the telephone-degraded copy of the Common Voice sample's test split (155 unseen speakers). "
                    "Student training data: the teacher's train split (1,259 speakers)"),
}


def evaluate_folder(folder, yaml_path, manifest, adapt_on=None):
    """A trained folder (teacher or student) on the degraded copy of ``manifest`` (same channel
    as the students'); adapt_on: a manifest whose degraded audio re-estimates the feature
    statistics first (recipes/adaptation.py). A model trained in another label space than the
    recipe's (e.g. a pooled teacher with child / teen groups) is scored in the recipe's: its
    age sub-group goes to the recipe's group holding the middle of its bin, the super-group
    follows from that, gender by name."""
    hp = load_recipe(yaml_path, {"teacher_folder": folder, "data_folder": "unused"})
    model = SpeakerProfilerInterface.from_folder(folder).model
    space = hp["label_space"]
    if adapt_on:
        adapt = make_dataset(adapt_on, model.label_space, model.sample_rate, sort=True, channel=hp["train_channel"])
        adapt_normalizer(model, make_dataloader(adapt, batch_size=16, collate_fn=SkipBadCollate()))
    ds = make_dataset(manifest, space, model.sample_rate, sort=True, channel=hp["test_channel"])
    own = model.label_space.to_dict() == space.to_dict()
    sizes = {"gender": space.n_gender, "age_sup": space.n_sup, "age_sub": space.n_sub}
    col = PredictionCollector(getattr(model.heads, "decode", None))  # argmax, or the posterior median (age_sub_decode)
    for batch in make_dataloader(ds, batch_size=16, collate_fn=SkipBadCollate()):
        probs, _ = model(*batch.sig)
        targets = {t: getattr(batch, f"{t}_idx").data.view(-1) for t in ("gender", "age_sup", "age_sub")}
        if own:
            col.append(batch.id, {k: v.log() for k, v in probs.items()}, targets)
            continue
        pred = dict(zip(("gender", "age_sup", "age_sub"), model.label_space.to_space(
            space, probs["gender"].argmax(-1), probs["age_sub"].argmax(-1))))
        col.append(batch.id, {t: torch.nn.functional.one_hot(p, sizes[t]).float() for t, p in pred.items()},
                   targets)
    return compute_results(col, space), sum(p.numel() for p in model.encoder.parameters())


def cached(path, compute, teacher, manifest):
    """(results, params) of a teacher evaluation on ``manifest``, kept in ``path`` (it takes
    long on CPU); made again when the teacher or the manifest is another."""
    key = {"teacher": os.path.abspath(teacher), "manifest": [os.path.abspath(manifest), os.path.getsize(manifest)]}
    saved = cached_json(path, key, lambda: dict(zip(("results", "params"), compute())))
    return saved["results"], saved["params"]


def check_unseen(teacher, test_csv):
    """A teacher row on ``test_csv`` means something only if none of its test speakers trained it."""
    def speakers(path):
        return {r["spk_id"] for r in read_csv(path)}
    seen = speakers(test_csv) & speakers(os.path.join(teacher, "manifests", "train.csv"))
    if seen:
        raise ValueError(f"{teacher} trained on {len(seen)} speaker(s) of {test_csv}: its row would not be a test")


def teacher_split_seed(teacher):
    """The speaker-split seed a teacher's manifests were prepared with (its training seed in
    folders trained before split_seed was a key of its own)."""
    for key in ("split_seed", "seed"):
        value = teacher_hparam(teacher, key)
        if value is not None and value.isdigit():
            return int(value)
    raise ValueError(f"{teacher}/hyperparams.yaml names neither split_seed nor seed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="ecapa_cpu", help="ecapa_cpu, resnet_cpu, ecapa, resnet (encoders/<pair>_student.yaml)")
    ap.add_argument("--corpus", default="speechocean762", choices=sorted(CORPORA))
    ap.add_argument("--data_folder", default=None, help="the corpus folder (default: its ../shared/data copy)")
    ap.add_argument("--teacher", default=None, help="default: results/bench_core/<pair>_ch/<seed> "
                    "(speechocean762), results/bench_cv/ge2e_ch_plain/<seed> (commonvoice)")
    ap.add_argument("--rows", nargs="+", default=[r[0] for r in ROWS], choices=[r[0] for r in ROWS],
                    help="student rows to train and list (default: all four)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234])
    ap.add_argument("--variants", nargs="*", default=[],
                    help=f"extra rows ROW:VARIANT (first seed only), ROW in base, +MKD, +CH, +MKD+CH, VARIANT in {sorted(VARIANTS)}")
    ap.add_argument("--existing-extra-seeds", action="store_true",
                    help="train only the first seed; other seeds enter a row only where already trained")
    ap.add_argument("--also_teacher", nargs="+", default=[],
                    help="other trained folders scored on the degraded test as teacher rows (students "
                         "are trained with --teacher only)")
    ap.add_argument("--finetune", action="store_true", help="add the F/T rows (paper 004)")
    ap.add_argument("--note", action="append", default=[], help="a paragraph added under the table (repeatable)")
    ap.add_argument("--results", default=None, help="default: results/bench_mkd (speechocean762), "
                    "results/bench_mkd_cv (commonvoice)")
    ap.add_argument("--skip_adapted_teacher", action="store_true",
                    help="leave out the teacher row with re-estimated feature statistics (a second "
                         "pass over the degraded train and test audio)")
    args = ap.parse_args()
    data, teacher_dir, results, _ = CORPORA[args.corpus]
    args.data_folder = args.data_folder or data
    args.results = args.results or os.path.join(ROOT, "results", results)
    yaml_path = os.path.join(ROOT, "hparams", args.corpus, "mkd.yaml")
    student = f"!include:../encoders/{args.pair}_student.yaml"
    teacher = args.teacher or os.path.join(ROOT, "results", teacher_dir.format(pair=args.pair), str(args.seeds[0]))
    manifests = teacher_manifests(teacher)
    split_seed = teacher_split_seed(teacher)
    os.makedirs(args.results, exist_ok=True)
    test_csv = os.path.join(manifests, "test.csv")
    t_res, t_params = cached(os.path.join(args.results, f"{args.pair}_teacher_eval.json"),
                             lambda: evaluate_folder(teacher, yaml_path, test_csv), teacher, test_csv)
    frozen_ge2e = "GE2EEncoder" in encoder_class_name(teacher)
    t_name = ("teacher (frozen pretrained GE2E encoder + heads trained on the clean train split)"
              if frozen_ge2e else "teacher (clean-trained, +CH)")
    table = [(t_name, "-", t_res, t_params, None)]
    if not args.skip_adapted_teacher:
        a_res, _ = cached(os.path.join(args.results, f"{args.pair}_teacher_adapted_eval.json"),
                          lambda: evaluate_folder(teacher, yaml_path, test_csv,
                                                  adapt_on=os.path.join(manifests, "train.csv")), teacher, test_csv)
        table.append(("teacher, feature stats re-estimated on degraded train audio", "-", a_res, t_params, None))
    for other in args.also_teacher:  # rows only: the students are trained with --teacher
        rel = os.path.relpath(os.path.abspath(other), ROOT)
        check_unseen(other, test_csv)
        o_res, o_params = cached(os.path.join(args.results, "teacher_eval_" + rel.replace(os.sep, "_") + ".json"),
                                 lambda: evaluate_folder(other, yaml_path, test_csv), other, test_csv)
        table.append((f"other teacher: {rel}", "-", o_res, o_params, None))
    cmds = []

    def train(out, extra):
        """train.py once per output folder (finished runs are reused); its test results."""
        cmd = [sys.executable, "train.py", f"hparams/{args.corpus}/mkd.yaml", f"--model={student}",
               f"--data_folder={args.data_folder}", f"--teacher_folder={teacher}", f"--output_folder={out}", f"--number_of_epochs={args.epochs}",
               f"--lr={args.lr}", "--noprogressbar"] + [f"--{k}={v}" for k, v in extra.items()]
        seconds = 0.0
        if not os.path.isfile(os.path.join(out, "results.json")):
            os.makedirs(out, exist_ok=True)
            seconds = run_logged(cmd, os.path.join(out, "bench.log"))[1]
        cmds.append((" ".join(cmd[1:]), seconds))
        with open(os.path.join(out, "results.json")) as f:
            return json.load(f)["test"]

    n_student = load_recipe(yaml_path, f"teacher_folder: {teacher}\ndata_folder: unused\nmodel: {student}\n")[
        "encoder"].n_params()
    rows = [(name, {"mkd": mkd, "hierarchical": ch}) for name, mkd, ch in ROWS if name in args.rows]
    for spec in args.variants:
        name, v = spec.split(":")
        mkd, ch = {r[0]: r[1:] for r in ROWS}[name]
        rows.append((f"{name} ({v})", {"mkd": mkd, "hierarchical": ch, **VARIANTS[v]}))
    folders = {}
    for name, extra in rows:
        tag = name.replace("+", "_").replace(" (", "_").replace(" ", "-").strip("_)") or "base"
        runs = []
        seeds = args.seeds if name in [r[0] for r in ROWS] else args.seeds[:1]  # variants: first seed
        for seed in seeds:
            folders[name, seed] = out = os.path.join(args.results, f"{args.pair}_{tag}", str(seed))
            if args.existing_extra_seeds and seed != seeds[0] and not os.path.isfile(os.path.join(out, "results.json")):
                continue  # only seeds already trained beyond the first
            # every seed reads the teacher's manifests with the teacher's split seed: same speakers,
            # and preparation finds them done (never re-splits them under the teacher)
            runs.append(train(out, {**extra, "seed": seed, "split_seed": split_seed, "manifest_folder": manifests}))
        table.append((name, len(runs), runs, n_student, None))
        write_table(args, table, cmds, t_params)  # after every row: a partial table survives
    if args.finetune:
        finetune(args, yaml_path, teacher, manifests, folders, train, table, cmds, t_params, n_student)


def finetune(args, yaml_path, teacher, manifests, folders, train, table, cmds, t_params, n_student):
    """Paper 004 "F/T" rows: a small in-house-like CSV corpus (the test split's speakers,
    re-split 40/10/50 by speaker through local/prepare_csv.py), students evaluated on its test
    part before and after fine-tuning on its train part (same telephone channel)."""
    ft = os.path.join(args.results, "ft_corpus")
    os.makedirs(ft, exist_ok=True)
    csv_in = os.path.join(ft, "calls.csv")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "speaker", "gender", "age", "age_group", "id"])
    for r in read_csv(os.path.join(manifests, "test.csv")):  # manifest paths are relative to the repository root
        w.writerow([os.path.join(ROOT, r["wav"]), r["spk_id"], r["gender"], r["age"], r.get("age_group", ""), r["ID"]])
    old = None
    if os.path.isfile(csv_in):
        with open(csv_in, newline="") as g:
            old = g.read()
    if old != buf.getvalue():  # unchanged: its manifests stay valid
        with open(csv_in, "w", newline="") as g:
            g.write(buf.getvalue())
    ft_man = os.path.join(ft, "manifests")
    ratios = (0.4, 0.1, 0.5)
    ft_opts = {"input_csv": csv_in, "csv_ratios": f"[{','.join(map(str, ratios))}]", "manifest_folder": ft_man}
    # the recipe's own preparation (label space, speech decision, split seed), as the F/T runs call it
    load_recipe(yaml_path, {**ft_opts, "csv_ratios": list(ratios), "teacher_folder": teacher,
                            "data_folder": "unused"})["prepare_data"]()
    ft_test = os.path.join(ft_man, "test.csv")
    for name in ("base", "+MKD+CH"):
        before, after = [], []
        for seed in args.seeds[:1]:
            student = folders[name, seed]
            before.append(evaluate_folder(student, yaml_path, ft_test)[0])
            after.append(train(student + "_ft", {
                **ft_opts, "init_from": student, "label_noise_rate": 0.0, "seed": seed,
                "mkd": name != "base", "hierarchical": name != "base"}))
        table.append((f"{name}, F/T-test, no F/T", 1, before, n_student, None))
        table.append((f"{name} + F/T", 1, after, n_student, None))
        write_table(args, table, cmds, t_params)


def fmt(runs, task, metric):
    vals = [100 * r[task][metric] for r in (runs if isinstance(runs, list) else [runs])]
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.1f}"
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{m:.1f}±{sd:.1f}"


def fmt_mace(runs):
    """Mean absolute class error of the age-sub head (group indices; not a percentage)."""
    vals = [r["age_sub"].get("mace") for r in (runs if isinstance(runs, list) else [runs])]
    vals = [v for v in vals if v is not None]
    if not vals:
        return ""
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.2f}"
    return f"{m:.2f}±{(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5:.2f}"


def command_args():
    """This run's arguments without the --note paragraphs (they are printed below the table)."""
    kept, cut = argv_without(sys.argv[1:], ("--note",))
    return kept + (["--note ..."] if cut else [])


def write_table(args, table, cmds, t_params):
    corpus_text = CORPORA[args.corpus][3]
    lines = [f"# Mixup KD on degraded {args.corpus} ({args.pair} student)", "",
             f"Machine: {machine()} (torch {torch.__version__}). "
             f"Students: {args.epochs} epochs, Adam lr {args.lr}, batch 12, 2 s crops, seeds {args.seeds} (the column says how many per row) "
             "(mean±sd when several). Test: " + corpus_text + ", "
             "through the telephone channel, 10% neighbour age-label noise.", "",
             "| model | seeds | encoder params | gender P | R | F1 | age-sup P | R | F1 | age-sub P | R | F1 | age-sub MACE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, seeds, runs, params, _ in table:
        cells = [fmt(runs, t, m) for t in ("gender", "age_sup", "age_sub") for m in ("precision", "recall", "f1")]
        cells.append(fmt_mace(runs))
        lines.append(f"| {name} | {seeds} | {params / 1e6:.2f}M ({100 * params / t_params:.0f}%) | " + " | ".join(cells) + " |")
    teacher_rows = ("the teacher is evaluated as trained (its row with feature statistics re-estimated on "
                    "degraded audio was left out: --skip_adapted_teacher)" if args.skip_adapted_teacher else
                    "the teacher is evaluated as trained and with its feature mean/std re-estimated on the "
                    "degraded training audio (recipes/adaptation.py)")
    lines += ["", f"Rows: {teacher_rows}. Variant rows (first seed only): `no cache` = the "
              "teacher runs on every 2 s crop instead of once per whole utterance; `adapt` = "
              "`teacher_adapt_norm: True`; `student-only heads` = `concat_teacher: False` (no teacher at "
              "inference); `balanced` = class-balanced sampling by gender and age sub-group "
              "(`--balance_sampling_by=[gender,age_sub]`). F/T rows (first seed only): the test split's speakers "
              "re-split by speaker 40/10/50 % with local/prepare_csv.py (an in-house-like CSV corpus, same "
              "telephone channel, no label noise); each student is scored on its test part (half the "
              "speakers) before and after "
              f"{args.epochs} epochs of fine-tuning on its train part (`--init_from`).", "",
              f"Benchmark command: `{script_command(__file__, *command_args())}`. "
              "Commands (repository root; a finished run is reused, so a short time means it was already there):", ""]
    lines += [command_item(c, s) for c, s in cmds]
    for note in args.note:
        lines += ["", note]
    name = f"mkd_table_{args.pair}.md" if args.corpus == "speechocean762" else f"mkd_table_{args.corpus}_{args.pair}.md"
    write_markdown(table_path(name), lines)


if __name__ == "__main__":
    main()
