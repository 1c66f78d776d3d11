#!/usr/bin/env python3
"""Train and evaluate a multi-task speaker-profiling model (gender, age-sup, age-sub).

    python train.py hparams/demo.yaml [--key=value ...]
    torchrun --nproc_per_node=2 train.py hparams/demo.yaml [--distributed_backend=gloo]  # DDP

Running the same command again resumes from the last checkpoint. Outputs in
<output_folder>: save/ (checkpoints), train_log.txt, results.json, results.md,
confusion_test.png, inference.yaml (for infer.py), pretrained/ (the SpeechBrain
pretrained folder of the best checkpoint); the folder format: recipes/model_folder.py.
SpeechBrain run options work as usual (--device, --precision=bf16|fp16, --compile, ...).
"""

import logging
import os
import sys

import torch
import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from recipes.config.entry import guarded, load_run, start_output
from recipes.data.datasets import build_datasets, loader_kwargs, pooled_manifest_paths
from recipes.data.manifest import read_rows
from recipes.evaluation.group_errors import append_markdown, run_group_errors
from recipes.evaluation.metrics import add_coverage, write_predictions, write_results
from recipes.init_from import init_from_folder
from recipes.model_folder import export_pretrained, write_recipe_inference_yaml

logger = logging.getLogger(__name__)


def main(argv):
    run = load_run(argv, distributed=True)  # torchrun (DDP): joins the process group
    hparams = run.hparams
    out = start_output(run)  # one run per output folder (torchrun: rank 0)
    run_on_main(hparams["prepare_data"])
    datasets = build_datasets(hparams)
    loaders = loader_kwargs(hparams, datasets)
    resuming = hparams["checkpointer"].find_checkpoint() is not None
    init_from_folder(hparams["init_from"], {k: hparams[k] for k in ("encoder", "heads", "projector") if k in hparams},
                     resuming)  # fine-tuning from another output folder, if init_from is set

    brain = hparams["brain_class"](
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run.run_opts, checkpointer=hparams["checkpointer"])
    # the modules as the brain built them (an MKD student's heads are sized from its teacher)
    run_on_main(write_recipe_inference_yaml, args=[run.hparams_file, run.overrides, out],
                kwargs={"head_input": hparams["heads"].input_size})
    brain.fit(brain.hparams.epoch_counter, datasets["train"], datasets["valid"],
              train_loader_kwargs=loaders["train"], valid_loader_kwargs=loaders["valid"])
    brain.evaluate(datasets["test"], max_key="mean_f1", test_loader_kwargs=loaders["test"])
    # main process only, with SpeechBrain's collectives switched off inside (a barrier or broadcast
    # there would pair with another rank's final barrier and let it exit early), then a barrier
    run_on_main(write_outputs, args=[brain, hparams, out])
    close_distributed(run.lock)


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
    sys.exit(guarded(main, sys.argv[1:]))
