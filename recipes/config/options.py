"""Recipe options: the top-level YAML keys the code reads, declared once, with the default of
every optional one, and a strict check of a recipe's keys and command-line overrides.

A misspelt key (``--teacher_cach=False`` or ``teacher_cach: False`` in a YAML) would
otherwise silently leave a feature at its default; here it is an error naming the closest
known key. A top-level YAML key is known when the code reads it (``READ`` or ``OPTIONAL``),
when another key of the same recipe refers to it (``<key>``), or when its name starts with
``__`` (hyperpyyaml's run-only keys, e.g. ``__set_seed``).
"""

import difflib
import re

import ruamel.yaml

# optional keys and their default: a recipe that leaves one out gets this value (the shared
# blocks of hparams/blocks/ declare the others, with their defaults, for every recipe)
OPTIONAL = {
    "train_channel": None,          # telephone-channel simulation of train/valid (MKD student)
    "test_channel": None,           # ... and of the test split
    "label_noise_rate": 0.0,        # share of training age labels moved to a neighbour group
    "use_shards": False,            # WebDataset shards instead of per-file reads
    "samples_per_shard": 1000,
    "shard_shuffle_buffer": 1000,
    "dynamic_batching": False,      # SpeechBrain DynamicBatchSampler instead of batch_size
    "pooled_manifest_folders": [],  # other prepared corpora trained on together (one label space)
    "missing_labels": "error",      # error | mask (a corpus may lack a label: no loss, not scored)
    "balance_sampling_by": [],      # heads of the class-balanced train sampler ([] = off)
    "balanced_epoch_size": None,    # draws per epoch (None: the train split's size)
    "init_from": None,              # fine-tuning: an output folder whose best checkpoint starts this run
    "wav_augment": None,            # training-only augmentation of the waveform ...
    "feat_augment": None,           # ... and of the normalised features
    "mkd": False,                   # mixup knowledge distillation (paper 004), hparams/blocks/mkd.yaml
    "concat_teacher": False,
    "teacher_folder": None,
    "teacher_cache": False,
    "teacher_adapt_norm": False,
    "prune_method": "magnitude",    # prune.py: magnitude | structured
    "speech": None,                 # recipes.data.speech.SpeechConfig (None: its defaults)
    "head_input": None,             # the heads' input size (blocks/train.yaml: the embedding size)
    "group_min_count": 1,           # per-group error table: groups with fewer test rows are left out
}

# keys the entry scripts, brains and blocks read that a recipe of that kind defines
READ = {
    "seed", "output_folder", "save_folder", "manifest_folder", "train_log", "data_folder",
    "prepare_data", "label_space", "labels", "sample_rate", "crop_seconds", "model", "encoder",
    "heads", "compute_features", "mean_var_norm", "objective", "brain_class", "opt_class",
    "lr_schedule", "epoch_counter", "modules", "checkpointer", "train_logger", "ckpt_keep",
    "train_dataloader_opts", "eval_dataloader_opts", "sorting", "dynamic_batch_sampler", "shard_folder",
    "wav_augment_recipe", "feat_augment_recipe",  # ready-made augmentations: --wav_augment=!ref <wav_augment_recipe>
    # MKD, logit KD, module replacing
    "mixup", "kd_weight", "kd_criterion", "projector", "teacher_model", "teacher_encoder",
    "teacher_heads", "student_folder", "init_student_from_teacher", "replacement_schedule",
    "strategy", "reference",
    # pruning (prune.py)
    "model_folder", "pruner", "pruning_schedule", "epochs_per_round", "stop_metric", "f1_tolerance",
    "sparse_min_sparsity", "prune_min_dim", "prune_include", "prune_exclude", "latency_seconds",
    "latency_repeats", "latency_batches", "probe", "probe_batches", "probe_fallback",
    "probe_p_step", "probe_tasks", "structured_criterion", "structured_global",
    "structured_max_ratio", "structured_trace_seconds",
    # inference options (hparams/interface.yaml)
    "window_seconds", "hop_seconds", "drop_non_speech", "window_batch_size",
}



def run_option_keys():
    """SpeechBrain's run options (ckpt_interval_minutes, precision, ...): a recipe YAML may set them."""
    from speechbrain.core import RunOptions

    return set(RunOptions().as_dict())


REF = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)")


class OptionError(KeyError):
    """A YAML key or command-line override that no recipe knows."""

    def __str__(self):
        return self.args[0]


def _closest(key, known):
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def parse_overrides(overrides):
    """Overrides as SpeechBrain passes them (a YAML string) or a dict -> dict."""
    if not overrides:
        return {}
    if isinstance(overrides, str):
        return dict(ruamel.yaml.YAML().load(overrides) or {})
    return dict(overrides)


def check_options(yaml_text, overrides=None, source="hparams", own_keys=None):
    """Raise OptionError for a key of the recipe or of ``overrides`` that nothing reads, refers
    to or declares. ``yaml_text``: the recipe merged with the blocks it extends (unresolved);
    ``own_keys``: the recipe file's own top-level keys (default: every key of ``yaml_text``),
    the ones checked; a key a block declares is known. Returns the merged top-level keys."""
    tree = ruamel.yaml.YAML().load(yaml_text) or {}
    keys = set(tree)
    own = keys if own_keys is None else set(own_keys) - {"extends"}
    known = READ | set(OPTIONAL) | set(REF.findall(yaml_text)) | run_option_keys() | (keys - own)
    for key in sorted(own):
        if not str(key).startswith("__") and key not in known:
            raise OptionError(f"{source}: unknown key {key!r} (nothing reads it){_closest(key, known)}")
    known |= keys
    for key in parse_overrides(overrides):
        if key not in known:
            raise OptionError(f"unknown option --{key}{_closest(key, known)}")
    return keys


def with_defaults(hparams):
    """Fill the optional keys a recipe left out with their declared default (in place)."""
    for key, value in OPTIONAL.items():
        hparams.setdefault(key, value)
    return hparams


def load_checked(hparams_file, overrides=None):
    """Load a recipe YAML (with the blocks it ``extends``) strictly: an unknown key or
    override is an OptionError naming the closest known key; optional keys the recipe leaves
    out get their default."""
    from hyperpyyaml import load_hyperpyyaml

    from recipes.config.recipe_yaml import open_recipe

    with open(hparams_file) as f:
        own = ruamel.yaml.YAML().load(f) or {}
    with open_recipe(hparams_file) as f:
        check_options(f.read(), overrides, source=hparams_file, own_keys=list(own))
    with open_recipe(hparams_file) as f:
        hparams = load_hyperpyyaml(f, overrides, overrides_must_match=False)
    return with_defaults(hparams)
