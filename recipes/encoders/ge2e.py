"""A frozen pretrained speaker encoder as teacher: GE2E (3-layer LSTM, 256-d) from a PyPI wheel.

The weights are those of ``resemblyzer==0.1.4`` (Apache-2.0; trained with the generalized
end-to-end loss of Wan et al., "Generalized End-to-End Loss for Speaker Verification",
arXiv:1710.10467, on thousands of speakers), read from the installed wheel's
``pretrained.pt``: nothing is downloaded at run time. The package itself is never imported
(its audio module needs webrtcvad, a C extension), so it is installed with ``--no-deps``.

Three modules plug into a recipe in place of the Fbank front-end (``hparams/encoders/ge2e.yaml``):

- ``GE2EFrontEnd`` (``compute_features``): waveform at the recipe's rate -> 16 kHz ->
  loudness raised to -30 dBFS (never lowered, as the wheel's preprocessing) -> 40-band mel
  POWER spectrogram, 25 ms windows every 10 ms (what the LSTM was trained on);
- ``NoNormalization`` (``mean_var_norm``): the LSTM expects its own input scale;
- ``GE2EEncoder`` (``encoder``): utterances cut into 1.6 s partials (1.3 a second, the last
  kept if it covers >= 75 %), each embedded, averaged and L2-normalised (the wheel's
  ``embed_utterance``), frozen by default.

Named layers for probing: ``lstm1``..``lstm3`` (each layer's output averaged over time and
partials) and ``embedding``.
"""

import importlib.util
import os

import torch
import torchaudio

from recipes.encoders.base import ProfilingEncoder, layer_dict

GE2E_RATE = 16000
HOP = 160                 # 10 ms at 16 kHz
PARTIAL_FRAMES = 160      # 1.6 s
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75
WHEEL = "resemblyzer"


def wheel_weights():
    """Path of the GE2E weights inside the installed wheel (the package is not imported)."""
    spec = importlib.util.find_spec(WHEEL)
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "pretrained.pt")
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(
            "the GE2E encoder needs the weights of the resemblyzer wheel: "
            "`pip install --no-deps resemblyzer==0.1.4` (README, line 1), or give "
            "weights: <path to a GE2E pretrained.pt> in the encoder YAML")
    return path


class GE2EFrontEnd(torch.nn.Module):
    """(batch, samples) at ``sample_rate`` -> (batch, frames, 40) mel power at 16 kHz."""

    def __init__(self, sample_rate=8000, target_dbfs=-30.0, max_gain_db=60.0):
        super().__init__()
        self.sample_rate = sample_rate
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        # librosa.feature.melspectrogram's defaults (Slaney mel scale and area normalisation)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=GE2E_RATE, n_fft=400, hop_length=HOP, n_mels=40, power=2.0,
            norm="slaney", mel_scale="slaney", center=True, pad_mode="constant")

    def forward(self, wavs):
        if self.sample_rate != GE2E_RATE:
            wavs = torchaudio.functional.resample(wavs, self.sample_rate, GE2E_RATE)
        # loudness of the non-padded samples (padding is exact zeros), raised to target_dbfs
        nonzero = (wavs != 0).sum(dim=1).clamp(min=1)
        rms = ((wavs ** 2).sum(dim=1) / nonzero).clamp(min=1e-12).sqrt()
        gain_db = (self.target_dbfs - 20 * torch.log10(rms)).clamp(min=0.0, max=self.max_gain_db)
        wavs = wavs * (10 ** (gain_db / 20)).unsqueeze(1)
        return self.mel(wavs).transpose(1, 2)


class NoNormalization(torch.nn.Module):
    """Stands in for InputNormalization where an encoder expects its own input scale."""

    def forward(self, feats, lengths=None, epoch=None):
        return feats


