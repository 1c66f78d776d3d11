"""Inference: the network of a trained folder (model.py), the inference class that profiles
recordings (interface.py), the speech windows it scores (windows.py) and the export graphs
(deploy.py).

``recipes.inference.ProfilerModel`` / ``SpeakerProfiler`` stay importable from here: the
inference.yaml of folders trained before this package existed names them so."""

from recipes.inference.model import ProfilerModel, SpeakerProfiler  # noqa: F401
