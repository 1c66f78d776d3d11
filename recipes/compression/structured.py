"""Structured (channel / filter) pruning: whole output channels of convolutions and linear
layers are removed, with the matching inputs of every layer that reads them, so that the
pruned encoder is a smaller DENSE network (plain PyTorch / TorchScript / ONNX run it faster;
no masks, no sparse kernels).

The channel bookkeeping is torch-pruning's ``DependencyGraph`` ("DepGraph: Towards Any
Structural Pruning", arXiv:2301.12900): it traces the encoder once and groups the layers
whose channels are coupled (residual additions, SE gates, concatenations, the attentive
pooling's [x, mean, std] input, a flatten into the ResNet pooling), so one pruning
decision removes the same channel everywhere. Two parts need help:

- SpeechBrain's ``Res2NetBlock`` (ECAPA) splits its input with ``torch.chunk(x, scale)``,
  which only works if every chunk keeps the same width. With torch 2.14 DepGraph reads the
  chunk op's split offsets wrongly (torch-pruning 1.6.1 looks for ``_saved_self_sizes`` on
  ``SplitBackward0``, which torch now names ``_saved_self_sym_sizes``, and falls back to a
  guess: offsets ``[0, C, C + C/s, ...]`` instead of ``[0, C/s, 2C/s, ...]``, so its index
  mapping runs past the layer, "index out of bounds"), and could not keep the chunks equal
  anyway. The block is therefore one layer for DepGraph: ``Res2NetPruner`` (input and output
  channels coupled, channel k of every chunk pruned alike: ``out_channel_groups = scale``),
  traced as an opaque channel-wise op (``_opaque_res2net``) so that its chunk is not seen.
- The encoder's output (the embedding the heads read) is never pruned, and the ResNet
  attention's last convolution is kept from being the root of the last stage's group (its
  outputs are channel x frequency bins: the root is the stage's own convolution).

Importance criteria (``criterion``): ``l1`` / ``l2``, the norm of each channel's weights
over the whole group (torch-pruning ``MagnitudeImportance``, "Pruning Filters for Efficient
ConvNets", arXiv:1608.08710), ``bn_scale``, |gamma| of the group's BatchNorm ("Learning
Efficient Convolutional Networks through Network Slimming", arXiv:1708.06519), and
``probe`` (``recipes.compression.probe_importance``).

A pruned encoder is rebuilt from its unpruned definition plus the shapes of the tensors that
changed (``pruned_shapes`` / ``reshaped``): the checkpoint of every round holds them (resume)
and the pruned folder's inference.yaml builds the encoder with ``reshaped``, so ``infer.py``,
``ProfilerModel.from_folder`` and ``export.py`` load the folder like any other.
"""

import contextlib
import copy
import logging

import torch
import torch_pruning as tp
from speechbrain.lobes.models.ECAPA_TDNN import Res2NetBlock
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from recipes.model_folder import flow_list, tagged

logger = logging.getLogger(__name__)
LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)


class Res2NetPruner(tp.pruner.function.BasePruningFunc):
    """SpeechBrain's Res2NetBlock as one layer: channel k of chunk i (k < C/scale) is
    channel k of the inner TDNN blocks; removing it from every chunk keeps torch.chunk valid."""

    def _inner(self, layer, idxs):
        width = layer.blocks[0].conv.conv.in_channels
        inner = sorted({int(i) % width for i in idxs})
        if len(idxs) != len(inner) * layer.scale:
            raise ValueError(f"Res2NetBlock: channels {sorted(idxs)} are not the same in every one of its "
                             f"{layer.scale} chunks (set out_channel_groups to its scale)")
        return inner

    def prune_out_channels(self, layer, idxs):
        inner = self._inner(layer, idxs)
        conv, norm = tp.pruner.function.prune_conv_out_channels, tp.pruner.function.prune_batchnorm_out_channels
        for block in layer.blocks:
            conv(block.conv.conv, inner)
            tp.pruner.function.prune_conv_in_channels(block.conv.conv, inner)
            norm(block.norm.norm, inner)
        return layer

    prune_in_channels = prune_out_channels  # coupled: chunk 0 passes through unchanged

    def get_out_channels(self, layer):
        return layer.blocks[0].conv.conv.in_channels * layer.scale

    get_in_channels = get_out_channels


