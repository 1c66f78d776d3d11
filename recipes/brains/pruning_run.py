"""The pruning run of prune.py (paper 002, Sections II-C, IV-C; structured: whole channels):
the model of a trained folder pruned round by round with retraining, then tested, exported in
compressed sparse form and timed dense vs sparse. Outputs: see prune.py."""

import json
import logging
import os

import speechbrain as sb
import torch

from recipes.brains.logit_kd import LogitKDBrain
from recipes.brains.pruning import TASK_KEYS, PruningBrain
from recipes.brains.structured_pruning import StructuredPruningBrain, structured_pruner, write_pruned_inference_yaml
from recipes.compression.pruning import MagnitudePruner
from recipes.compression.report import count_params, dense_file_bytes, forward_latency, write_layer_table
from recipes.compression.sparse import load_sparse_profiler, save_sparse, to_sparse_compute
from recipes.config.entry import start_output
from recipes.data.datasets import build_datasets
from recipes.evaluation.metrics import mean_f1, write_predictions, write_results
from recipes.inference.model import ProfilerModel
from recipes.model_folder import copy_inference_yaml
from recipes.labels import TASKS
from recipes.losses import LogitKDObjective

logger = logging.getLogger(__name__)
# the checkpoint file each method's pruner writes (recipes/compression/pruning.py, structured.py)
METHOD_FILES = {"magnitude": "pruning_masks.ckpt", "structured": "structure.ckpt"}


def check_method(output_folder, method):
    """Refuse to resume an output folder whose checkpoints another pruning method wrote."""
    from speechbrain.utils.checkpoints import Checkpointer

    save = os.path.join(str(output_folder), "save")
    ckpt = Checkpointer(save).find_checkpoint() if os.path.isdir(save) else None
    if ckpt is None:
        return
    found = [m for m, name in METHOD_FILES.items() if os.path.isfile(os.path.join(ckpt.path, name))]
    if found and method not in found:
        raise ValueError(f"{output_folder} holds a {found[0]} pruning run; prune_method {method} needs another "
                         "folder: pass --output_folder=<new folder> (or remove that one)")


def load_model(hparams):
    folder = hparams.get("model_folder")
    if not folder:
        raise FileNotFoundError("no model to prune: pass --model_folder=<a train.py output folder>")
    model = ProfilerModel.from_folder(folder)  # names the folder when it has no checkpoint
    if model.teacher is not None:
        raise ValueError(f"{folder}: its heads read [student; teacher] embeddings (MKD concat_teacher); "
                         "prune a model whose heads read its own encoder")
    model.mean_var_norm.update_until_epoch = 0  # keep the trained feature statistics
    # the label space and sample rate are the model's; the objective is built over them
    hparams["label_space"], hparams["sample_rate"] = model.label_space, model.sample_rate
    task = hparams["objective"](label_space=model.label_space)
    if hparams["lam"] > 0 and not hparams.get("teacher_folder"):
        raise ValueError(f"lam {hparams['lam']} asks for logit KD during retraining: pass --teacher_folder=<a train.py "
                         "output folder over the same classes> (or --lam=0)")
    hparams["objective"] = LogitKDObjective(task, hparams["temperature"], hparams["lam"])  # lam 0: the task loss alone
    return model


def with_logit_kd(brain_class, hparams):
    """``brain_class`` whose retraining distils ``teacher_folder``'s softened posteriors (paper
    002, Eq. 4) when lam > 0: LogitKDBrain's teacher and soft targets come first in the MRO."""
    if hparams["lam"] == 0:
        return brain_class
    return type(f"LogitKD{brain_class.__name__}", (LogitKDBrain, brain_class), {})


