"""Every entry script at the root runs end to end on a tiny demo folder, as a user runs it (a
subprocess), and writes what it promises; no file imports an entry script."""

import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

ENTRY_SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.py")))


def run(*args, timeout=900):
    res = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_every_entry_script_has_a_test_here():
    source = open(__file__).read()
    assert set(ENTRY_SCRIPTS) >= {"train.py", "infer.py", "export.py", "prune.py", "probe.py", "audit.py"}
    for script in ENTRY_SCRIPTS:
        assert f'"{script}"' in source, f"{script} is not run by tests/test_entry_scripts.py"


def test_no_file_imports_an_entry_script():
    modules = {s[:-3] for s in ENTRY_SCRIPTS}
    files = [p for pattern in ("*.py", "recipes/**/*.py", "local/*.py", "benchmarks/*.py", "tests/*.py")
             for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)]
    for path in files:
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                assert name.split(".")[0] not in modules, f"{os.path.relpath(path, ROOT)} imports {name}"


def test_train_py(tiny_run):
    """train.py: the outputs the README lists (the run itself is the shared tiny_run fixture)."""
    _, out = tiny_run
    for name in ("results.json", "results.md", "predictions_test.csv", "inference.yaml", "hyperparams.yaml",
                 "pretrained/hyperparams.yaml"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["test"]["n_scored"] > 0


def test_infer_py(tiny_run):
    root, out = tiny_run
    wavs = sorted(glob.glob(str(root / "demo" / "wav" / "*.wav")))[:2]
    records = [json.loads(line) for line in run("infer.py", out, *wavs, "--json").splitlines()]
    assert [r["file"] for r in records] == wavs
    assert all(r["gender"]["label"] in ("f", "m") for r in records)


def test_export_py(tiny_run, tmp_path):
    _, out = tiny_run
    report = json.loads(run("export.py", out, "--out", tmp_path / "exp", "--no-onnx"))
    assert (tmp_path / "exp" / "model.pt").is_file() and (tmp_path / "exp" / "hyperparams.yaml").is_file()
    assert report["max_abs_diff_vs_pytorch"]["torchscript"] < 1e-3


@pytest.mark.parametrize("method", ["magnitude", "structured"])
def test_prune_py(tiny_run, tmp_path, method):
    _, out = tiny_run
    yaml = "hparams/demo_prune.yaml" if method == "magnitude" else "hparams/demo_prune_structured.yaml"
    dest = tmp_path / method
    run("prune.py", yaml, f"--model_folder={out}", f"--output_folder={dest}", "--max_rounds=1",
        "--epochs_per_round=1", "--latency_batches=[1]", "--latency_repeats=1", "--noprogressbar")
    summary = json.loads((dest / "prune_summary.json").read_text())
    assert summary["method"] == method and summary["final_round"] in (0, 1)
    assert (dest / "inference.yaml").is_file() and (dest / "pruned_model.pt").is_file()
    run("infer.py", dest, sorted(glob.glob(str(tiny_run[0] / "demo" / "wav" / "*.wav")))[0])  # it loads


def test_probe_py(tiny_run, tmp_path):
    _, out = tiny_run
    text = run("probe.py", "hparams/probe/demo.yaml", f"--model_folder={out}", f"--output_folder={tmp_path / 'p'}",
               "--n_seeds=1", "--sv_trials=200", "--tasks=[gender,age_sub,speaker]")
    assert "gender" in text and (tmp_path / "p" / "report.md").is_file()
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert "gender" in json.dumps(results)


def test_audit_py(tiny_run, tmp_path):
    _, out = tiny_run
    run("audit.py", "hparams/audit/demo.yaml", f"--model_folder={out}", f"--output_folder={tmp_path / 'a'}",
        "--n_seeds=1", "--sv_trials=200", "--tasks=[gender,age_sub,channel]")
    assert (tmp_path / "a" / "audit.md").is_file() and (tmp_path / "a" / "predictions_audit.csv").is_file()


@pytest.mark.parametrize("script,yaml", [("probe.py", "hparams/probe/demo.yaml"),
                                         ("audit.py", "hparams/audit/demo.yaml")])
def test_probe_and_audit_refuse_unknown_options(tiny_run, script, yaml):
    _, out = tiny_run
    res = subprocess.run([sys.executable, script, yaml, f"--model_folder={out}", "--n_seed=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "unknown option --n_seed; did you mean 'n_seeds'?" in res.stderr


def test_serve_py(tiny_run):
    """serve.py answers on 127.0.0.1 and stops on SIGTERM without leaving a process behind."""
    import signal
    import time
    import urllib.request

    from conftest import free_port

    _, out = tiny_run
    port = free_port()
    proc = subprocess.Popen([sys.executable, "serve.py", str(out), "--port", str(port), "--workers", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        body = None
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert body and body["sample_rate"] == 8000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None  # stopped: no process left behind


def test_profile_archive_py(tiny_run, tmp_path, ray_jobs):
    """profile_archive.py: a folder of clips -> a parquet folder, one row per clip (Ray on this machine)."""
    import pyarrow.parquet as pq

    root, out = tiny_run
    wavs = sorted(glob.glob(str(root / "demo" / "wav" / "*.wav")))[:2]
    os.makedirs(tmp_path / "in")
    for w in wavs:
        os.symlink(w, tmp_path / "in" / os.path.basename(w))
    res = subprocess.run([sys.executable, "profile_archive.py", str(out), "--input", str(tmp_path / "in"), "--output",
                          str(tmp_path / "out.parquet"), "--workers", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=ray_jobs.env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pq.read_table(str(tmp_path / "out.parquet")).to_pylist()
    assert len(table) == 2 and all(r["error"] is None and r["gender_label"] in ("f", "m") for r in table)
    assert not ray_jobs.left()
