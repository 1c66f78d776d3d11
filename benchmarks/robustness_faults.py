"""The "kind of input or fault -> what happens" table of benchmarks/results/robustness.md, measured.

Every case runs the real command (infer.py, local/prepare_csv.py, train.py) in a temporary
folder on the demo corpus and a 1-epoch demo model, and records the exit code and the
message a user sees (the JSON record's error, or the last error / warning line). Run by
``python benchmarks/robustness.py faults``.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

from benchmarks.common import ROOT, demo_train_command

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(cmd, timeout=600):
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    return res.returncode, res.stdout, res.stderr


def last_message(text, code=None, keys=("resum", "refus", "warning", "dropped", "skipping")):
    """What a user sees of a command's output, shortened: when it failed, its last error line
    (with the line after it when it ends with ':'); else its last resume / warning / dropped
    line, or "completed"."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]

    def last(pred):
        for i in range(len(lines) - 1, -1, -1):
            if pred(lines[i]):
                return lines[i] + (" " + lines[i + 1] if lines[i].endswith(":") and i + 1 < len(lines) else "")
        return None

    if code:
        line = last(lambda ln: ln.lower().startswith("error") or "Error:" in ln) or (lines or [""])[-1]
    else:
        line = last(lambda ln: any(k in ln.lower() for k in keys))
        line = line or "completed"
    return line if len(line) <= 260 else line[:257] + "..."


def short(text, work):
    return text.replace(work + os.sep, "").replace(work, "<tmp>").replace("|", "/")


