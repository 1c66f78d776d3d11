#!/usr/bin/env python3
"""Speed benchmark: training throughput and inference real-time factor. Writes
benchmarks/results/speed_<cpu|gpu>.md.

Training (utterances/s; batches of synthetic random audio built in memory, so data loading
is excluded and no corpus is needed): the CPU teacher and student of --pair, the student
with MKD (teacher frozen + mixup + feature KD), and a plain SpeechBrain ECAPA loop (a
minimal sb.Brain: Fbank + normalisation + the same ECAPA_TDNN and heads, a plain CE per
head) on the same batch; the ratio ours / plain is the cost of the project's training loop
(asymmetric and dependency losses, loss bookkeeping, bad-batch handling).
Inference (real-time factor = processing time / audio time, at batch 1 and 32, features
included): teacher, student, a pruned student (--pruned FOLDER), and the student as
TorchScript, ONNX (onnxruntime) and dynamic int8 (PyTorch and onnxruntime).
Every row runs in its own process, so its peak memory (max RSS, or CUDA max allocated) is
its own. Random weights unless trained folders are given (speed does not depend on them).

    python benchmarks/speed.py                      # full CPU run (~10 min on 2 cores)
    python benchmarks/speed.py --quick              # smoke test (a few steps per row)
    python benchmarks/speed.py --device cuda        # GPU rows (no ONNX / int8 rows)
    python benchmarks/speed.py --teacher results/bench_core/ecapa_cpu_ch/1234 --pruned <folder>
"""

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import ROOT, machine, script_command, table_path, write_markdown  # noqa: E402

os.chdir(ROOT)

import speechbrain as sb  # noqa: E402
from speechbrain.dataio.batch import PaddedBatch  # noqa: E402

from benchmarks.speed_models import load_hparams, profiler_for, random_folder, yaml_paths  # noqa: E402
from recipes.inference import deploy  # noqa: E402

TRAIN_ROWS = ("teacher", "student", "student+MKD", "plain SB ECAPA, teacher size", "plain SB ECAPA, student size")
RATIO_ROWS = ("loop ratio, teacher", "loop ratio, student")
INFER_ROWS = ("teacher", "student", "pruned student", "student TorchScript", "student ONNX",
              "student int8 (PyTorch)", "student int8 (ONNX)")
CPU_ONLY = ("student ONNX", "student int8 (PyTorch)", "student int8 (ONNX)")


# ---- training rows ------------------------------------------------------------------------
class PlainEcapaBrain(sb.Brain):
    """The plain SpeechBrain loop on the same model: Fbank + InputNormalization + ECAPA_TDNN +
    the same three heads, a plain cross-entropy per head, nothing else."""

    def compute_forward(self, batch, stage):
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        feats = self.modules.mean_var_norm(self.modules.compute_features(wavs), lens)
        return self.modules.heads(self.modules.embedding_model(feats, lens).squeeze(1))

    def compute_objectives(self, logits, batch, stage):
        ce = torch.nn.functional.cross_entropy
        return sum(ce(logits[t], getattr(batch, f"{t}_idx").data.view(-1).to(self.device))
                   for t in ("gender", "age_sup", "age_sub"))


