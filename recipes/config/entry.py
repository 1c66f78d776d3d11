"""The set-up every entry script shares (train.py, prune.py, probe.py, audit.py):

    run = load_run(argv)            # command line -> the recipe, loaded once, strictly
    start_output(run)               # the output folder: locked, created, hyperparams.yaml
    ...
    sys.exit(guarded(main, argv))   # bad input: "error: ..." and exit 1, never a traceback

The recipe YAML is merged with the blocks it ``extends`` (recipes/config/recipe_yaml.py) and
every key and ``--key=value`` override is checked against the blocks (recipes/config/options.py);
a run that writes takes the output folder's lock (recipes/config/run_lock.py).
"""

import dataclasses
import os
import shutil
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from recipes.checkpoint import DataChangedError
from recipes.config.options import OptionError
from recipes.config.resume import ResumeError, check_resumed_options
from recipes.config.recipe_yaml import load_checked, save_hyperparams
from recipes.config.run_lock import RunLockError, lock_output_folder
from recipes.data.manifest import ManifestError
from recipes.encoders.ssl import SSLSourceError
from recipes.labels import LabelError

# errors that mean "bad input": their message says what and where, a traceback would not help
BAD_INPUT = (ManifestError, LabelError, RunLockError, OptionError, DataChangedError, ResumeError, SSLSourceError)
# ... and, for a script that reads a trained folder, a missing folder or file and a bad value
BAD_FOLDER = BAD_INPUT + (FileNotFoundError, ValueError)


@dataclasses.dataclass
class Run:
    hparams_file: str
    run_opts: dict
    overrides: str
    hparams: dict
    argv: list
    lock: object = None

    @property
    def output_folder(self):
        return self.hparams["output_folder"]

    def command(self, script):
        """The command line that started this run, with paths under the working directory
        written relative to it (for reports)."""
        args = " ".join(self.argv).replace(os.getcwd() + os.sep, "")
        return f"python {script} {args}"


def load_run(argv, distributed=False):
    """Parse the command line (SpeechBrain's ``parse_arguments``) and load the recipe once,
    strictly. ``distributed``: join the torchrun process group first (a no-op otherwise)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if distributed:
        sb.utils.distributed.ddp_init_group(run_opts)
    hparams = load_checked(hparams_file, overrides)
    return Run(hparams_file, run_opts, overrides, hparams, list(argv))


def start_output(run):
    """Lock the output folder (one run per folder; torchrun: rank 0), create it and write the
    resolved recipe as hyperparams.yaml. Returns the folder."""
    out = run.output_folder
    run.lock = lock_output_folder(out)
    check_resumed_options(run.hparams_file, run.overrides, run.hparams)  # before hyperparams.yaml is rewritten
    sb.create_experiment_directory(experiment_directory=out, overrides=run.overrides)
    run_on_main(keep_entry_script, args=[out])
    run_on_main(save_hyperparams, args=[run.hparams_file, run.overrides, out])
    return out


def keep_entry_script(out):
    """SpeechBrain copies the file that called create_experiment_directory into the output
    folder (this one): the entry script that ran (train.py, prune.py, ...) is kept instead."""
    copied = os.path.join(out, os.path.basename(__file__))
    if os.path.isfile(copied):
        os.remove(copied)
    script = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script.endswith(".py") and os.path.isfile(script):
        shutil.copy(script, out)


def guarded(main, argv, errors=BAD_INPUT):
    """``main(argv)``; bad input (``errors``) ends the script with ``error: <message>`` (exit 1)."""
    try:
        main(argv)
    except errors as err:
        sys.exit(f"error: {err}")
    return 0
