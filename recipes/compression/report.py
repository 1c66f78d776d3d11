"""Size and speed of a model, as reported by paper 002 (Tables VI-VII): parameters and
non-zero parameters, storage size, CPU forward time, per-layer non-zero counts."""

import csv
import io
import os
import platform
import statistics
import time

import torch


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), else what platform knows: for benchmark headers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def count_params(profiler):
    """(parameters, non-zero parameters) of encoder + heads (what inference stores)."""
    params = [p for m in (profiler.encoder, profiler.heads) for p in m.parameters()]
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def dense_file_bytes(profiler):
    """Size of encoder + heads + feature statistics saved densely with torch.save."""
    buf = io.BytesIO()
    torch.save({"encoder": profiler.encoder.state_dict(), "heads": profiler.heads.state_dict(),
                "normalizer": profiler.mean_var_norm._statistics_dict()}, buf)
    return buf.tell()


@torch.inference_mode()
def forward_latency(model, sample_rate, seconds=4.0, batch=1, repeats=3, seed=0):
    """Median wall time (s) of ``model(wavs)`` on ``batch`` random utterances of ``seconds``
    (features + encoder + heads, one warm-up call first), on the current torch threads."""
    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(batch, int(seconds * sample_rate), generator=g)
    model(wavs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(wavs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_layer_table(rows, folder, total_params, total_nonzero, name="pruning_layers"):
    """<folder>/<name>.csv and .md: per pruned layer params / non-zero / compression, and
    the whole model (pruned layers plus the rest: biases, norms)."""
    for r in rows:
        r["compression"] = round(r["params"] / max(r["nonzero"], 1), 2)
    rows = rows + [{"layer": "TOTAL (encoder + heads, all parameters)", "shape": "", "params": total_params,
                    "nonzero": total_nonzero, "compression": round(total_params / max(total_nonzero, 1), 2)}]
    keys = ["layer", "shape", "params", "nonzero", "compression"]
    with open(os.path.join(folder, f"{name}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = ["| layer | shape | parameters | non-zero | compression |", "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['shape']} | {r['params']} | {r['nonzero']} | {r['compression']}x |" for r in rows]
    with open(os.path.join(folder, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
