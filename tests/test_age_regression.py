"""The age-in-years head: interval losses on hand-computed values, masking of missing ages,
targets from manifest rows, derived groups, the MAE / RMSE report, and a tiny demo run whose
years reach predictions_test.csv, the inference dict, infer.py and the exported graphs."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, run_train
from recipes.age import AGE_KEY, age_interval, derived_sub_index
from recipes.evaluation.age import age_results
from recipes.heads import ProfilingHeads
from recipes.losses import ProfilingObjective, age_regression_loss, interval_gaussian_nll, interval_l1_loss

NAN = float("nan")


def phi(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_interval_l1_hand_values_and_masking():
    pred = torch.tensor([30.0, 50.0, 70.0, 10.0, 25.0, 130.0], requires_grad=True)
    lower = torch.tensor([30.0, 60.0, 60.0, NAN, 20.0, 60.0])
    upper = torch.tensor([30.0, 120.0, 120.0, NAN, 20.0, 120.0])
    per_row = interval_l1_loss(pred, lower, upper, reduction="none")
    # exact 30 -> 0; 50 below [60, 120] -> 10; inside -> 0; no age -> 0; exact 20 -> 5; above -> 10
    assert per_row.tolist() == [0.0, 10.0, 0.0, 0.0, 5.0, 10.0]
    loss = interval_l1_loss(pred, lower, upper)
    assert loss.item() == pytest.approx(25.0 / 5)  # mean over the 5 rows with an age
    loss.backward()
    assert pred.grad.tolist() == pytest.approx([0.0, -0.2, 0.0, 0.0, 0.2, 0.2])  # row 3 (no age): 0
    none = interval_l1_loss(pred, torch.full((6,), NAN), torch.full((6,), NAN))
    assert none.item() == 0.0  # a batch without any age: zero, still differentiable


def test_interval_gaussian_nll_hand_values():
    mu = torch.tensor([30.0, 50.0, 90.0, 200.0, 10.0])
    sigma = torch.tensor([5.0, 5.0, 10.0, 5.0, 5.0])
    lower = torch.tensor([32.0, 60.0, 60.0, 60.0, NAN])
    upper = torch.tensor([32.0, 120.0, 120.0, 120.0, NAN])
    got = interval_gaussian_nll(mu, sigma, lower, upper, reduction="none")
    point = math.log(5.0) + (32 - 30) ** 2 / (2 * 25.0) + 0.5 * math.log(2 * math.pi)
    below = -math.log(phi((120 - 50) / 5) - phi((60 - 50) / 5))
    inside = -math.log(phi((120 - 90) / 10) - phi((60 - 90) / 10))
    assert got[:3].tolist() == pytest.approx([point, below, inside], rel=1e-5)
    # far above the bin: -log(Phi(-16) - Phi(-28)) ~ 16^2 / 2 + log(16 sqrt(2 pi)), finite (no 1 - 1)
    assert math.isfinite(got[3].item()) and got[3].item() == pytest.approx(
        16 ** 2 / 2 + math.log(16 * math.sqrt(2 * math.pi)), rel=1e-2)
    assert got[4].item() == 0.0
    mean = interval_gaussian_nll(mu, sigma, lower, upper)
    assert mean.item() == pytest.approx(got[:4].mean().item(), rel=1e-6)
    # a wider sigma costs a point target more when the prediction is exact
    assert interval_gaussian_nll(torch.tensor([32.0]), torch.tensor([2.0]), torch.tensor([32.0]),
                                 torch.tensor([32.0])) < interval_gaussian_nll(
        torch.tensor([32.0]), torch.tensor([8.0]), torch.tensor([32.0]), torch.tensor([32.0]))


def test_objective_adds_the_age_term_only_with_the_head(label_space):
    torch.manual_seed(0)
    logits = {"gender": torch.randn(4, 2), "age_sup": torch.randn(4, 2), "age_sub": torch.randn(4, 4)}
    targets = {"gender": torch.tensor([0, 1, 0, 1]), "age_sub": torch.tensor([0, 1, 2, 3])}
    targets["age_sup"] = label_space.parent_index()[targets["age_sub"]]
    targets[AGE_KEY] = torch.tensor([[8.0, 8.0], [12.0, 17.0], [NAN, NAN], [45.0, 120.0]])
    objective = ProfilingObjective(label_space, age_weight=0.5, age_scale=10.0)
    base, terms = objective(logits, targets)
    assert "age" not in terms  # no age output in the logits: no term
    age_out = torch.tensor([[10.0], [20.0], [99.0], [50.0]], requires_grad=True)
    total, terms = objective({**logits, AGE_KEY: age_out}, targets)
    assert terms["age"].item() == pytest.approx((2.0 + 3.0 + 0.0) / 3 / 10.0)
    assert total.item() == pytest.approx(base.item() + 0.5 * terms["age"].item(), rel=1e-6)
    total.backward()
    assert age_out.grad[2].item() == 0.0 and age_out.grad[0].item() > 0
    with pytest.raises(ValueError, match="sigma"):
        age_regression_loss(age_out, targets[AGE_KEY], "gaussian_nll")


def test_heads_off_keep_the_state_dict_on_add_years(label_space):
    torch.manual_seed(0)
    old = ProfilingHeads(16, label_space, hidden_size=8)
    off = ProfilingHeads(16, label_space, hidden_size=8, age_regression=False)
    assert list(off.state_dict()) == list(old.state_dict())
    assert set(off(torch.randn(3, 16))) == {"gender", "age_sup", "age_sub"}
    on = ProfilingHeads(16, label_space, hidden_size=8, age_regression=True, age_center=40.0)
    on.load_state_dict(old.state_dict(), strict=False)  # an old checkpoint: the group heads load
    assert all(k.startswith("age.") for k in set(on.state_dict()) - set(old.state_dict()))
    on.eval()
    assert on(torch.randn(3, 16))[AGE_KEY].shape == (3, 1)
    nll = ProfilingHeads(16, label_space, hidden_size=8, age_regression=True, age_loss="gaussian_nll",
                         age_min_sigma=0.5).eval()
    out = nll(torch.randn(3, 16))[AGE_KEY]
    assert out.shape == (3, 2) and (out[:, 1] > 0.5).all()
    with pytest.raises(ValueError, match="age_loss"):
        ProfilingHeads(16, label_space, age_regression=True, age_loss="l2")


def test_targets_from_manifest_rows_and_derived_groups(label_space):
    assert age_interval(label_space, "33", "") == (33.0, 33.0)
    assert age_interval(label_space, "33", "teen") == (33.0, 33.0)  # the exact age wins
    assert age_interval(label_space, "", "senior") == (45.0, 120.0)  # open-ended bin
    lo, hi = age_interval(label_space, " ", "")
    assert math.isnan(lo) and math.isnan(hi)
    # bins child [0, 11], teen [12, 17], adult [18, 44], senior [45, 120]: gaps go to the nearer bin
    years = [5.0, 11.4, 11.6, 17.2, 30.0, 44.9, 200.0, -3.0]
    assert derived_sub_index(years, label_space).tolist() == [0, 0, 1, 1, 2, 3, 3, 0]


def test_age_results_hand_values(label_space):
    pred = np.array([10.0, 20.0, 50.0, 30.0, 70.0, 5.0])
    lower = np.array([8.0, 24.0, 45.0, 45.0, NAN, 0.0])
    upper = np.array([8.0, 24.0, 120.0, 120.0, NAN, 11.0])
    gender = np.array([0, 1, 0, 1, 1, 0])
    sub_true = np.array([0, 2, 3, 3, -1, 0])
    sub_head = np.array([0, 2, 2, 3, 3, 1])
    sup_head = label_space.parent_index().numpy()[sub_head]
    res = age_results(pred, lower, upper, gender, sub_true, sub_head, sup_head, label_space)
    assert res["n_scored"] == 5
    assert res["exact"] == {"n": 2, "mae": pytest.approx(3.0), "rmse": pytest.approx(math.sqrt((4 + 16) / 2))}
    # interval rows: 50 in [45, 120] -> 0, 30 -> 15, 5 in [0, 11] -> 0
    assert res["interval"]["n"] == 3 and res["interval"]["mae"] == pytest.approx(5.0)
    assert res["interval"]["rmse"] == pytest.approx(math.sqrt(225 / 3))
    assert res["interval"]["inside"] == pytest.approx(2 / 3)
    assert res["per_gender"]["f"]["exact"]["mae"] == pytest.approx(2.0)
    assert res["per_gender"]["m"]["interval"]["mae"] == pytest.approx(15.0)
    assert res["per_age_group"]["senior"]["interval"]["n"] == 2
    assert res["per_age_group"]["teen"]["exact"]["mae"] is None
    # years -> groups: child, adult, senior, adult, senior, child
    d = res["derived_groups"]["age_sub"]
    assert d["accuracy_from_years"] == pytest.approx(4 / 5)  # row 3 (30 -> adult, true senior) wrong
    assert d["accuracy_head"] == pytest.approx(3 / 5)
    assert d["agreement"] == pytest.approx(3 / 6)  # rows 0, 1, 4
    assert res["derived_groups"]["age_sup"]["agreement"] == 1.0  # the sub disagreements share a super-group


@pytest.fixture(scope="module")
def age_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("age")
    log = run_train(root / "out", root / "demo", "--number_of_epochs=2", "--age_regression=True",
                    "--age_loss=gaussian_nll")
    return root, root / "out", log


def test_demo_run_reports_and_writes_years(age_run):
    root, out, log = age_run
    res = json.loads((out / "results.json").read_text())["test"][AGE_KEY]
    assert res["exact"]["n"] == res["n_scored"] > 0 and res["exact"]["mae"] > 0  # the demo has exact ages
    assert set(res["per_gender"]) == {"f", "m"} and "mean_sigma" in res
    assert "age in years" in (out / "results.md").read_text() and "| age_sub |" in log
    with open(out / "predictions_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"age_pred", "age_sigma", "age_true", "age_lo", "age_hi", "age_sub_from_years"} <= set(rows[0])
    errs = [abs(float(r["age_pred"]) - float(r["age_true"])) for r in rows]
    assert np.mean(errs) == pytest.approx(res["exact"]["mae"], abs=0.01)  # 2-decimal CSV
    assert "age_mae_exact" in (out / "train_log.txt").read_text()


def test_interface_infer_and_export_carry_the_years(age_run, tmp_path):
    from recipes.inference.deploy import example_input
    from recipes.inference.model import ProfilerModel
    from recipes.inference.interface import SpeakerProfilerInterface

    root, out, _ = age_run
    wav = str(sorted((root / "demo" / "wav").iterdir())[0])
    res = SpeakerProfilerInterface.from_folder(str(out)).classify_file(wav)
    assert isinstance(res["age_years"], float) and res["age_sigma"] > 0
    cli = subprocess.run([sys.executable, "infer.py", str(out), wav], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0 and "age_years" in cli.stdout.splitlines()[0] and "+-" in cli.stdout
    exp = tmp_path / "exported"
    done = subprocess.run([sys.executable, "export.py", str(out), "--out", str(exp)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((exp / "export.json").read_text())
    assert report["outputs"][-1] == AGE_KEY
    wavs, lens = example_input(8000, batch=3, seconds=4.0, seed=3)
    probs, _ = ProfilerModel.from_folder(str(out))(wavs, lens)
    ref = probs[AGE_KEY]
    assert ref.shape == (3, 2)
    import onnxruntime

    with torch.no_grad():
        ts = torch.jit.load(str(exp / "model.pt"))(wavs, lens)[-1]
    sess = onnxruntime.InferenceSession(str(exp / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"wavs": wavs.numpy(), "lengths": lens.numpy()})
    assert [o.name for o in sess.get_outputs()][-1] == AGE_KEY
    for got in (ts, torch.from_numpy(onnx_out[-1])):
        assert float((got - ref).abs().max()) < 1e-3  # years (1e-4 relative to ~40)


def test_dataset_gives_points_bins_and_missing_ages(label_space, tmp_path):
    import soundfile as sf

    from recipes.data.pipelines import make_dataset

    rows = [("a", "30", ""), ("b", "", "teen"), ("c", "", "")]  # exact age, a group only, no age
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "wav", "duration", "spk_id", "gender", "age", "age_group"])
        for uid, age, group in rows:
            sf.write(tmp_path / f"{uid}.wav", 0.3 * np.random.default_rng(0).standard_normal(8000), 8000)
            w.writerow([uid, str(tmp_path / f"{uid}.wav"), 1.0, uid, "f", age, group])
    data = make_dataset(str(tmp_path / "m.csv"), label_space, 8000)
    got = {data[i]["id"]: data[i]["age_years"].tolist() for i in range(3)}
    assert got["a"] == [30.0, 30.0] and got["b"] == [12.0, 17.0] and all(math.isnan(x) for x in got["c"])
    assert data[2]["age_sub_idx"].item() == -1  # the group heads mask the same row
