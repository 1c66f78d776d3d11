"""The probing report: Markdown + CSV tables and plots."""

import csv
import json
import os

import numpy as np


def pm(ms, scale=100.0, digits=1):
    m, s = ms
    return f"{scale * m:.{digits}f}±{scale * s:.{digits}f}"


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_report(folder, title, layers, results, sv, meta):
    """results: task -> {"layerwise", "random_init", "neuron"}; sv: sv_analysis output (or None)."""
    os.makedirs(folder, exist_ok=True)
    tasks = list(results)
    md = [f"# {title}", "", meta, "", "## Layer-wise probes (accuracy %, mean±sd over seeds)", ""]
    head = ["layer"] + tasks + (["SV EER %"] if sv else [])
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for name in layers + ["ALL"]:
        row = [name] + [pm(results[t]["layerwise"][name]["accuracy"]) for t in tasks]
        if sv:
            row.append(f"{100 * sv['per_layer'][name]:.1f}")
        rows.append(row)
    extra = [["majority"] + [f"{100 * results[t]['neuron']['majority']:.1f}" for t in tasks] + ([""] if sv else []),
             ["random-init ALL"] + [pm(results[t]["random_init"]["ALL"]["accuracy"]) if results[t].get("random_init")
                                    else "-" for t in tasks]
             + ([f"{100 * sv['random_init_all']:.1f}" if sv.get("random_init_all") is not None else "-"] if sv else []),
             ["selectivity (ALL - shuffled)"] + [pm(results[t]["neuron"]["selectivity"]) for t in tasks] + ([""] if sv else [])]
    for r in rows + extra:
        md.append("| " + " | ".join(r) + " |")
    write_csv(os.path.join(folder, "layerwise.csv"), head, rows + extra)

    md += ["", "## Neuron analysis (paper 001): masking 20% and minimal neuron sets", "",
           "| task | neurons | oracle acc | top 20% | bottom 20% | random 20% | minimal set % | acc top | acc random | time s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    nrows = []
    for t in tasks:
        n = results[t]["neuron"]
        mask = {k: [m[k] for m in n["mask"]] for k in ("top", "bottom", "random")}
        mins = n["minimal"]
        r = [t, n["neurons"], pm(_ms(n["oracle"])), pm(_ms(mask["top"])), pm(_ms(mask["bottom"])),
             pm(_ms(mask["random"])), f"{np.mean([m['percent'] for m in mins]):.0f}",
             pm(_ms([m["acc_top"] for m in mins])), pm(_ms([m["acc_random"] for m in mins])), f"{n['seconds']:.0f}"]
        nrows.append(r)
        md.append("| " + " | ".join(str(x) for x in r) + " |")
    write_csv(os.path.join(folder, "neurons.csv"), ["task", "neurons", "oracle", "top20", "bottom20", "random20",
                                                    "minimal_percent", "acc_top", "acc_random", "seconds"], nrows)

    md += ["", "## Where the minimal neuron sets live (% of the selected neurons per layer, mean over seeds)", "",
           "| layer | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    heat = np.zeros((len(layers), len(tasks)))
    for j, t in enumerate(tasks):
        for i, name in enumerate(layers):
            heat[i, j] = np.mean([d[name]["percent_of_selected"] for d in results[t]["neuron"]["distribution"]])
    for i, name in enumerate(layers):
        md.append(f"| {name} | " + " | ".join(f"{heat[i, j]:.1f}" for j in range(len(tasks))) + " |")
    write_csv(os.path.join(folder, "distribution.csv"), ["layer"] + tasks,
              [[name] + [f"{v:.2f}" for v in heat[i]] for i, name in enumerate(layers)])

    if sv:
        md += ["", f"## Speaker verification with a speaker-ID probe's neuron ranking ({sv['trials']} trials)", "",
               "| top/random N% | EER top % | EER random % |", "|---|---|---|"]
        for pct in sorted({r["percent"] for r in sv["neurons"]}):
            rs = [r for r in sv["neurons"] if r["percent"] == pct]
            md.append(f"| {pct} | {pm(_ms([r['eer_top'] for r in rs]))} | {pm(_ms([r['eer_random'] for r in rs]))} |")
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"results": results, "sv": sv}, f, indent=1, default=float)
    plot(folder, layers, tasks, results, sv, heat)
    return "\n".join(md)


def _ms(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def plot(folder, layers, tasks, results, sv, heat):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    x = np.arange(len(layers) + 1)
    for t in tasks:
        lw = results[t]["layerwise"]
        m = [100 * lw[n]["accuracy"][0] for n in layers + ["ALL"]]
        s = [100 * lw[n]["accuracy"][1] for n in layers + ["ALL"]]
        axes[0].errorbar(x, m, yerr=s, marker="o", label=t, capsize=2)
    if sv:
        axes[0].plot(x, [100 * sv["per_layer"][n] for n in layers + ["ALL"]], "k--s", label="SV EER")
    axes[0].set_xticks(x, layers + ["ALL"], rotation=45, ha="right")
    axes[0].set_ylabel("accuracy % (EER % dashed)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("layer-wise probes")
    im = axes[1].imshow(heat, cmap="viridis", aspect="auto")
    axes[1].set_yticks(range(len(layers)), layers)
    axes[1].set_xticks(range(len(tasks)), tasks, rotation=30)
    axes[1].set_title("% of minimal-set neurons per layer")
    fig.colorbar(im, ax=axes[1])
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "probing.png"), dpi=100)
    plt.close(fig)
