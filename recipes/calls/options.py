"""The options of the call mode, from YAML (``call:`` of hparams/blocks/interface.yaml; an
exported folder without them gets these defaults)::

    call: !new:recipes.calls.options.CallOptions
        window_seconds: 1.6       # speech windows profiled and embedded (one GE2E partial) ...
        hop_seconds: 1.0          # ... every hop
        min_window_seconds: 0.5   # shorter stretches of speech are left out
        fill_gap_seconds: 1.0     # mono: pauses this short inside speech belong to the turn
        segment_gap_seconds: 0.5  # a speaker's segments (RTTM): its speech, pauses this short bridged
        block_seconds: 60.0       # the call is read this many seconds at a time (bounded memory)
        dominance_db: 10.0        # stereo: the other channel's speech is crosstalk when this much quieter
        max_speakers: 4           # mono: speakers estimated between 1 and this
        cluster_threshold: 0.3    # mono: cosine distance that separates two voices (GE2E on real speech)
        agent_threshold: 0.66     # an enrolled agent's voice: cosine similarity at least this
        enrolled_split_margin: 0.05  # mono, every voice an enrolled one: a voice's windows this much farther
                                     # from its enrolled voiceprint is split off (the caller)
        first_speaker_role: null  # or agent / caller: the role of the speaker heard first
        voiceprint: ge2e          # ge2e (the GE2E wheel's speaker encoder) | model (the profiler's encoder)
        stream_block_seconds: 2.0 # StreamingProfiler: audio processed this many seconds at a time
        decide_seconds: 5.0       # a live speaker is "decided" with this much speech ...
        decide_probability: 0.8   # ... and a gender probability at least this
"""

from dataclasses import dataclass

from recipes.yaml_options import YamlOptions

ROLES = ("caller", "agent", "unknown")


@dataclass
class CallOptions(YamlOptions):
    WHAT = "call options"
    window_seconds: float = 1.6
    hop_seconds: float = 1.0
    min_window_seconds: float = 0.5
    fill_gap_seconds: float = 1.0
    segment_gap_seconds: float = 0.5
    block_seconds: float = 60.0
    dominance_db: float = 10.0
    max_speakers: int = 4
    cluster_threshold: float = 0.3
    agent_threshold: float = 0.66
    enrolled_split_margin: float = 0.05
    first_speaker_role: str = None
    voiceprint: str = "ge2e"
    stream_block_seconds: float = 2.0
    decide_seconds: float = 5.0
    decide_probability: float = 0.8

    def __post_init__(self):
        if not (self.window_seconds > 0 and self.hop_seconds > 0 and self.block_seconds >= self.window_seconds):
            raise ValueError("call options: window_seconds and hop_seconds must be > 0, block_seconds >= window_seconds")
        if not 1 <= int(self.max_speakers) <= 8:
            raise ValueError(f"call options: max_speakers must be 1-8, got {self.max_speakers}")
        if self.first_speaker_role not in (None, "agent", "caller"):
            raise ValueError(f"call options: first_speaker_role must be null, agent or caller, got {self.first_speaker_role!r}")
        if not (self.stream_block_seconds > 0 and 0 <= self.decide_probability <= 1):
            raise ValueError("call options: stream_block_seconds must be > 0, decide_probability in [0, 1]")
        if self.voiceprint not in ("ge2e", "model"):
            raise ValueError(f"call options: voiceprint must be ge2e or model, got {self.voiceprint!r}")