def _criterion(name, probe_importance=None):
    if name in ("l1", "l2"):
        return tp.importance.MagnitudeImportance(p=int(name[1]))
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "probe":
        if probe_importance is None:
            raise ValueError("criterion 'probe' needs probe_importance (recipes.compression.probe_importance)")
        return probe_importance
    raise ValueError(f"structured pruning criterion {name!r}: use l1, l2, bn_scale or probe")


@contextlib.contextmanager
def _opaque_res2net():
    """While DepGraph traces: a Res2NetBlock maps x to a channel-wise function of x (its
    torch.chunk, adds and concatenation hidden; the block is a leaf, see Res2NetPruner)."""
    forward = Res2NetBlock.forward
    Res2NetBlock.forward = lambda self, x: x * 1.0
    try:
        yield
    finally:
        Res2NetBlock.forward = forward


def build_pruner(encoder, example, ratio, importance, global_pruning=False, max_ratio=0.9):
    """A torch-pruning MetaPruner over ``encoder`` that removes a share ``ratio`` of the
    channels of every group (of all groups' channels together with ``global_pruning``)."""
    layers = [m for m in encoder.modules() if isinstance(m, LAYERS)]
    ignored = [layers[-1]]  # the embedding layer: the heads read its outputs
    res2net = [m for m in encoder.modules() if isinstance(m, Res2NetBlock)]
    with _opaque_res2net():
        pruner = tp.pruner.MetaPruner(
            encoder, example, importance=importance, pruning_ratio=ratio, global_pruning=global_pruning,
            max_pruning_ratio=max_ratio, ignored_layers=ignored,
            customized_pruners={Res2NetBlock: Res2NetPruner()}, out_channel_groups={m: m.scale for m in res2net})
    # group roots in network order: a stage's convolution before the pooling layers that
    # read its channels through a flatten (DepGraph visits them in trace order, output first)
    order = {m: i for i, m in enumerate(encoder.modules())}
    pruner.DG.module2node = dict(sorted(pruner.DG.module2node.items(), key=lambda kv: order.get(kv[0], len(order))))
    return pruner


def group_roots(pruner):
    """The root layer of every prunable group (whose output channels the importance ranks)."""
    return [g[0].dep.target.module for g in pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)]


def prune_channels(encoder, example, ratio, importance, global_pruning=False, max_ratio=0.9, plan=None):
    """Removes the channels in place; ``plan`` (a list) receives, per layer touched,
    (module name, "in" / "out", removed indices in that layer's numbering before this call)."""
    was_training = encoder.training
    pruner = build_pruner(encoder, example, ratio, importance, global_pruning, max_ratio)
    if hasattr(importance, "prepare"):
        importance.prepare(group_roots(pruner))
    names = {m: n for n, m in encoder.named_modules()}
    for group in pruner.step(interactive=True):
        if plan is not None:
            for dep, idxs in group:
                module = dep.target.module
                if module in names:
                    side = "out" if pruner.DG.is_out_channel_pruning_fn(dep.handler) else "in"
                    plan.append((names[module], side, sorted(int(i) for i in idxs)))
        group.prune()
    encoder.train(was_training)
    return encoder


@torch.no_grad()
def masked_twin(encoder, plan):
    """A copy of the UNPRUNED ``encoder`` computing what the pruned one computes: every removed
    channel is cut from its readers (their input weights zeroed), so it no longer matters."""
    twin = copy.deepcopy(encoder)
    for name, side, idxs in plan:
        module = twin.get_submodule(name)
        if isinstance(module, Res2NetBlock):  # one pruning function for its inputs and outputs
            width = module.blocks[0].conv.conv.in_channels
            for block in module.blocks:
                block.conv.conv.weight[:, sorted({i % width for i in idxs})] = 0.0
        elif side == "in" and isinstance(module, LAYERS):
            module.weight[:, idxs] = 0.0
    return twin


# ---- rebuilding a pruned encoder -------------------------------------------------------
def tensor_shapes(module):
    """{state-dict name: shape} of every tensor with at least one dimension."""
    return {n: list(t.shape) for n, t in module.state_dict().items() if t.dim() > 0}


def pruned_shapes(encoder, unpruned_shapes):
    """The shapes that differ from the unpruned encoder's (what ``reshaped`` needs)."""
    return {n: s for n, s in tensor_shapes(encoder).items() if unpruned_shapes.get(n) != s}


