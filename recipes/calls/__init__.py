"""Calls: two-party recordings (an agent and a caller, stereo or mono) profiled per speaker.
options.py (the YAML options), reader.py (a call read in blocks), voiceprint.py (speaker
embeddings of windows), diarize.py (clustering, re-segmentation, RTTM), call.py (the per-speaker
records of a call)."""