def audio_inputs(work, demo_wav):
    """name -> (path, what it is) of the infer.py inputs."""
    speech, sr = sf.read(demo_wav, dtype="float32")
    speech = speech.mean(axis=1) if speech.ndim == 2 else speech
    d = os.path.join(work, "in")
    os.makedirs(d)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    with open(p("corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(2000))
    open(p("empty.wav"), "wb").close()
    sf.write(p("header_only.wav"), np.zeros(0, dtype=np.float32), sr)
    sf.write(p("short_0.2s.wav"), speech[: int(0.2 * sr)], sr)
    nan = speech.copy()
    nan[len(nan) // 3] = np.nan
    sf.write(p("nan.wav"), nan, sr, subtype="FLOAT")
    sf.write(p("stereo_cancel.wav"), np.stack([speech, -speech], axis=1), sr)
    sf.write(p("silence_3s.wav"), np.zeros(3 * sr, dtype=np.float32), sr)
    rng = np.random.default_rng(0)
    sf.write(p("noise_-80dBFS.wav"), (rng.standard_normal(3 * sr) * 1e-4).astype(np.float32), sr)
    sf.write(p("speech_+2s_silence.wav"), np.concatenate([speech, np.zeros(2 * sr, np.float32)]), sr)
    sf.write(p("speech.wav"), speech, sr)
    raw = open(p("speech.wav"), "rb").read()
    with open(p("truncated.wav"), "wb") as f:
        f.write(raw[: len(raw) // 2])
    return {
        "corrupt file (random bytes)": p("corrupt.wav"), "empty file (0 bytes)": p("empty.wav"),
        "WAV with no samples": p("header_only.wav"), "too short (the first 0.2 s of a clip)": p("short_0.2s.wav"),
        "truncated WAV (half the bytes)": p("truncated.wav"), "NaN sample": p("nan.wav"),
        "stereo, L = -R": p("stereo_cancel.wav"), "silence only (3 s of zeros)": p("silence_3s.wav"),
        "-80 dBFS noise only": p("noise_-80dBFS.wav"), "speech": p("speech.wav"),
        "the same speech + 2 s of silence": p("speech_+2s_silence.wav"),
        "missing file": p("missing.wav"), "a directory": d,
    }


def infer_rows(model, inputs, work):
    paths = list(inputs.values())
    code, out, err = run([PY, "infer.py", model, *paths, "--json"])
    recs = {}
    for line in out.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        recs[r["file"]] = r
    rows = []
    for kind, path in inputs.items():
        r = recs.get(path)
        if r is None:
            seen = "no JSON record; stderr: " + last_message("\n".join(ln for ln in err.splitlines() if path in ln), 1)
        elif "error" in r:
            seen = f'error record: "{r["error"]}"'
        elif r.get("silent"):
            seen = f'silent: labels null, speech_seconds {r.get("speech_seconds")}'
        else:
            seen = (f'labels: gender {r["gender"]["label"]} {r["gender"]["prob"]:.3f}, age_sub '
                    f'{r["age_sub"]["label"]}, speech {r.get("speech_seconds")} s, '
                    f'{r["n_speech_windows"]}/{r["n_windows"]} windows')
        rows.append((f"infer.py: {kind}", "python infer.py <model> <file> --json", short(seen, work)))
    rows.append(("infer.py: all of the above in one call", "python infer.py <model> <files...> --json",
                 f"exit code {code} (1: some input failed); every input has a JSON record: "
                 f"{all(p in recs for p in paths)}"))
    return rows


def csv_cases(work, corpus_csv):
    """local/prepare_csv.py on edited copies of the demo corpus.csv."""
    with open(corpus_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    folder = os.path.dirname(corpus_csv)
    for r in rows:
        r["path"] = os.path.join(folder, r["path"]) if not os.path.isabs(r["path"]) else r["path"]
    fields = list(rows[0])

    def write(name, rows_, bom=False):
        path = os.path.join(work, name)
        with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows_)
        return path

    cases = {"CSV saved with a UTF-8 BOM": (write("bom.csv", rows, bom=True), [])}
    cases["NaN age in the CSV"] = (write("nan_age.csv", [{**rows[0], "age": "nan"}] + rows[1:]), [])
    cases["unknown gender 'x' in the CSV"] = (write("bad_gender.csv", [{**rows[0], "gender": "x"}] + rows[1:]),
                                            ["--labels", "hparams/labels/demo.yaml"])
    missing = [{**rows[0], "path": os.path.join(work, "gone.wav")}] + rows[1:]
    cases["missing audio file"] = (write("missing.csv", missing), [])
    cases["missing audio file, --skip-bad"] = (write("missing2.csv", missing), ["--skip-bad"])
    idk = "id"  # an id column (the demo corpus.csv has none: its IDs are the file names)
    if idk not in fields:
        fields.append(idk)
        for r in rows:
            r[idk] = os.path.splitext(os.path.basename(r["path"]))[0]
    dup = rows + [{**rows[0], "speaker": "other_speaker", idk: "another_id"}]
    cases["the same audio file twice (another ID and speaker)"] = (write("dup.csv", dup), [])
    sr = sf.info(rows[0]["path"]).samplerate
    sf.write(os.path.join(work, "short.wav"), 0.1 * np.random.default_rng(0).standard_normal(sr // 5), sr)
    with open(os.path.join(work, "corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(2000))
    cases["a 0.2 s file"] = (write("short.csv", rows + [{**rows[0], "path": os.path.join(work, "short.wav"),
                                                          idk: "short"}]), [])
    cases["a corrupt file, --skip-bad"] = (write("corrupt.csv", rows + [
        {**rows[0], "path": os.path.join(work, "corrupt.wav"), idk: "corrupt"}]), ["--skip-bad"])
    out = []
    for kind, (path, extra) in cases.items():
        save = os.path.join(work, "prep_" + os.path.basename(path)[:-4])
        code, so, se = run([PY, "local/prepare_csv.py", path, save, *extra])
        seen = f"exit {code}: " + last_message(se + so, code)
        dropped = os.path.join(save, "dropped.csv")
        if code == 0 and os.path.isfile(dropped):
            with open(dropped) as f:
                listed = list(csv.DictReader(f))
            seen += f" (dropped.csv: {len(listed)} row(s)" + (f", e.g. {dict(listed[-1])}" if listed else "") + ")"
        out.append((f"prepare_csv.py: {kind}", f"python local/prepare_csv.py <csv> <out> {' '.join(extra)}".strip(),
                    short(seen, work)))
    return out


def training_cases(work, data, model):
    out = []
    # the same utterance ID in train and test (another speaker): prepared manifests edited
    man = os.path.join(work, "leak_manifests")
    shutil.copytree(os.path.join(model, "manifests"), man)
    with open(os.path.join(man, "train.csv")) as f:
        first = list(csv.DictReader(f))[0]
    with open(os.path.join(man, "test.csv"), "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(first)).writerow({**first, "spk_id": "someone_else"})
    code, so, se = run(demo_train_command(os.path.join(work, "leak"), data, f"--manifest_folder={man}",
                                          "--number_of_epochs=1"))
    out.append(("train.py: the same utterance ID in train and test", "python train.py hparams/demo.yaml "
                "--manifest_folder=<edited manifests> ...", short(f"exit {code}: " + last_message(se + so, code), work)))
    # two runs on one output folder, started together
    both = os.path.join(work, "both")
    cmd = demo_train_command(both, data, f"--manifest_folder={os.path.join(model, 'manifests')}",
                             "--number_of_epochs=2")
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)]
    time.sleep(3)
    procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=ENV))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    seen = "; ".join(f"run {i + 1}: exit {p.returncode}, {last_message(o, p.returncode, ('refus',))}"
                     for i, (p, o) in enumerate(zip(procs, outs)))
    out.append(("train.py: two runs on one output folder", "the same train.py command twice at once",
                short(seen, work)))
    # kill -9 after the first checkpoint, then the same command; compared with an uninterrupted twin
    killed, twin = os.path.join(work, "killed"), os.path.join(work, "twin")
    man_arg = f"--manifest_folder={os.path.join(model, 'manifests')}"
    run(demo_train_command(twin, data, man_arg, "--number_of_epochs=3"))
    proc = subprocess.Popen(demo_train_command(killed, data, man_arg, "--number_of_epochs=3"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    save, t0 = os.path.join(killed, "save"), time.time()
    while proc.poll() is None and time.time() - t0 < 600:
        if os.path.isdir(save) and any(n.startswith("CKPT+") for n in os.listdir(save)):
            time.sleep(1.0)  # into epoch 2
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    code, so, se = run(demo_train_command(killed, data, man_arg, "--number_of_epochs=3"))
    same = None
    try:
        with open(os.path.join(killed, "results.json")) as a, open(os.path.join(twin, "results.json")) as b:
            same = json.load(a).get("test") == json.load(b).get("test")
    except (OSError, ValueError):
        pass
    out.append(("train.py: kill -9 in epoch 2, then the same command", "the same train.py command again",
                short(f"killed (exit {proc.returncode}); rerun exit {code}: "
                      f"{last_message(se + so, code, ('checkpoint', 'resum'))}; "
                      f"test metrics equal the uninterrupted twin's: {same}", work)))
    return out


def faults_markdown():
    t0 = time.time()
    with tempfile.TemporaryDirectory() as work:
        model, data = os.path.join(work, "model"), os.path.join(work, "demo")
        code, so, se = run(demo_train_command(model, data, "--number_of_epochs=1"))
        if code:
            raise RuntimeError("demo training failed:\n" + (so + se)[-3000:])
        wav = os.path.join(data, "wav", sorted(os.listdir(os.path.join(data, "wav")))[0])
        rows = infer_rows(model, audio_inputs(work, wav), work)
        rows += csv_cases(work, os.path.join(data, "corpus.csv"))
        rows += training_cases(work, data, model)
    lines = ["## Bad inputs and faults: what happens", "",
             "Measured by `python benchmarks/robustness.py faults` (each case runs the real command "
             f"on the demo corpus and a 1-epoch demo model; {time.time() - t0:.0f} s). <tmp>: the "
             "temporary folder; <model>: the demo model's output folder.", "",
             "| kind of input or fault | command | what happens |", "|---|---|---|"]
    lines += [f"| {k} | `{c}` | {s} |" for k, c, s in rows]
    return "\n".join(lines) + "\n"
