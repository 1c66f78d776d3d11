#!/usr/bin/env python3
"""Train and evaluate a multi-task speaker-profiling model (gender, age-sup, age-sub).

    python train.py hparams/demo.yaml [--key=value ...]
    torchrun --nproc_per_node=2 train.py hparams/demo.yaml [--distributed_backend=gloo]  # DDP

Running the same command again resumes from the last checkpoint. Outputs in
<output_folder>: save/ (checkpoints), train_log.txt, results.json, results.md,
confusion_test.png, inference.yaml (for infer.py), pretrained/ (the SpeechBrain
pretrained folder of the best checkpoint: recipes/inference/interface.py).
SpeechBrain run options work as usual (--device, --precision=bf16|fp16, --compile, ...).
"""

import logging
import os
import sys

import torch
import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from recipes.evaluation.metrics import add_coverage, write_predictions, write_results
from recipes.data.manifest import ManifestError, read_rows
from recipes.data.datasets import build_datasets, loader_kwargs, pooled_manifest_paths
from recipes.evaluation.group_errors import append_markdown, run_group_errors
from recipes.model_folder import export_pretrained, init_from_folder, write_recipe_inference_yaml
from recipes.labels import LabelError
from recipes.config.options import OptionError, load_checked
from recipes.config.recipe_yaml import save_hyperparams
from recipes.config.run_lock import RunLockError, lock_output_folder

logger = logging.getLogger(__name__)


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # torchrun (DDP); a no-op otherwise
    # the recipe with the blocks it extends (recipes/config/recipe_yaml.py); unknown keys are errors
    hparams = load_checked(hparams_file, overrides)
    lock = lock_output_folder(hparams["output_folder"])  # one run per output folder (torchrun: rank 0)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"], overrides=overrides)
    run_on_main(save_hyperparams, args=[hparams_file, overrides, hparams["output_folder"]])
    out = hparams["output_folder"]
    run_on_main(write_recipe_inference_yaml, args=[hparams_file, overrides, out],
                kwargs={"head_input": hparams["head_input"]})
    run_on_main(hparams["prepare_data"])
    datasets = build_datasets(hparams)
    loaders = loader_kwargs(hparams, datasets)
    resuming = hparams["checkpointer"].find_checkpoint() is not None
    init_from_folder(hparams["init_from"], {k: hparams[k] for k in ("encoder", "heads", "projector") if k in hparams},
                     resuming)  # fine-tuning from another output folder, if init_from is set

    brain = hparams["brain_class"](
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.fit(brain.hparams.epoch_counter, datasets["train"], datasets["valid"],
              train_loader_kwargs=loaders["train"], valid_loader_kwargs=loaders["valid"])
    brain.evaluate(datasets["test"], max_key="mean_f1", test_loader_kwargs=loaders["test"])
    # main process only, with SpeechBrain's collectives switched off inside (a barrier or broadcast
    # there would pair with another rank's final barrier and let it exit early), then a barrier
    run_on_main(write_outputs, args=[brain, hparams, out])
    close_distributed(lock)


def write_outputs(brain, hparams, out):
    """results.json / results.md (with rows not scored and per-group errors), the predictions
    and the pretrained/ folder of a finished run."""
    test_rows = [row for path in pooled_manifest_paths(hparams)["test"]  # every pooled corpus
                 for _, row in read_rows(path, hparams["missing_labels"])]
    add_coverage(brain.test_results, [r["ID"] for r in test_rows], brain.test_collector.ids)  # rows not scored
    write_predictions(os.path.join(out, "predictions_test.csv"), brain.test_collector, hparams["label_space"])
    groups = run_group_errors(out, test_rows, hparams["label_space"], hparams["group_min_count"])
    brain.test_results["groups"] = groups  # per gender x age group (language, channel) errors and gaps
    table = write_results(out, {"test": brain.test_results}, hparams["label_space"])
    table += "\n\n" + append_markdown(out, groups)
    print(f"\nResults ({out}/results.json):\n{table}")
    try:
        export_pretrained(out)  # <out>/pretrained: speechbrain.inference / foreign_class
    except FileNotFoundError as err:
        logger.warning("no pretrained/ folder written: %s", err)


def close_distributed(lock=None):
    """torchrun: every rank waits for the main one (results, pretrained/) and then leaves the
    process group. A rank whose interpreter tears down while gloo's threads are still alive can
    abort (SIGABRT, "terminate called without an active exception", seen under load), so a
    torchrun rank releases its lock, flushes its output and ends here without that teardown."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    sb.utils.distributed.ddp_barrier()
    torch.distributed.destroy_process_group()
    if lock is not None:
        lock.release()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ManifestError, LabelError, RunLockError, OptionError) as err:  # bad input: a clear message, no traceback
        sys.exit(f"error: {err}")