def reference_stats(brain, datasets, hparams):
    """Validation stats of the unpruned model, measured once (<output>/pruning_reference.json)."""
    path = os.path.join(hparams["output_folder"], "pruning_reference.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    if hparams["checkpointer"].find_checkpoint() is not None:
        raise FileNotFoundError(f"{path} is missing but {hparams['save_folder']} has checkpoints: "
                                "remove the output folder to start the pruning again")
    brain.evaluate(datasets["valid"], test_loader_kwargs=dict(hparams["eval_dataloader_opts"]))  # a copy: evaluate() edits it
    res = brain.test_results
    ref = {"mean_f1": mean_f1(res), **{f"{t}_f1": res[t]["f1"] for t in TASKS}}
    with open(path + ".tmp", "w") as f:
        json.dump(ref, f, indent=2)
    os.replace(path + ".tmp", path)
    return ref


def export(model, pruner, hparams, brain):
    """Test results, sparse file, per-layer table, sizes, dense vs sparse CPU forward time,
    summary; prints the results and the report."""
    out = hparams["output_folder"]
    write_predictions(os.path.join(out, "predictions_test.csv"), brain.test_collector, hparams["label_space"])
    print(f"\nResults ({out}/results.json):\n" + write_results(out, {"test": brain.test_results}, hparams["label_space"]))
    model.eval()
    sparse_bytes = save_sparse(os.path.join(out, "pruned_model.pt"), model.encoder, model.heads, model.mean_var_norm)
    params, nonzero = count_params(model)
    write_layer_table(pruner.layer_rows(), out, params, nonzero)
    reloaded = load_sparse_profiler(out)
    sparse_model, n_sparse = to_sparse_compute(model, hparams["sparse_min_sparsity"])
    wav = 0.1 * torch.randn(2, int(hparams["latency_seconds"] * model.sample_rate), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_probs = model(wav)[0]
        diff_file = max(float((reloaded(wav)[0][t] - ref_probs[t]).abs().max()) for t in ref_probs)
        diff_sparse = max(float((sparse_model(wav)[0][t] - ref_probs[t]).abs().max()) for t in ref_probs)
    latency = {kind: {str(b): forward_latency(m, model.sample_rate, hparams["latency_seconds"], b,
                                              hparams["latency_repeats"])
                      for b in hparams["latency_batches"]}
               for kind, m in (("dense", model), ("sparse", sparse_model))}
    final = hparams["checkpointer"].find_checkpoint(max_key="good_round").meta
    res = brain.test_results
    summary = {
        "model_folder": os.path.abspath(hparams["model_folder"]), "reference_valid": hparams["reference"],
        "final_round": final["good_round"], "stopped_at_round": final.get("stopped_at_round"),
        "final_valid_mean_f1": final["mean_f1"], "sparsity_pruned_layers": pruner.sparsity(),
        "method": hparams["prune_method"],
        "params": params, "nonzero_params": nonzero, "compression": params / max(nonzero, 1),
        "dense_file_bytes": dense_file_bytes(model), "sparse_file_bytes": sparse_bytes,
        "sparse_layers": n_sparse, "max_abs_diff_reloaded": diff_file, "max_abs_diff_sparse_compute": diff_sparse,
        "latency_s": latency, "latency_seconds_of_audio": hparams["latency_seconds"], "torch_threads": torch.get_num_threads(),
        "test": {f"{t}_f1": res[t]["f1"] for t in TASKS},
    }
    with open(os.path.join(out, "prune_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(write_report(summary, out))
    return summary


def write_report(s, out):
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    lat = s["latency_s"]
    lines = [f"# Pruning of {s['model_folder']}", "",
             f"- last good round: {s['final_round']} ("
             + (f"stopped at round {s['stopped_at_round']}" if s["stopped_at_round"] is not None else "all rounds run")
             + "); "
             + (f"{100 * s['sparsity_pruned_layers']:.1f}% of the pruned layers' weights are zero"
                if s.get("method") != "structured" else  # whole channels removed: all parameters non-zero
                f"channels removed: {100 * s['sparsity_pruned_layers']:.1f}% fewer encoder parameters, a dense model"),
             f"- parameters {s['params']}, non-zero {s['nonzero_params']} ({s['compression']:.2f}x fewer)",
             f"- file: dense {mb(s['dense_file_bytes'])}, compressed sparse {mb(s['sparse_file_bytes'])}",
             f"- valid mean F1: unpruned {s['reference_valid']['mean_f1']:.4f}, pruned {s['final_valid_mean_f1']:.4f}",
             "- test F1: " + ", ".join(f"{k} {v:.4f}" for k, v in s["test"].items()),
             f"- CPU forward time ({s['latency_seconds_of_audio']} s utterances, {s['torch_threads']} threads, "
             f"median), dense vs sparse ({s['sparse_layers']} CSR layers): "
             + ", ".join(f"batch {b}: {1e3 * lat['dense'][b]:.1f} ms vs {1e3 * lat['sparse'][b]:.1f} ms" for b in lat["dense"]),
             "", "Per layer: pruning_layers.md; per round: pruning_rounds.csv."]
    with open(os.path.join(out, "pruning_report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def run_pruning(run):
    """prune.py: the model of ``model_folder`` pruned round by round with retraining, then
    tested, exported in sparse form and timed (``run``: recipes.config.entry.Run)."""
    hparams = run.hparams
    model = load_model(hparams)  # before anything is written: names a missing or wrong folder
    check_method(hparams["output_folder"], hparams["prune_method"])
    out = start_output(run)
    copy_inference_yaml(hparams["model_folder"], out)
    datasets = build_datasets(hparams)
    structured = hparams["prune_method"] == "structured"  # whole channels: a smaller dense encoder
    if structured:
        pruner, brain_class = structured_pruner(model, hparams), StructuredPruningBrain
        first, last = {"structure": pruner}, {}  # the pruned shapes are restored before the weights
    else:
        pruner = MagnitudePruner({"encoder": model.encoder, "heads": model.heads}, include=hparams["prune_include"],
                                 exclude=hparams["prune_exclude"], min_dim=hparams["prune_min_dim"])
        brain_class, first, last = PruningBrain, {}, {"pruning_masks": pruner}
    hparams["checkpointer"].add_recoverables({**first, "encoder": model.encoder, "heads": model.heads,
                                              "normalizer": model.mean_var_norm, **last})
    modules = {"compute_features": model.compute_features, "mean_var_norm": model.mean_var_norm,
               "encoder": model.encoder, "heads": model.heads}
    brain_class = with_logit_kd(brain_class, hparams)
    brain = brain_class(modules=modules, opt_class=hparams["opt_class"], hparams=dict(hparams, pruner=pruner),
                        run_opts=run.run_opts, checkpointer=hparams["checkpointer"])
    brain.hparams.reference = hparams["reference"] = reference_stats(brain, datasets, hparams)
    logger.info("unpruned model, valid: %s", {k: round(v, 4) for k, v in hparams["reference"].items() if k in TASK_KEYS})
    brain.fit(brain.hparams.epoch_counter, datasets["train"], datasets["valid"],
              train_loader_kwargs=hparams["train_dataloader_opts"], valid_loader_kwargs=hparams["eval_dataloader_opts"])
    brain.evaluate(datasets["test"], max_key="good_round", test_loader_kwargs=hparams["eval_dataloader_opts"])
    if sb.utils.distributed.if_main_process():
        if structured:  # the folder's encoder at the pruned widths (infer.py, export.py)
            write_pruned_inference_yaml(hparams["model_folder"], out, pruner)
        return export(model, pruner, hparams, brain)
