"""A Checkpointer that never leaves a half-written checkpoint as the latest one.

SpeechBrain's Checkpointer writes ``CKPT.yaml`` (which marks a directory as a valid
checkpoint) before the parameter files, so an interruption during a save leaves a
broken "latest" checkpoint. Here every checkpoint is written into a staging folder
and moved into place with one atomic rename once all its files are on disk.

``RandomState`` (a recoverable the training brain adds) makes a resumed run repeat the
uninterrupted one exactly.
"""

import hashlib
import json
import logging
import os
import pathlib
import random
import shutil

import numpy as np
import torch
from speechbrain.utils.checkpoints import (CKPT_PREFIX, Checkpoint, Checkpointer, mark_as_loader,
                                           mark_as_saver, register_checkpoint_hooks)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)


class AtomicCheckpointer(Checkpointer):
    """Drop-in replacement for ``speechbrain.utils.checkpoints.Checkpointer``."""

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=20):
        final_dir = self.checkpoints_dir
        staging = final_dir / ".staging"
        if if_main_process():
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True, exist_ok=True)
            if name is None:  # a time stamp not yet taken in the final folder: two saves in one
                name = self._new_checkpoint_dirpath().name[len(CKPT_PREFIX) + 1:]  # second must not collide
        self.checkpoints_dir = staging
        try:
            # SpeechBrain would log the staging path, which disappears: logged below, where it lands
            ckpt = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name,
                                           verbosity=logging.NOTSET)
        finally:
            self.checkpoints_dir = final_dir
        if ckpt is not None:  # main process: move it into place
            target = final_dir / ckpt.path.name
            if target.exists():  # only a custom name can be taken already
                shutil.rmtree(target)
            os.replace(ckpt.path, target)
            shutil.rmtree(staging, ignore_errors=True)
            paramfiles = {k: target / pathlib.Path(v).name for k, v in ckpt.paramfiles.items()}
            ckpt = Checkpoint(target, ckpt.meta, paramfiles)
            kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
            logger.log(verbosity, "Saved an %s checkpoint in %s", kind, target)
        # torchrun: no process lists the checkpoints (save_and_keep_only does next) before it is in place
        ddp_barrier()
        return ckpt


class RandomState:
    """The random state of every process (torch CPU and CUDA, numpy, python), saved in
    each checkpoint and restored on recovery, so that a resumed run draws exactly what the
    uninterrupted one would have (dropout, augmentation, training crops; SpeechBrain's
    ReproducibleRandomSampler and SaveableDataLoader restore the epoch order and position).

    From an intra-epoch checkpoint the torch state waits for ``apply_pending()`` (called by
    the brain before its next training step): SpeechBrain recreates the epoch's data loader
    after recovery, and a new loader iterator draws its base seed from the torch state.

    Saved on every process: with torchrun each rank's state is gathered to the main one,
    which writes them all; on recovery each rank takes its own. Data-loader workers
    (``num_workers > 0``) are seeded from the torch state at the start of each epoch, so
    resuming from an end-of-epoch checkpoint is exact with workers too; from an
    intra-epoch one, exactly only with ``num_workers: 0``.
    """

    def __init__(self):
        self.pending = None

    @staticmethod
    def capture():
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                 "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def apply_torch(state):
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def apply_pending(self):
        """The torch state of an intra-epoch checkpoint, once the loader iterator exists
        (python and numpy were restored at once: the first batch's crops drew from them)."""
        if self.pending is not None:
            self.apply_torch(self.pending)
            self.pending = None

    @mark_as_saver
    def save(self, path):
        states = [self.capture()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, self.capture())
        if if_main_process():
            torch.save({"ranks": states}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        states = torch.load(path, weights_only=False)["ranks"]
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if len(states) != (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1):
            logger.warning("%s: saved by %d process(es), resumed with another number: the random "
                           "state is restored per rank where it exists, the run will not repeat the "
                           "uninterrupted one exactly", path, len(states))
        state = states[min(rank, len(states) - 1)]
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        self.pending = None if end_of_epoch else state
        if end_of_epoch:
            self.apply_torch(state)


register_checkpoint_hooks(RandomState, save_on_main_only=False)  # every rank joins the gather


class DataChangedError(ValueError):
    """A run's checkpoints were trained on other manifests than the ones it would resume on."""


class DataRecord:
    """What a checkpoint was trained on: the SHA-256 of each manifest of every split (the
    recipe's corpus and any pooled ones), saved in every checkpoint (``data.ckpt``) and checked
    when one is loaded. A run whose data changed (another ``--input_csv`` into the same output
    folder, a re-prepared corpus) is refused instead of resuming, or testing, a model trained
    on other data. ``manifests``: a function returning {split: [paths]}."""

    def __init__(self, manifests):
        self.manifests = manifests

    def fingerprint(self):
        out = {}
        for split, paths in self.manifests().items():
            for i, path in enumerate(paths):
                with open(path, "rb") as f:
                    out[f"{split}[{i}]"] = {"file": os.path.basename(os.path.dirname(os.path.abspath(path)))
                                            + "/" + os.path.basename(path),
                                            "sha256": hashlib.sha256(f.read()).hexdigest()}
        return out

    @mark_as_saver
    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.fingerprint(), f, indent=1)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        with open(path) as f:
            saved = json.load(f)
        now = self.fingerprint()
        changed = [v["file"] for k, v in now.items() if saved.get(k, {}).get("sha256") != v["sha256"]]
        changed += [v["file"] for k, v in saved.items() if k not in now]
        if changed:
            raise DataChangedError(
                f"the checkpoint {os.path.dirname(path)} was trained on other data: {', '.join(changed)} "
                "changed since (another corpus or CSV prepared into the same output folder?). Train into "
                "another --output_folder, or move the old save/ folder away to start afresh here")


register_checkpoint_hooks(DataRecord)
