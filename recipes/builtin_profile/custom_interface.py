"""Entry point for speechbrain.inference.interfaces.foreign_class (needs the project on the Python path)."""

from recipes.inference.interface import SpeakerProfilerInterface  # noqa: F401
