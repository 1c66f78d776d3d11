"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM) behind the project's interface.

The checkpoint is loaded by SpeechBrain's Hugging Face integration
(``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``, a ``transformers.AutoModel``, so
one wrapper serves the three families): the padding mask, the checkpoint's own waveform
normalisation (``do_normalize`` of its preprocessor_config.json), freezing the whole model or
only its CNN feature extractor, and every layer's hidden states (``output_all_hiddens``). On top:

- the learned softmax-weighted sum of the layers (as ``WeightedSSLModel.forward`` computes it,
  the SUPERB recipe, "SUPERB: Speech processing Universal PERformance Benchmark",
  arXiv:2105.01051). ``WeightedSSLModel`` itself is not used: it passes no padding mask (padded
  batch rows would attend to their zeros) and cannot freeze only the feature extractor;
- attentive statistics pooling (SpeechBrain's, of ECAPA-TDNN: length-aware), BatchNorm and a
  linear layer to ``emb_dim``: the embedding the project's heads read.

The encoder reads the waveform itself (``hparams/blocks/ssl.yaml``: ``Waveform`` front-end, no
normalisation) at the recipe's ``input_rate`` and resamples it to the rate the checkpoint was
trained at (``ssl_rate``, by default its preprocessor_config.json ``sampling_rate``).

``source`` is a folder holding a Hugging Face checkpoint or a checkpoint name
(``microsoft/wavlm-base-plus``) already in the Hugging Face cache (downloaded there when the hub
can be reached and HF_HUB_OFFLINE is unset); anything else is one ``SSLSourceError`` naming it.
``transformers`` is imported here only, when an SSL encoder is built.

Named layers for probing: ``layer0`` (the transformer's input: projected CNN features),
``layer1``..``layerN`` (each transformer layer's output, as (batch, hidden, frames) taps, so the
probing hooks pool valid frames as for ECAPA blocks), ``pooling`` and ``embedding``.
"""

import os
import re

import torch
import torchaudio
from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling

from recipes.encoders.base import ProfilingEncoder, layer_dict

CHECKPOINT_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
HUB_FILES = ["*.json", "*.safetensors", "*.bin"]
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # <owner>/<name>


class SSLSourceError(FileNotFoundError):
    """An SSL checkpoint that is not where ``source`` says (the message names it)."""

    def __str__(self):
        return self.args[0]


def _missing(folder):
    """What a checkpoint folder lacks ('' when complete)."""
    names = os.listdir(folder)
    lacking = [f for f in CHECKPOINT_FILES if f not in names]
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        lacking.append("the weights (model.safetensors or pytorch_model.bin)")
    return ", ".join(lacking)


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_source(source):
    """The local folder of the checkpoint ``source``: the folder itself, or the Hugging Face
    cache's snapshot of the checkpoint of that name. Raises SSLSourceError otherwise."""
    looked_for = ("a folder with config.json, preprocessor_config.json and model.safetensors "
                  "(or pytorch_model.bin)")
    if source is None or not str(source).strip():
        raise SSLSourceError(f"ssl_source is empty: give {looked_for}, or a Hugging Face checkpoint "
                             "name already downloaded (--ssl_source=<folder or name>)")
    source = os.path.expanduser(str(source))
    if os.path.isdir(source):
        lacking = _missing(source)
        if lacking:
            raise SSLSourceError(f"ssl_source {source!r}: the folder lacks {lacking} (looked for {looked_for})")
        return source
    if not HUB_NAME.fullmatch(source):
        raise SSLSourceError(f"ssl_source {source!r}: no such folder (looked for {looked_for}), and not a "
                             "Hugging Face checkpoint name (<owner>/<name>)")
    from huggingface_hub import constants, snapshot_download

    folder, reason = None, ""
    for local_only in (True,) if _offline() else (True, False):
        try:
            folder = snapshot_download(source, allow_patterns=HUB_FILES, local_files_only=local_only)
            break
        except Exception as err:  # not in the cache, no network, no such repository: one message below
            reason = type(err).__name__
    if folder is None or _missing(folder):
        raise SSLSourceError(
            f"ssl_source {source!r}: no such folder, and no checkpoint of that name in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}){'' if _offline() else ' nor on the hub'} ({reason or 'incomplete'}); "
            f"looked for {looked_for}. Download it beforehand (`hf download {source}`, where there is network) "
            "and pass --ssl_source=<the folder holding it>, or put it in that cache")
    return folder


class Waveform(torch.nn.Module):
    """``compute_features`` of an encoder that reads the waveform itself: (batch, samples) as is."""

    def forward(self, wavs):
        return wavs


def _tail(hidden, attention_channels, emb_dim):
    """The trained part on top of the SSL model: pooling, its BatchNorm, the embedding layer."""
    return dict(pooling=AttentiveStatisticsPooling(hidden, attention_channels=attention_channels),
                pool_norm=torch.nn.BatchNorm1d(2 * hidden), fc=torch.nn.Linear(2 * hidden, emb_dim))


class SSLEncoder(ProfilingEncoder):
    """``(waveform at input_rate, lengths) -> (batch, emb_dim)`` through a pretrained SSL model.

    ``source``: where the checkpoint lies (a folder, or a name in the Hugging Face cache);
    None: ``checkpoint``, the encoder YAML's checkpoint name.
    ``freeze``: the SSL model keeps its weights (eval mode, no gradients); the layer weights,
    pooling and embedding layer train. ``freeze: False`` fine-tunes the transformer too, with the
    CNN feature extractor frozen when ``freeze_feature_extractor``.
    """

    exportable = False
    export_blocker = "a Hugging Face transformer behind a resampler: not traced here"

    def __init__(self, source=None, checkpoint=None, input_rate=8000, ssl_rate=None, freeze=True,
                 freeze_feature_extractor=True, emb_dim=256, attention_channels=128):
        super().__init__()
        from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2  # lazy: transformers

        self.source = source if source not in (None, "") else checkpoint
        self.freeze, self.emb_dim = bool(freeze), int(emb_dim)
        self.ssl = Wav2Vec2(resolve_source(self.source), save_path="", freeze=self.freeze,
                            freeze_feature_extractor=freeze_feature_extractor, output_all_hiddens=True)
        self.ssl.model.config.layerdrop = 0.0  # a skipped layer would be missing from the weighted sum
        self.input_rate = int(input_rate)
        self.ssl_rate = int(ssl_rate or self.ssl.feature_extractor.sampling_rate)
        self.attention_channels = int(attention_channels)
        hidden, n_layers = self.ssl.config.hidden_size, self.ssl.config.num_hidden_layers + 1
        self.layer_weights = torch.nn.Parameter(torch.zeros(n_layers))  # softmax(0): the plain mean at first
        for name, module in _tail(hidden, self.attention_channels, self.emb_dim).items():
            setattr(self, name, module)
        # each layer's hidden states as (batch, hidden, frames), for probing hooks (identities)
        self.taps = torch.nn.ModuleDict({f"layer{i}": torch.nn.Identity() for i in range(n_layers)})

    def train(self, mode=True):
        super().train(mode)
        if self.freeze:
            self.ssl.model.eval()  # no dropout / layer drop in a frozen model
        elif self.ssl.freeze_feature_extractor:
            self.ssl.model.feature_extractor.eval()
        return self

    def forward(self, wavs, lengths=None):
        if wavs.dim() != 2:
            raise ValueError(f"SSLEncoder reads waveforms (batch, samples), got shape {tuple(wavs.shape)}: "
                             "the recipe needs hparams/blocks/ssl.yaml (its Waveform front-end)")
        if lengths is None:
            lengths = torch.ones(wavs.shape[0], device=wavs.device)
        if self.input_rate != self.ssl_rate:
            wavs = torchaudio.functional.resample(wavs, self.input_rate, self.ssl_rate)
        hidden = self.ssl(wavs, lengths)  # (layers, batch, frames, hidden)
        for i in range(hidden.shape[0]):
            self.taps[f"layer{i}"](hidden[i].transpose(1, 2))
        weights = torch.softmax(self.layer_weights, dim=0)  # SUPERB: sum_l softmax(w)_l h_l
        x = (weights.view(-1, 1, 1, 1) * hidden).sum(dim=0).transpose(1, 2)
        x = self.pool_norm(self.pooling(x, lengths).squeeze(-1))
        return self.fc(x)

    def named_layers(self):
        taps = [(name, tap) for name, tap in self.taps.items()]
        return layer_dict(taps + [("pooling", self.pool_norm), ("embedding", self.fc)])

    def replacing_groups(self):
        raise NotImplementedError("SSLEncoder is a pretrained teacher: module replacing and pruning apply to the "
                                  "ECAPA / ResNet encoders (distil it into one with MKD or logit KD)")

    def random_state_dict(self):
        """Weights of a randomly initialised twin: the same config with fresh weights, a fresh
        pooling and embedding layer, equal layer weights (the random-init control of probing)."""
        from transformers import AutoModel

        state = dict(self.state_dict())
        twin = AutoModel.from_config(self.ssl.model.config)
        state.update({f"ssl.model.{k}": v for k, v in twin.state_dict().items()})
        tail = _tail(self.ssl.config.hidden_size, self.attention_channels, self.emb_dim)
        state.update({f"{name}.{k}": v for name, m in tail.items() for k, v in m.state_dict().items()})
        state["layer_weights"] = torch.zeros_like(self.layer_weights)
        return state
