"""The bias audit report: audit.md (plain-language summary first), audit.png, audit.json."""

import json
import os

import numpy as np

from recipes.evaluation.group_errors import METRICS, gap_sentence, group_markdown
from recipes.probing.report import pm

GROUPING = "gender x age group"


def most_leaking(leak, task):
    """(layer, accuracy) of the named layer (not ALL) that decodes ``task`` best."""
    lw = {n: v for n, v in leak[task]["layerwise"].items() if n != "ALL"}
    name = max(lw, key=lambda n: lw[n]["accuracy"][0])
    return name, lw[name]["accuracy"][0]


def summary_lines(groups, leak, speaker, removal, sensitive="gender"):
    """The plain-language summary: largest error gap, most leaking layer, gender removal."""
    lines = []
    gaps = groups["gaps"].get(GROUPING, {})
    acc = {k: v for k, v in gaps.items() if k != "age_mae"}
    if acc:
        k = max(acc, key=lambda m: acc[m]["gap"])
        g = acc[k]
        lines.append(f"- Largest error gap between groups ({GROUPING}): {gap_sentence(k, g)}; "
                     f"the model fails most often for **{g['worst']}**.")
    else:
        lines.append("- Largest error gap: fewer than two groups with labelled test utterances.")
    if "age_mae" in gaps:
        lines.append(f"- Age in years: {gap_sentence('age_mae', gaps['age_mae'])}.")
    for name in [n for n in groups["gaps"] if n != GROUPING]:
        if groups["gaps"][name]:
            k = max(groups["gaps"][name], key=lambda m: groups["gaps"][name][m]["gap"] if m != "age_mae" else -1)
            lines.append(f"- By {name}: {gap_sentence(k, groups['gaps'][name][k])}.")
    for task in ([sensitive] if sensitive in leak else []) + [t for t in leak if t != sensitive]:
        layer, a = most_leaking(leak, task)
        lines.append(f"- Most leaking layer for {task}: **{layer}** decodes it at {100 * a:.1f}% "
                     f"(majority {100 * leak[task]['majority']:.1f}%, selectivity "
                     f"{100 * leak[task]['selectivity'][layer]:+.1f} points).")
    if speaker:
        pl = {n: v for n, v in speaker["per_layer"].items() if n != "ALL"}
        best = min(pl, key=pl.get)
        lines.append(f"- Speaker identity: lowest verification EER at **{best}** ({100 * pl[best]:.1f}%).")
    if removal:
        s = removal["summary"]
        parts = []
        for task, v in s["tasks"].items():
            if task in ("gender", "speaker_eer"):
                continue
            parts.append(f"{task} {100 * v['all'][0]:.1f}% -> {100 * v['removed'][0]:.1f}% "
                         f"(random neurons: {100 * v['random_removed'][0]:.1f}%)")
        g = s["tasks"]["gender"]
        lines.append(f"- Removing the {neuron_count(s)} gender neurons of {s['layer']} "
                     f"(of {s['n_neurons']}) leaves gender decodable at {100 * g['removed'][0]:.1f}% "
                     f"(from {100 * g['all'][0]:.1f}%); other tasks: " + ("; ".join(parts) or "none") + ".")
    return lines


def leakage_markdown(leak, speaker):
    tasks = list(leak)
    layers = [n for n in next(iter(leak.values()))["layerwise"]] if leak else list(speaker["per_layer"])
    head = ["layer"] + [f"{t} acc %" for t in tasks] + [f"{t} selectivity" for t in tasks] + \
        (["speaker EER %"] if speaker else [])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in layers:
        row = [n] + [pm(leak[t]["layerwise"][n]["accuracy"]) for t in tasks] + \
            [f"{100 * leak[t]['selectivity'][n]:+.1f}" for t in tasks]
        md.append("| " + " | ".join(row + ([f"{100 * speaker['per_layer'][n]:.1f}"] if speaker else [])) + " |")
    md.append("| majority | " + " | ".join(f"{100 * leak[t]['majority']:.1f}" for t in tasks) + " |" +
              " |" * len(tasks) + (" |" if speaker else ""))
    ri = [pm(leak[t]["random_init"]["accuracy"]) if leak[t].get("random_init") else "-" for t in tasks]
    ri_sv = [f"{100 * speaker['random_init_all']:.1f}" if speaker and "random_init_all" in speaker else "-"]
    md.append("| random-init ALL | " + " | ".join(ri) + " |" + " |" * len(tasks) +
              (f" {ri_sv[0]} |" if speaker else ""))
    return md