def synthetic_batches(hp, n, batch_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    ls, n_samples = hp["label_space"], int(hp["crop_seconds"] * hp["sample_rate"])
    batches = []
    for k in range(n):
        examples = []
        for i in range(batch_size):
            sub = int(torch.randint(ls.n_sub, (1,), generator=g))
            examples.append({"id": f"u{k}_{i}", "sig": 0.1 * torch.randn(n_samples, generator=g), "ok": True,
                             "gender_idx": torch.LongTensor([int(torch.randint(ls.n_gender, (1,), generator=g))]),
                             "age_sup_idx": torch.LongTensor([ls.sup_index(sub)]),
                             "age_sub_idx": torch.LongTensor([sub])})
        batches.append(PaddedBatch(examples))
    return batches


def train_brain(name, args, tmp):
    teacher_yaml, student_yaml = yaml_paths(args.pair)
    if name in ("teacher", "plain SB ECAPA, teacher size"):
        hp = load_hparams(teacher_yaml, tmp)
    elif name == "student+MKD":
        folder = args.teacher or random_folder(teacher_yaml, os.path.join(tmp, "teacher"))
        no_cache = {"teacher_cache": False}  # the teacher runs on every step (no one-off embedding pass)
        hp = load_hparams(student_yaml, tmp, mkd=True, teacher_folder=folder, model=args.student_model, **no_cache)
    else:
        hp = load_hparams(student_yaml, tmp, mkd=False, model=args.student_model)
    run_opts = {"device": args.device}
    if name.startswith("plain"):
        modules = {"compute_features": hp["compute_features"], "mean_var_norm": hp["mean_var_norm"],
                   "embedding_model": copy.deepcopy(hp["encoder"].model),
                   "heads": copy.deepcopy(hp["heads"])}
        brain = PlainEcapaBrain(modules=modules, opt_class=hp["opt_class"], hparams=hp, run_opts=run_opts)
    else:
        brain = hp["brain_class"](modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                                  checkpointer=None, run_opts=run_opts)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()
    return brain, hp


def run_train_row(name, args, tmp):
    brain, hp = train_brain(name, args, tmp)
    batches = synthetic_batches(hp, args.warmup + args.steps, hp["batch_size"])
    times = []
    for i, batch in enumerate(batches):
        sync(args.device)
        t0 = time.perf_counter()
        brain.fit_batch(batch)
        sync(args.device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"batch": hp["batch_size"], "crop_seconds": hp["crop_seconds"], "s_per_step": step,
            "utt_per_s": hp["batch_size"] / step}


def run_ratio_row(name, args, tmp):
    """ours / plain on the same batches with their steps interleaved in one process, so other
    load on the machine slows both alike (separate rows are measured minutes apart)."""
    size = name.rsplit(", ", 1)[1]
    ours, hp = train_brain(size, args, tmp)
    brains = {"ours": ours, "plain": train_brain(f"plain SB ECAPA, {size} size", args, tmp)[0]}
    times = {k: [] for k in brains}
    for i, batch in enumerate(synthetic_batches(hp, args.warmup + args.steps, hp["batch_size"])):
        for key in (("ours", "plain") if i % 2 else ("plain", "ours")):  # alternate who goes first
            brain = brains[key]
            sync(args.device)
            t0 = time.perf_counter()
            brain.fit_batch(batch)
            sync(args.device)
            if i >= args.warmup:
                times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"ours_s": med["ours"], "plain_s": med["plain"], "ratio": med["plain"] / med["ours"]}


# ---- inference rows -----------------------------------------------------------------------
def infer_callable(name, args, tmp):
    """(callable(wavs, lengths), sample rate) for an inference row."""
    profiler = profiler_for(name, args, tmp)
    model = deploy.ExportableProfiler(profiler).eval().to(args.device)
    sr = model.sample_rate
    example = tuple(x.to(args.device) for x in deploy.example_input(sr, batch=2, seconds=3.0))
    if name == "student TorchScript":
        return deploy.to_torchscript(model, example, os.path.join(tmp, "m.pt")), sr
    if name == "student ONNX":
        sess = deploy.onnx_session(deploy.to_onnx(model, example, os.path.join(tmp, "m.onnx")))
        return (lambda w, lens: deploy.run_onnx(sess, w, lens)), sr
    if name == "student int8 (PyTorch)":
        return deploy.quantize_int8(model), sr
    if name == "student int8 (ONNX)":
        path = deploy.to_onnx(model, example, os.path.join(tmp, "m.onnx"))
        sess = deploy.onnx_session(deploy.quantize_onnx_int8(path, os.path.join(tmp, "q.onnx")))
        return (lambda w, lens: deploy.run_onnx(sess, w, lens)), sr
    return model, sr


