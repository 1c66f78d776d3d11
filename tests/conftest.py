import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.fixture
def label_space():
    from recipes.labels import LabelSpace
    return LabelSpace(
        genders=["f", "m"],
        age_bins={"child": [0, 11], "teen": [12, 17], "adult": [18, 44], "senior": [45, 120]},
        hierarchy={"minor": ["child", "teen"], "grown": ["adult", "senior"]},
    )


def needs_shared(name):
    path = os.path.join(SHARED_DATA, name)
    return pytest.mark.skipif(not os.path.isdir(path),
                              reason=f"real corpus {path} absent (../shared is not on this machine)")


def free_port():
    """A free TCP port for torchrun's rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(out, data, *extra, cmd=None, timeout=600):
    """train.py (or ``cmd``) on the tiny demo corpus; asserts it succeeds, returns its output."""
    import subprocess

    cmd = cmd or [sys.executable, "train.py"]
    args = [*cmd, "hparams/demo.yaml", f"--output_folder={out}", f"--data_folder={data}",
            "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3", "--noprogressbar", *extra]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One 1-epoch demo training shared by the deploy and scale tests (never modified by
    them): returns (root, output folder); the corpus is in root/demo."""
    root = tmp_path_factory.mktemp("tiny")
    run_train(root / "out", root / "demo", "--number_of_epochs=1")
    return root, root / "out"


def assert_results_match_predictions(out):
    """results.json's macro-F1 of every task is the one scikit-learn computes from the
    per-utterance predictions_test.csv (the metrics describe the predictions written)."""
    import csv
    import json

    from sklearn.metrics import f1_score

    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)["test"]
    with open(os.path.join(out, "predictions_test.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows and res["n_scored"] == len(rows)
    from recipes.inference.model import ProfilerModel

    space = ProfilerModel.from_folder(str(out)).label_space
    classes = {"gender": space.genders, "age_sup": space.age_sup, "age_sub": space.age_sub}
    for task in ("gender", "age_sup", "age_sub"):  # macro over the label space's classes
        true = [r[f"{task}_true"] for r in rows if r[f"{task}_true"] not in ("", None)]
        pred = [r[f"{task}_pred"] for r in rows if r[f"{task}_true"] not in ("", None)]
        expected = f1_score(true, pred, average="macro", labels=list(classes[task]), zero_division=0)
        assert abs(res[task]["f1"] - expected) < 1e-6, (task, res[task]["f1"], expected)
    return res, rows


def data_block(**values):
    """The options of hparams/blocks/data.yaml (how every recipe reads its manifests, with
    their defaults), updated with ``values``: the hparams a test hands to recipes.data.datasets."""
    from recipes.config.recipe_yaml import load_recipe

    hp = load_recipe(os.path.join(ROOT, "hparams", "blocks", "data.yaml"), {"output_folder": "unused"},
                     overrides_must_match=False)
    hp.update(values)
    return hp


def ray_processes(tmpdir, before=()):
    """Pids of Ray's processes (command line naming ``tmpdir``, the RAY_TMPDIR of a test's
    jobs, or a ray:: worker title) not in ``before``."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in before or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tmpdir in cmd or cmd.startswith("ray::"):
            found.add(int(pid))
    return found


class RayJobs:
    """The environment of a test module's Ray jobs (subprocesses): their own short RAY_TMPDIR
    (Ray's sockets live there), and what Ray processes of theirs are still running."""

    def __init__(self):
        import tempfile

        self.before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        self.tmpdir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.env = {**os.environ, "RAY_TMPDIR": self.tmpdir, "OMP_NUM_THREADS": "1"}

    def left(self, wait=30.0):
        """The Ray processes still running after ``wait`` seconds at most (a stopping job's go)."""
        import time

        deadline = time.monotonic() + wait
        while (left := ray_processes(self.tmpdir, self.before)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left


@pytest.fixture(scope="module")
def ray_jobs():
    import shutil

    jobs = RayJobs()
    yield jobs
    left = jobs.left()
    shutil.rmtree(jobs.tmpdir, ignore_errors=True)
    assert not left, f"Ray processes left behind: {sorted(left)}"