def removal_markdown(removal):
    s = removal["summary"]
    md = [f"Layer `{s['layer']}`: {neuron_count(s)} of {s['n_neurons']} neurons carry gender "
          f"(the smallest top-ranked set within delta of the gender probe's {100 * s['oracle'][0]:.1f}%). "
          f"Masked: zeroed with the task's probe kept; removed: the probe retrained without them.",
          "", "| task | all neurons | gender masked | gender removed | random masked | random removed |",
          "|---|---|---|---|---|---|"]
    for task, v in s["tasks"].items():
        if task == "speaker_eer":
            md.append(f"| speaker (EER %) | {100 * v['all'][0]:.1f} | {100 * v['masked'][0]:.1f} | - | "
                      f"{100 * v['random_masked'][0]:.1f} | - |")
            continue
        md.append(f"| {task} | " + " | ".join(pm(v[k]) for k in
                                             ("all", "masked", "removed", "random_masked", "random_removed")) + " |")
    seed0 = s["neurons_seed0"]
    md += ["", f"Gender neurons of seed 0 ({len(seed0)}): {seed0[:64]}" + (" ..." if len(seed0) > 64 else "")]
    return md


def neuron_count(s):
    """How many neurons carry gender: one seed's count, or the mean and spread over the seeds
    (the list printed is seed 0's, which may differ from the mean)."""
    mean, sd = s["n_gender_neurons"][:2]
    return f"{mean:.0f}" if sd == 0 else f"{mean:.1f}±{sd:.1f} (mean over seeds)"


def write_audit(folder, title, meta, groups, leak, speaker, removal, sensitive="gender"):
    """audit.md, audit.json, audit.png; returns the Markdown."""
    os.makedirs(folder, exist_ok=True)
    md = [f"# {title}", "", "## Summary", ""] + summary_lines(groups, leak, speaker, removal, sensitive)
    md += ["", meta, "", group_markdown(groups, "1. Per-group errors on the test manifest"), "",
           "## 2. Leakage per layer (linear probes, accuracy %, mean±sd over seeds)", "",
           "Selectivity: accuracy minus that of a probe trained on shuffled labels (points). "
           "Speaker identity: verification EER on the test speakers (lower = more speaker information).", ""]
    md += leakage_markdown(leak, speaker)
    if removal:
        md += ["", "## 3. Gender neurons (Algorithm 1) and what masking them costs the other tasks", ""]
        md += removal_markdown(removal)
    text = "\n".join(md) + "\n"
    with open(os.path.join(folder, "audit.md"), "w") as f:
        f.write(text)
    with open(os.path.join(folder, "audit.json"), "w") as f:
        json.dump({"title": title, "summary": summary_lines(groups, leak, speaker, removal, sensitive),
                   "groups": groups, "leakage": leak, "speaker": speaker, "gender_removal": removal},
                  f, indent=1, default=float)
    plot(os.path.join(folder, "audit.png"), groups, leak, speaker, removal)
    return text


def plot(path, groups, leak, speaker, removal):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    rows = groups["tables"].get(GROUPING, [])
    keys = [(k, lab) for k, lab, s in METRICS if s == 100.0 and any(r.get(k) is not None for r in rows)]
    x = np.arange(len(rows))
    for j, (k, lab) in enumerate(keys):
        axes[0].bar(x + (j - len(keys) / 2 + 0.5) * 0.8 / max(len(keys), 1),
                    [100 * (r[k] or 0) for r in rows], 0.8 / max(len(keys), 1), label=lab)
    axes[0].set_xticks(x, [f"{r['group']}\n(n={r['n']})" for r in rows], rotation=45, ha="right", fontsize=8)
    axes[0].set_title(f"errors by {GROUPING}")
    axes[0].legend(fontsize=8)
    layers = list(next(iter(leak.values()))["layerwise"]) if leak else []
    xl = np.arange(len(layers))
    for t, v in leak.items():
        line = axes[1].plot(xl, [100 * v["layerwise"][n]["accuracy"][0] for n in layers], marker="o", label=t)
        axes[1].axhline(100 * v["majority"], color=line[0].get_color(), ls=":", lw=1)
    if speaker:
        axes[1].plot(xl, [100 * speaker["per_layer"][n] for n in layers], "k--s", label="speaker EER")
    axes[1].set_xticks(xl, layers, rotation=45, ha="right")
    axes[1].set_title("leakage per layer (dotted: majority)")
    axes[1].set_ylabel("accuracy % (EER % dashed)")
    axes[1].legend(fontsize=8)
    if removal:
        tasks = [t for t in removal["summary"]["tasks"] if t != "speaker_eer"]
        cols = ("all", "masked", "removed", "random_removed")
        xt = np.arange(len(tasks))
        for j, c in enumerate(cols):
            axes[2].bar(xt + (j - 1.5) * 0.2, [100 * removal["summary"]["tasks"][t][c][0] for t in tasks], 0.2,
                        label=c.replace("_", " "))
        axes[2].set_xticks(xt, tasks)
        axes[2].set_title(f"gender neurons of {removal['summary']['layer']} masked / removed")
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