def run_infer_row(name, args, tmp):
    fn, sr = infer_callable(name, args, tmp)
    out = {}
    for batch in (1, 32):
        wavs = 0.1 * torch.randn(batch, int(args.seconds * sr), device=args.device)
        lens = torch.ones(batch, device=args.device)
        times = []
        with torch.no_grad():
            for i in range(args.warmup + args.repeats):
                sync(args.device)
                t0 = time.perf_counter()
                fn(wavs, lens)
                sync(args.device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
        rtf = statistics.median(times) / (batch * args.seconds)
        out[f"rtf_b{batch}"] = rtf
    return out


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mb(device):
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_row(args):
    """One row in this process; prints its JSON result on the last line."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.row == "baseline":
            res = {}
        elif args.kind == "train":
            res = (run_ratio_row if args.row in RATIO_ROWS else run_train_row)(args.row, args, tmp)
        else:
            res = run_infer_row(args.row, args, tmp)
    res["peak_mb"] = peak_memory_mb(args.device)
    print(json.dumps(res))


# ---- the table ----------------------------------------------------------------------------
def hardware(device):
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if str(device).startswith("cuda") else None
    return machine(f"{torch.get_num_threads()} torch threads", f"torch {torch.__version__}",
                   f"speechbrain {sb.__version__}", gpu=gpu)


def child(args, kind, row):
    cmd = [sys.executable, os.path.abspath(__file__), "--row", row, "--kind", kind, "--pair", args.pair,
           "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--repeats", str(args.repeats), "--seconds", str(args.seconds)]
    for opt in ("teacher", "student", "pruned", "student_model"):
        if getattr(args, opt):
            cmd += [f"--{opt}", getattr(args, opt)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(args, results):
    base = results["baseline"]["peak_mb"]
    mem = "peak CUDA MB" if args.device.startswith("cuda") else "peak RSS MB"
    student = f", student {args.student_model}" if args.student_model else ""
    lines = [f"# Speed ({args.device}, {args.pair} pair{student}"
             f"{', QUICK smoke run: not a measurement' if args.quick else ''})",
             "", f"Hardware: {hardware(args.device)}.", "",
             "## Training throughput", "",
             f"Synthetic batches in memory (data loading excluded), median of {args.steps} steps after "
             f"{args.warmup} warm-up steps. Ratio = throughput of ours / the plain SpeechBrain loop on the same "
             "model and batches; teacher and student: their steps interleaved in one process (robust to "
             "other load), student+MKD: against the plain student row. "
             "student+MKD runs the frozen teacher on every step (teacher_cache: False; with the cache the "
             "steps cost about a plain student's, after a one-off pass: benchmarks/results/mkd_cost_*.md).", "",
             f"| model | batch | s/step | utterances/s | ratio | {mem} |", "|---|---|---|---|---|---|"]
    train = results["train"]
    for row in TRAIN_ROWS:
        r = train.get(row)
        if r is None or "error" in r:
            lines.append(f"| {row} | - | - | - | - | {r and r.get('error', '')} |")
            continue
        ratio = loop_ratio(train, row)
        ratio = "-" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {row} | {r['batch']} | {r['s_per_step']:.3f} | {r['utt_per_s']:.1f} | {ratio} | "
                     f"{r['peak_mb']:.0f} |")
    lines += ["", "## Inference real-time factor", "",
              f"{args.seconds:g} s utterances of random audio, features included; median of {args.repeats} runs "
              f"after {args.warmup} warm-up. RTF = processing time / audio time (x real time = 1 / RTF).", "",
              f"| model | RTF batch 1 | x real time | RTF batch 32 | x real time | {mem} |",
              "|---|---|---|---|---|---|"]
    for row, r in results["infer"].items():
        if "error" in r:
            lines.append(f"| {row} | - | - | - | - | {r['error']} |")
            continue
        lines.append(f"| {row} | {r['rtf_b1']:.4f} | {1 / r['rtf_b1']:.0f}x | {r['rtf_b32']:.4f} | "
                     f"{1 / r['rtf_b32']:.0f}x | {r['peak_mb']:.0f} |")
    lines += ["", f"Memory: each row runs in its own process; the {mem} of a process that only imports "
              f"torch and speechbrain is {base:.0f} MB (included in every row)."]
    lines += goals(train, results["infer"])
    lines += ["", f"Command: `{script_command(__file__, *sys.argv[1:])}`"]
    return "\n".join(lines) + "\n"


def goals(train, infer):
    """The speed goals, checked on this run."""
    out = ["", "Goals (figure measured in this run after the colon):"]
    t, s = train.get("teacher", {}), train.get("student", {})
    if "utt_per_s" in t and "utt_per_s" in s:
        out.append(f"- student training >= 2x its teacher: {s['utt_per_s'] / t['utt_per_s']:.2f}x")
    ti, si = infer.get("teacher", {}), infer.get("student", {})
    if "rtf_b32" in ti and "rtf_b32" in si:
        out.append(f"- student inference >= 2x its teacher (batch 32): {ti['rtf_b32'] / si['rtf_b32']:.2f}x")
        out.append(f"- batched student inference >= 200x real time: {1 / si['rtf_b32']:.0f}x")
    for row in ("teacher", "student"):
        if loop_ratio(train, row) is not None:
            out.append(f"- our loop / plain SpeechBrain loop >= 0.95 ({row}): {loop_ratio(train, row):.2f}")
    return out


def loop_ratio(train, row):
    """ours / plain: the interleaved measurement where there is one, else separate rows."""
    if row not in ("teacher", "student", "student+MKD"):
        return None
    inter = train.get(f"loop ratio, {row}", {})
    if "ratio" in inter:
        return inter["ratio"]
    r = train.get(row, {})
    p = train.get(f"plain SB ECAPA, {'teacher' if row == 'teacher' else 'student'} size", {})
    return r["utt_per_s"] / p["utt_per_s"] if "utt_per_s" in r and "utt_per_s" in p else None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="ecapa_cpu",
                    help="teacher: speechocean762/train.yaml with encoders/<pair>_teacher.yaml; "
                         "student: speechocean762/mkd.yaml with encoders/<pair>_student.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--teacher", help="trained teacher folder (MKD row, teacher inference); default random")
    ap.add_argument("--student", help="trained student folder for the inference rows; default random")
    ap.add_argument("--pruned", help="pruned student folder (train.py output): adds its inference row")
    ap.add_argument("--student_model", help="student encoder: a YAML of hparams/encoders/ (name without .yaml) "
                                            "in place of the pair's student, e.g. ecapa_cpu_small_student")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per row")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="timed inference runs per batch size")
    ap.add_argument("--seconds", type=float, default=4.0, help="utterance length for inference")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 steps / repeats, 1 warm-up, 2 s")
    ap.add_argument("--out", help="markdown file (default benchmarks/results/speed_<cpu|gpu>.md; --quick: a temp file)")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats, args.seconds = 2, 1, 2, 2.0
    return args


def main():
    args = parse_args()
    if args.row:
        return run_row(args)
    gpu = args.device.startswith("cuda")
    results = {"baseline": child(args, "infer", "baseline"), "train": {}, "infer": {}}
    for row in TRAIN_ROWS + RATIO_ROWS:
        print(f"train: {row}", file=sys.stderr)
        results["train"][row] = child(args, "train", row)
    for row in INFER_ROWS:
        if (row == "pruned student" and not args.pruned) or (gpu and row in CPU_ONLY):
            continue
        print(f"inference: {row}", file=sys.stderr)
        results["infer"][row] = child(args, "infer", row)
    text = table(args, results)
    default = table_path(f"speed_{'gpu' if gpu else 'cpu'}.md")
    out = args.out or (os.path.join(tempfile.gettempdir(), "speed_quick.md") if args.quick else default)
    write_markdown(out, text)


if __name__ == "__main__":
    main()
