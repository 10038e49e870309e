"""``narrow``: keep a fraction of an operator's inner channels, through Torch-Pruning's dependency groups.

Where LD-Pruner removes or replaces whole operators, ``narrow`` thins one: a ResNet block's inner
width (``conv1`` outputs, and with them ``norm2``, ``time_emb_proj`` and ``conv2``'s inputs — the
coupled layers Torch-Pruning's dependency graph finds), or a feed-forward's hidden width (GEGLU's two
halves and the output projection). The channels with the smallest L1 weight go; a GroupNorm loses
whole groups (its ``num_groups`` is set from the pruned width, which Torch-Pruning does not do).

A narrow is recorded with the exact channel indices it removed, so the plan replays it on the base
architecture (on the meta device: the dependency graph traces shapes only). It is reversible like the
other patches: the affected layers are copied before pruning and put back by the undo.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

#: operator type -> (the layer whose channels are pruned, the Torch-Pruning handler name, a GroupNorm to fix)
NARROWABLE: dict[str, Callable] = {}


def _resnet(m):
    return m.conv1, "prune_conv_out_channels", m.norm2


def _feed_forward(m):
    return m.net[2], "prune_linear_in_channels", None


NARROWABLE.update(resnet=_resnet, feed_forward=_feed_forward)
DEFAULT_KEEP = 0.5


def can_narrow(module: nn.Module, op_type: str) -> bool:
    if op_type not in NARROWABLE:
        return False
    try:
        layer, _, norm = NARROWABLE[op_type](module)
    except (AttributeError, IndexError, TypeError):
        return False
    width = layer.out_channels if isinstance(layer, nn.Conv2d) else getattr(layer, "in_features", 0)
    groups = norm.num_groups if norm is not None else width
    return width >= 2 and groups >= 2


def channels_to_prune(module: nn.Module, op_type: str, keep: float) -> list[int]:
    """The inner channels with the smallest L1 weight; whole GroupNorm groups for a ResNet block."""
    layer, _, norm = NARROWABLE[op_type](module)
    w = layer.weight.detach().float()
    importance = w.abs().flatten(1).sum(1) if isinstance(layer, nn.Conv2d) else w.abs().sum(0)
    width = importance.numel()
    group = width // norm.num_groups if norm is not None else 1
    per_group = importance.reshape(-1, group).sum(1)
    n_drop = min(len(per_group) - 1, max(1, int(round((1.0 - keep) * len(per_group)))))
    drop = torch.argsort(per_group)[:n_drop].sort().values
    return [int(g) * group + k for g in drop.tolist() for k in range(group)]


def _group_modules(unet: nn.Module, group) -> dict[str, nn.Module]:
    names = {id(m): n for n, m in unet.named_modules()}
    out = {}
    for dep, _ in group:
        for m in (dep.source.module, dep.target.module):
            if isinstance(m, nn.Module) and id(m) in names and names[id(m)]:
                out[names[id(m)]] = m
    return out


def _set(unet: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(unet.get_submodule(parent_name) if parent_name else unet, attr, module)


def narrow(unet: nn.Module, op_name: str, op_type: str, idxs: list[int]) -> Callable[[], None]:
    """Prune channels ``idxs`` of the operator and everything coupled to them; returns the undo."""
    import torch_pruning as tp

    from ..inventory import unet_example_inputs

    module = unet.get_submodule(op_name)
    layer, handler, norm = NARROWABLE[op_type](module)
    device = next(unet.parameters()).device
    # the smallest latent every stage can still halve (shapes only matter to the dependency graph)
    inputs = unet_example_inputs(unet, 64, 64, device=device)
    with torch.inference_mode(False), torch.enable_grad():  # the dependency graph traces through autograd
        graph = tp.DependencyGraph().build_dependency(unet, example_inputs=inputs,
                                                      output_transform=lambda o: o.sample)
    group = graph.get_pruning_group(layer, getattr(tp, handler), idxs=list(idxs))
    if not graph.check_pruning_group(group):
        raise ValueError(f"narrowing {op_name} by {len(idxs)} channels would leave a layer empty")
    saved = {name: copy.deepcopy(m) for name, m in _group_modules(unet, group).items()}
    old_channels = norm.num_channels if norm is not None else None
    group.prune()
    if norm is not None:  # whole groups went: keep the group size
        norm.num_groups = norm.num_groups * norm.num_channels // old_channels

    def undo() -> None:
        for name, m in saved.items():
            _set(unet, name, m)

    return undo


def _apply(unet: nn.Module, op_name: str, op_type: str, params: dict) -> Callable[[], None]:
    if "idxs" not in params:
        raise ValueError(f"narrow does not apply to {op_name} ({op_type}) without channel indices")
    return narrow(unet, op_name, op_type, params["idxs"])


def _register() -> None:
    from .patches import Modification, register_modification

    for op_type in NARROWABLE:
        register_modification(Modification(
            "narrow", (op_type,), applies=lambda m, t=op_type: can_narrow(m, t), apply=_apply, optional=True,
            params=lambda m, t, keep: {"keep": keep, "idxs": channels_to_prune(m, t, keep)}))


_register()