def partial_starts(n_frames):
    """Start frames of the 1.6 s partials covering ``n_frames`` frames (the wheel's rule)."""
    n_samples = n_frames * HOP
    total = (n_samples + 1 + HOP - 1) // HOP
    step = int(round(GE2E_RATE / PARTIALS_PER_SECOND / HOP))
    starts = list(range(0, max(1, total - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


class GE2EEncoder(ProfilingEncoder):
    """Frozen GE2E LSTM (40 -> 3 x 256 -> 256), ``(mel power, lengths) -> (batch, 256)``."""

    exportable = False  # the Python loop over partials
    export_blocker = "its partial slicing depends on the input length, a trace would freeze it"

    def __init__(self, weights="wheel", freeze=True, hidden=256, emb_dim=256, n_mels=40):
        super().__init__()
        self.emb_dim = emb_dim
        self.freeze = freeze
        self.lstm1 = torch.nn.LSTM(n_mels, hidden, batch_first=True)
        self.lstm2 = torch.nn.LSTM(hidden, hidden, batch_first=True)
        self.lstm3 = torch.nn.LSTM(hidden, hidden, batch_first=True)
        self.linear = torch.nn.Linear(hidden, emb_dim)
        # utterance-level views of each layer, for probing hooks (identities)
        self.taps = torch.nn.ModuleDict({k: torch.nn.Identity() for k in ("lstm1", "lstm2", "lstm3", "embedding")})
        if weights:
            self.load_ge2e(wheel_weights() if weights == "wheel" else weights)
        if freeze:
            self.requires_grad_(False)

    def load_ge2e(self, path):
        """The wheel's 3-layer nn.LSTM state (lstm.weight_ih_l0 ...) into three 1-layer LSTMs."""
        state = torch.load(path, map_location="cpu")["model_state"]
        for layer in range(3):
            lstm = getattr(self, f"lstm{layer + 1}")
            lstm.load_state_dict({f"{k}_l0": state[f"lstm.{k}_l{layer}"]
                                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        self.linear.load_state_dict({"weight": state["linear.weight"], "bias": state["linear.bias"]})

    def train(self, mode=True):
        return super().train(mode and not self.freeze)

    def random_state_dict(self):
        """Weights of a randomly initialised twin (the random-init control of probing)."""
        return GE2EEncoder(weights=None, freeze=self.freeze, hidden=self.lstm1.hidden_size,
                           emb_dim=self.emb_dim, n_mels=self.lstm1.input_size).state_dict()

    def forward(self, feats, lengths=None):
        batch, frames, _ = feats.shape
        if lengths is None:
            lengths = torch.ones(batch, device=feats.device)
        # centred STFT frames of the unpadded signal: samples // hop + 1
        n_valid = ((lengths * (frames - 1)).round().long() + 1).clamp(max=frames).tolist()
        parts, owner = [], []
        for b, n in enumerate(n_valid):
            for s in partial_starts(n):
                chunk = feats[b, s:min(s + PARTIAL_FRAMES, n)]
                parts.append(torch.nn.functional.pad(chunk, (0, 0, 0, PARTIAL_FRAMES - chunk.shape[0])))
                owner.append(b)
        x = torch.stack(parts)
        owner = torch.tensor(owner, device=feats.device)
        counts = torch.bincount(owner, minlength=batch).clamp(min=1).unsqueeze(1).to(feats.dtype)

        def per_utterance(v):  # (partials, D) -> (batch, D) mean over each utterance's partials
            return torch.zeros(batch, v.shape[1], device=v.device, dtype=v.dtype).index_add_(0, owner, v) / counts

        for name in ("lstm1", "lstm2", "lstm3"):
            x, _ = getattr(self, name)(x)
            self.taps[name](per_utterance(x.mean(dim=1)))
        emb = torch.relu(self.linear(x[:, -1]))
        emb = emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-8)
        emb = per_utterance(emb)
        return self.taps["embedding"](emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-8))

    def named_layers(self):
        return layer_dict((name, self.taps[name]) for name in ("lstm1", "lstm2", "lstm3", "embedding"))

    def replacing_groups(self):
        raise NotImplementedError("GE2EEncoder is a frozen pretrained teacher: module replacing "
                                  "and pruning apply to the trained ECAPA / ResNet encoders")
