"""Fine-tuning (paper 004 "F/T" rows, ``init_from``): a new run starts from the weights of another
folder: a trained folder's best checkpoint, or an exported folder's ``<name>.ckpt`` files (the
shipped profile ``builtin`` among them). The folders' format is recipes/model_folder.py's.
"""

import logging
import os

import torch

from recipes.model_folder import (INFERENCE_YAML, PRETRAINED_YAML, is_exported, is_trained, recover_best,
                                  resolve_folder)

logger = logging.getLogger(__name__)


def init_from_folder(src, recoverables, resuming):
    """Fine-tuning (paper 004 "F/T" rows): load ``recoverables`` from the best checkpoint of
    the trained folder ``src`` (or the weights of the exported folder ``src``, ``builtin``
    among them), unless this run is ``resuming`` its own checkpoint."""
    if not src:
        return False
    if resuming:
        logger.info("init_from ignored: resuming this run's own checkpoint")
        return False
    folder = resolve_folder(src)
    if is_trained(folder):
        recover_best(folder, recoverables)
    elif is_exported(folder):
        load_exported_weights(folder, recoverables, src)
    else:
        raise FileNotFoundError(f"init_from: {src} is neither a train.py output folder ({INFERENCE_YAML}) "
                                f"nor an exported folder ({PRETRAINED_YAML})")
    logger.info("initialised %s from %s", list(recoverables), src)
    return True


def load_exported_weights(folder, recoverables, name=None):
    """Load each of ``recoverables`` that has a ``<name>.ckpt`` in the exported ``folder``
    (an encoder rebuilt by its YAML has none: it stays as the recipe built it); a module whose
    shapes differ (other label space, other encoder) is a ValueError naming both."""
    for key, module in recoverables.items():
        path = os.path.join(str(folder), f"{key}.ckpt")
        if not os.path.isfile(path):
            continue
        try:
            module.load_state_dict(torch.load(path, map_location="cpu"))
        except RuntimeError as err:
            lines = [line.strip() for line in str(err).strip().splitlines()]
            raise ValueError(
                f"init_from {name or folder}: its {key}.ckpt does not fit this recipe's {key} "
                f"({lines[1] if len(lines) > 1 else lines[0]}); train with the encoder, label space and "
                f"heads of {os.path.join(str(folder), PRETRAINED_YAML)}") from None
