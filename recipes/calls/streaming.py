"""Live calls: ``StreamingProfiler`` takes audio chunks of any length as they arrive and, after
each chunk, returns the running profile of each speaker (stereo: each channel; mono: each voice
heard so far) with a ``decided`` flag.

The chunks are gathered into blocks of ``stream_block_seconds`` (the YAML ``call:`` options) at
the stream's rate; each complete block goes through exactly the processing of a file's block
(recipes/calls/call.py: DC offset, resampling, speech decision, windows, probabilities,
voiceprints), so the work per chunk is bounded by the block, never the history. A running mono
profile assigns each new window to the nearest voice heard so far; ``finish()`` clusters the
whole call's voiceprints as the offline path does, so its records equal
``profile_call`` on the same audio with ``block_seconds`` = ``stream_block_seconds``.

A speaker is ``decided`` once it has at least ``decide_seconds`` of speech and its gender
probability is at least ``decide_probability`` (both in YAML).

    stream = StreamingProfiler(profiler, sample_rate=8000, channels=2, caller_channel="right")
    for chunk in chunks:                 # numpy / torch, (samples,) or (samples, channels)
        for speaker in stream.push(chunk):
            print(speaker["speaker"], speaker["gender"]["label"], speaker["decided"])
    final = stream.finish()
"""

import numpy as np
import torch

from recipes.calls.call import CallSession
from recipes.calls.options import CallOptions
from recipes.calls.reader import prepare_block


class StreamingProfiler:
    def __init__(self, profiler, sample_rate=None, channels=1, caller_channel=None, agents=None, options=None,
                 name="stream"):
        self.opts = CallOptions.coerce(options if options is not None else getattr(profiler.hparams, "call", None))
        self.rate = int(sample_rate or profiler.sample_rate)
        if channels not in (1, 2):
            raise ValueError(f"a stream has 1 or 2 channels, got {channels}")
        self.channels, self.name = channels, name
        self.session = CallSession(profiler, channels, channels == 1, caller_channel, agents, self.opts)
        self.block = max(1, int(round(self.opts.stream_block_seconds * self.rate)))
        self.buffer = np.zeros((0, channels), dtype=np.float32)
        self.start = 0  # samples of the stream already processed (at its own rate)
        self.latest = []

    def push(self, chunk):
        """Adds a chunk; returns the running records (the last ones until a block is complete)."""
        data = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        data = data.astype(np.float32).reshape(len(data), -1)
        if data.shape[1] != self.channels:
            raise ValueError(f"chunk with {data.shape[1]} channel(s) on a {self.channels}-channel stream")
        self.buffer = np.concatenate([self.buffer, data])
        processed = False
        while len(self.buffer) >= self.block:
            self._process(self.buffer[:self.block])
            self.buffer = self.buffer[self.block:]
            processed = True
        if processed:
            self.latest = self._decide(self.session.records(self.name, final=False))
        return self.latest

    def finish(self):
        """The last partial block processed; the call's final records (offline clustering)."""
        if len(self.buffer):
            self._process(self.buffer)
            self.buffer = self.buffer[:0]
        self.latest = self._decide(self.session.records(self.name, final=True))
        return self.latest

    def _process(self, data):
        x = prepare_block(data, self.rate, self.session.sr, self.name)
        self.session.add_block(self.start / float(self.rate), x)
        self.start += len(data)

    def _decide(self, records):
        for rec in records:
            prob = (rec.get("gender") or {}).get("prob")
            rec["decided"] = bool(prob is not None and rec["speech_seconds"] >= self.opts.decide_seconds
                                  and prob >= self.opts.decide_probability)
        return records
