"""Voiceprints: one L2-normalised speaker embedding per window of speech, for telling the
voices of a call apart and for recognising enrolled agents. ``ge2e``: the GE2E speaker encoder
of the resemblyzer wheel (recipes/encoders/ge2e.py, trained on thousands of speakers to tell
them apart); ``model``: the profiler's own encoder (trained for gender and age, weaker at it).
"""

import glob
import os
import weakref

import torch

from recipes.data.audio import AudioError, load_audio

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".au", ".aiff")
_GE2E = {}  # (sample_rate, device) -> (front-end, encoder): built once per process, not per call
_SAME = weakref.WeakKeyDictionary()  # profiler model -> {(sample_rate, device): its embedding is the voiceprint}


def ge2e_voiceprint(sample_rate, device):
    """The GE2E front-end and frozen encoder of the wheel at ``sample_rate`` on ``device``."""
    key = (sample_rate, str(device))
    if key not in _GE2E:
        from recipes.encoders.ge2e import GE2EEncoder, GE2EFrontEnd

        _GE2E[key] = GE2EFrontEnd(sample_rate).to(device), GE2EEncoder().to(device).eval()
    return _GE2E[key]


class Voiceprints:
    def __init__(self, kind, profiler_model, sample_rate, device="cpu"):
        self.kind, self.sample_rate, self.device = kind, sample_rate, device
        self.model = profiler_model
        if kind == "ge2e":
            self.front, self.encoder = ge2e_voiceprint(sample_rate, device)
        # a profiler whose embedding is this very voiceprint (its encoder is the frozen GE2E of the
        # wheel): the windows' model embeddings are reused, not computed a second time
        # (the forward pass of a student that reads its teacher too returns [student; teacher])
        self.same_as_model = (getattr(profiler_model, "teacher", None) is None
                              and (kind != "ge2e" or self._model_gives_the_same()))

    def _model_gives_the_same(self):
        """Whether the profiler's embedding equals the GE2E voiceprint (checked once per model)."""
        known = _SAME.setdefault(self.model, {})
        key = (self.sample_rate, str(self.device))
        if key not in known:
            known[key] = self._compare()
        return known[key]

    @torch.no_grad()
    def _compare(self, seconds=2.0):
        g = torch.Generator().manual_seed(0)
        t = torch.arange(int(seconds * self.sample_rate)) / self.sample_rate
        probe = (0.3 * torch.sin(2 * torch.pi * (120 + 60 * t) * t) + 0.05 * torch.randn(t.numel(), generator=g))
        wav, rel = probe.unsqueeze(0).to(self.device), torch.ones(1, device=self.device)
        ours = self.encoder(self.front(wav), rel).float().cpu()
        theirs = self.model.embed(wav, rel).float().cpu()
        return ours.shape == theirs.shape and bool(torch.allclose(ours, theirs, atol=1e-5))

    @torch.no_grad()
    def embed(self, windows, batch_size=32, model_embeddings=None):
        """(n, D) unit vectors of 1-D windows at ``sample_rate``; ``model_embeddings``: the
        profiler's embeddings of the same windows, used when they are the voiceprints."""
        if model_embeddings is not None and self.same_as_model:
            return torch.nn.functional.normalize(model_embeddings.float(), dim=1)
        out = []
        for k in range(0, len(windows), batch_size):
            chunk = windows[k:k + batch_size]
            lens = torch.tensor([len(w) for w in chunk], dtype=torch.float)
            wavs = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True).to(self.device)
            rel = (lens / lens.max()).to(self.device)
            if self.kind == "ge2e":
                emb = self.encoder(self.front(wavs), rel)
            else:
                emb = self.model.embed(wavs, rel)
            out.append(torch.nn.functional.normalize(emb.float().cpu(), dim=1))
        return torch.cat(out) if out else torch.zeros(0, 1)

    def enrol(self, folder, seconds):
        """{agent name: unit voiceprint} of a folder of agent recordings (one file or a
        sub-folder of files per agent; the name is the file stem or the sub-folder), from windows
        of ``seconds`` (the call's own window length: a print of other windows sits farther away)."""
        if not os.path.isdir(folder):
            raise AudioError(f"agents folder {folder} not found (a folder of agent recordings)")
        files = {}
        for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
            if os.path.isfile(path) and path.lower().endswith(AUDIO_EXTENSIONS):
                rel = os.path.relpath(path, folder)
                name = rel.split(os.sep)[0] if os.sep in rel else os.path.splitext(rel)[0]
                files.setdefault(name, []).append(path)
        if not files:
            raise AudioError(f"agents folder {folder} holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
        prints = {}
        for name, paths in files.items():
            windows = [w for p in paths for w in _speech_windows(load_audio(p, self.sample_rate), self.sample_rate,
                                                                 seconds)]
            if windows:
                prints[name] = torch.nn.functional.normalize(self.embed(windows).mean(0), dim=0)
        return prints


def _speech_windows(wav, sample_rate, seconds):
    """Windows of ``seconds`` of a recording's speech (the speech decision of recipes/data/speech.py)."""
    from recipes.data.speech import keep_speech

    speech = keep_speech(wav, sample_rate)
    n = int(seconds * sample_rate)
    return [speech[a:a + n] for a in range(0, max(1, speech.numel() - n // 2), n) if speech[a:a + n].numel() >= n // 4]
