"""A Checkpointer that never leaves a half-written checkpoint as the latest one.

SpeechBrain's Checkpointer writes ``CKPT.yaml`` (which marks a directory as a valid
checkpoint) before the parameter files, so an interruption during a save leaves a
broken "latest" checkpoint. Here every checkpoint is written into a staging folder
and moved into place with one atomic rename once all its files are on disk.
"""

import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process


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
            ckpt = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name,
                                           verbosity=verbosity)
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
        # torchrun: no process lists the checkpoints (save_and_keep_only does next) before it is in place
        ddp_barrier()
        return ckpt
