"""The former home of the inference class: ``custom_interface.py`` of SpeechBrain pretrained
folders exported before ``recipes/inference/`` existed imports it from here."""

from recipes.inference.interface import SpeakerProfilerInterface  # noqa: F401
