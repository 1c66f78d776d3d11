"""The interface every encoder of the project implements."""

from collections import OrderedDict

import torch


class ProfilingEncoder(torch.nn.Module):
    """Base class: ``forward(feats, lengths) -> (batch, emb_dim)``.

    Subclasses set ``self.emb_dim`` and implement ``named_layers()``, an ordered mapping
    from a stable layer name (``block1``, ``stage3``, ``pooling``, ``embedding``...) to the
    sub-module whose output is that layer's representation, and ``replacing_groups()``. Probing
    hooks and module replacing use these names, so no method needs an ``if encoder == ...``.
    """

    emb_dim: int
    exportable = True  # False: torch.jit.trace / ONNX export would freeze length-dependent Python logic
    export_blocker = "length-dependent Python logic, a trace would freeze it"  # why not (export's error)

    def named_layers(self):
        raise NotImplementedError

    def replacing_groups(self):
        """Module replacing (paper 003): the encoder split into consecutive modules, each a
        list of sub-module paths (``get_submodule`` names) that are swapped together. Every
        parameter must lie in one group, and a student of the same class whose groups keep
        the teacher's input and output shapes can replace the teacher group by group."""
        raise NotImplementedError

    def random_state_dict(self):
        """Weights of a random-init twin (the random-init control of probing). A freshly built
        encoder is one; a pretrained encoder (recipes/encoders/ge2e.py) overrides this."""
        return self.state_dict()

    def layer_names(self):
        return list(self.named_layers().keys())

    def n_params(self):
        return sum(p.numel() for p in self.parameters())


def layer_dict(pairs):
    """OrderedDict from (name, module) pairs (a helper for ``named_layers``)."""
    return OrderedDict(pairs)