@torch.no_grad()
def reshaped(encoder, shapes):
    """``encoder`` (unpruned, or pruned less) with its tensors resized to ``shapes`` (the
    values come from a checkpoint loaded next) and the layers' channel counts updated."""
    by_module = {}
    for name, shape in shapes.items():
        path, _, attr = name.rpartition(".")
        by_module.setdefault(path, {})[attr] = shape
    for path, attrs in by_module.items():
        module = encoder.get_submodule(path)
        for attr, shape in attrs.items():
            old = getattr(module, attr)
            if old is None or list(old.shape) == list(shape):
                continue
            new = torch.zeros(shape, dtype=old.dtype, device=old.device)
            if isinstance(old, torch.nn.Parameter):
                setattr(module, attr, torch.nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                module.register_buffer(attr, new)
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1] * module.groups
        elif isinstance(module, torch.nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.num_features = (module.weight if module.affine else module.running_mean).shape[0]
    return encoder


def pruned_encoder_entry(tree, shapes):
    """A trained folder's inference.yaml (a ruamel mapping, recipes/model_folder.py) with the
    encoder rebuilt at the pruned shapes: ``encoder_unpruned`` is the model's encoder entry,
    ``encoder`` applies ``reshaped`` to it."""
    if "encoder" not in tree:
        raise ValueError("inference.yaml has no top-level 'encoder:' entry to rebuild")
    out = type(tree)()
    for key, value in tree.items():
        out["encoder_unpruned" if key == "encoder" else key] = value
    out["encoder"] = tagged("!apply:recipes.compression.structured.reshaped", {
        "encoder": tagged("!ref", "<encoder_unpruned>"), "shapes": {n: flow_list(s) for n, s in shapes.items()}})
    return out


@register_checkpoint_hooks
class StructuredPruner:
    """Iterative channel pruning of ``encoder`` for the pruning brain. ``prune(level)``
    removes channels until a share ``level`` of the prunable channels of the unpruned
    encoder is gone (per group, or over all groups with ``global_pruning``). A checkpoint
    recoverable: it saves the pruned shapes and, loaded before the encoder's weights,
    resizes the encoder to them. ``example`` is (feats, lengths) for tracing."""

    def __init__(self, encoder, example, criterion="l2", global_pruning=False, max_ratio=0.9,
                 probe_importance=None):
        self.encoder, self.example = encoder, example
        self.importance = _criterion(criterion, probe_importance)
        self.criterion, self.global_pruning, self.max_ratio = criterion, global_pruning, max_ratio
        self.unpruned = tensor_shapes(encoder)
        self.unpruned_params = sum(p.numel() for p in encoder.parameters())
        self.level = 0.0
        self.pruned_round = 0

    def threshold_for(self, level):  # the schedule's "sparsity" mode: the level itself
        return level

    def prune(self, level):
        """Prunes from the current level to ``level``; returns the share of parameters removed."""
        if level > self.level:
            ratio = 1.0 - (1.0 - level) / (1.0 - self.level)  # of the channels left
            prune_channels(self.encoder, self.example, ratio, self.importance, self.global_pruning, self.max_ratio)
            self.level = level
        return self.sparsity()

    def mask_grads(self):  # nothing is masked: the removed channels are gone
        pass

    def apply(self):
        pass

    def sparsity(self):
        return 1.0 - sum(p.numel() for p in self.encoder.parameters()) / self.unpruned_params

    def shapes(self):
        return pruned_shapes(self.encoder, self.unpruned)

    def layer_rows(self):
        """Per convolution / linear layer: name, shape, parameters, non-zero parameters."""
        return [{"layer": f"encoder.{n}", "shape": "x".join(map(str, m.weight.shape)),
                 "params": sum(p.numel() for p in m.parameters()),
                 "nonzero": sum(int(torch.count_nonzero(p)) for p in m.parameters())}
                for n, m in self.encoder.named_modules() if isinstance(m, LAYERS)]

    @mark_as_saver
    def _save(self, path):
        torch.save({"shapes": self.shapes(), "level": self.level, "pruned_round": self.pruned_round,
                    "criterion": self.criterion}, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        del end_of_epoch
        self.load_state(torch.load(path, map_location="cpu"))

    def load_state(self, state):
        unknown = set(state["shapes"]) - set(self.unpruned)
        if unknown:
            raise ValueError(f"structured pruning checkpoint: tensors {sorted(unknown)[:3]} are not in this "
                             "encoder (another architecture?)")
        # back to the unpruned shapes first: a checkpoint of an earlier round is less pruned
        reshaped(self.encoder, {**self.unpruned, **state["shapes"]})
        self.level, self.pruned_round = state["level"], state["pruned_round"]
