"""Encoders with one interface: ``(feats, lengths) -> (batch, emb_dim)`` and named layers."""
from recipes.encoders.base import ProfilingEncoder  # noqa: F401
from recipes.encoders.ecapa import EcapaEncoder  # noqa: F401
from recipes.encoders.resnet import ResNetEncoder  # noqa: F401
