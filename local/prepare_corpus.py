"""Data preparation chosen by YAML: a corpus's own preparation, or, when ``input_csv`` is set,
an in-house CSV corpus (local/prepare_csv.py) with the same options, e.g. for the F/T rows of
paper 004:

    python train.py hparams/speechocean762/mkd.yaml --data_folder=../shared/data/speechocean762-8k \
        --input_csv=calls.csv --init_from=<student output folder> --output_folder=<new folder>

(``data_folder`` is a required key of the corpus recipes; it is not read when ``input_csv`` is
set.) ``prepare_corpus`` serves speechocean762, ``csv_or_corpus`` any corpus preparation given
as a YAML ``!name:`` (Common Voice).
"""

import os
import sys
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from local.prepare_csv import prepare_csv  # noqa: E402
from local.prepare_speechocean762 import prepare_speechocean762  # noqa: E402


def prepare_corpus(data_folder, save_folder, input_csv=None, csv_ratios=(0.8, 0.1, 0.1),
                   valid_ratio=0.1, min_duration=1.0, max_duration=20.0, seed=1234, skip_bad=False,
                   label_space=None, speech=None):
    """Write save_folder/{train,valid,test}.csv from input_csv if given, else data_folder.
    label_space (checked on the CSV's rows) and speech (recipes.data.speech.SpeechConfig)
    are optional, from the recipe YAML."""
    corpus = partial(prepare_speechocean762, data_folder, save_folder, valid_ratio=valid_ratio, skip_bad=skip_bad,
                     min_duration=min_duration, max_duration=max_duration, seed=seed, speech=speech)
    return csv_or_corpus(corpus, input_csv, csv_ratios, label_space=label_space)


def csv_or_corpus(corpus, input_csv=None, csv_ratios=(0.8, 0.1, 0.1), label_space=None):
    """``corpus()`` (a corpus preparation with its options, from YAML), or, when ``input_csv``
    is set, local/prepare_csv.py on that CSV into the same manifest folder with the same label
    space (``label_space``, else the corpus's), speech decision, sample rate, durations, split
    seed and screening (F/T on an in-house corpus)."""
    if not input_csv:
        return corpus()
    kw = {**dict(zip(("data_folder", "save_folder"), corpus.args)), **corpus.keywords}
    shared = {k: kw[k] for k in ("min_duration", "max_duration", "seed", "skip_bad", "speech", "sample_rate")
              if k in kw}  # an option the corpus does not set keeps prepare_csv's default
    return prepare_csv(input_csv, kw["save_folder"], ratios=tuple(csv_ratios),
                       label_space=label_space or kw.get("label_space"), **shared)
