"""Operator modifications of LD-Pruner: reversible swaps of one UNet operator for a cheaper stand-in.

One registry (:data:`MODIFICATIONS`); each modification says which operators it applies to and builds
the stand-in module. :func:`apply_modification` swaps it in and returns the undo. The stand-ins are
plain modules with no weights of their own (the 1x1 shortcut keeps its original weights), so a pruned
UNet's ``state_dict`` is the surviving weights under their original names, and replaying the same
modifications on the base architecture rebuilds it exactly (see :mod:`.plan`).

* ``remove`` — identity where input and output shapes match: a ResNet block with equal in / out
  channels, a spatial transformer (``Transformer2DModel``), a transformer block, a feed-forward (its
  residual add then adds nothing), the mid-block (``unet.mid_block = None``, which diffusers supports);
* ``replace`` — a ResNet block that changes channels keeps only its 1x1 ``conv_shortcut``; a self- or
  cross-attention contributes nothing, leaving the residual path of its transformer block;
* ``narrow`` — keep a fraction of a ResNet block's or feed-forward's inner channels (:mod:`.narrow`,
  through Torch-Pruning's dependency groups); its parameters are the channel indices removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


class ResnetIdentity(nn.Module):
    """A ResNet block with equal in / out channels, removed: its input goes through."""

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        return input_tensor


class ResnetShortcut(nn.Module):
    """A channel-changing ResNet block reduced to its 1x1 shortcut (the residual branch dropped)."""

    def __init__(self, conv_shortcut: nn.Module, output_scale_factor: float = 1.0):
        super().__init__()
        self.conv_shortcut = conv_shortcut
        self.output_scale_factor = output_scale_factor

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        return self.conv_shortcut(input_tensor) / self.output_scale_factor


class TransformerIdentity(nn.Module):
    """A spatial transformer removed. Callers index ``[0]`` of its ``return_dict=False`` output: a tuple."""

    def forward(self, hidden_states, *args, return_dict: bool = True, **kwargs):
        if return_dict:
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=hidden_states)
        return (hidden_states,)


class BlockIdentity(nn.Module):
    """A transformer block removed: its hidden states go through."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class ZeroResidual(nn.Module):
    """An attention or feed-forward that adds nothing to the residual stream it feeds."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


@dataclass(frozen=True)
class Modification:
    name: str  # "remove", "replace", "narrow"
    op_types: tuple[str, ...]
    applies: Callable[[nn.Module], bool]
    # swap-in modifications: the stand-in module (None: the attribute is set to None, the mid-block)
    stand_in: Callable[[nn.Module], nn.Module | None] | None = None
    # in-place ones (narrow): (unet, op_name, op_type, params) -> undo
    apply: Callable[[nn.Module, str, str, dict], Callable[[], None]] | None = None
    # what a candidate records to replay it: (module, op_type, setting) -> params (narrow: the channels removed)
    params: Callable[[nn.Module, str, float], dict] | None = None
    optional: bool = False  # considered only when asked (narrow: --narrow-keep)


#: (modification name, operator type) -> Modification; an operator gets at most one of each name
MODIFICATIONS: dict[tuple[str, str], Modification] = {}


def register_modification(mod: Modification) -> None:
    for op_type in mod.op_types:
        key = (mod.name, op_type)
        if key in MODIFICATIONS:
            raise ValueError(f"modification {mod.name!r} for {op_type!r} registered twice")
        MODIFICATIONS[key] = mod


def _same_channels(resnet) -> bool:
    return resnet.in_channels == resnet.out_channels and resnet.conv_shortcut is None \
        and not getattr(resnet, "up", False) and not getattr(resnet, "down", False)


def _has_shortcut(resnet) -> bool:
    return resnet.conv_shortcut is not None and not getattr(resnet, "up", False) \
        and not getattr(resnet, "down", False)


register_modification(Modification("remove", ("resnet",), _same_channels, lambda m: ResnetIdentity()))
register_modification(Modification(
    "replace", ("resnet",), _has_shortcut,
    lambda m: ResnetShortcut(m.conv_shortcut, float(getattr(m, "output_scale_factor", 1.0)))))
register_modification(Modification(
    "remove", ("transformer",), lambda m: getattr(m, "in_channels", None) == getattr(m, "out_channels", None),
    lambda m: TransformerIdentity()))
register_modification(Modification("remove", ("transformer_block",), lambda m: True, lambda m: BlockIdentity()))
register_modification(Modification("remove", ("feed_forward",), lambda m: True, lambda m: ZeroResidual()))
register_modification(Modification("replace", ("self_attention", "cross_attention"), lambda m: True,
                                   lambda m: ZeroResidual()))
register_modification(Modification("remove", ("mid_block",), lambda m: True, lambda m: None))


def modifications_for(module: nn.Module, op_type: str, *, narrow: bool = True) -> list[str]:
    """Names of the modifications that apply to this operator (``narrow``: the optional ones too)."""
    return [name for (name, t), mod in MODIFICATIONS.items()
            if t == op_type and (narrow or not mod.optional) and mod.applies(module)]


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (root.get_submodule(parent_name) if parent_name else root), attr


def apply_modification(unet: nn.Module, op_name: str, op_type: str, modification: str,
                       params: dict | None = None) -> Callable[[], None]:
    """Swap the operator ``op_name`` for its stand-in (or modify it in place); returns a function that undoes it."""
    mod = MODIFICATIONS.get((modification, op_type))
    original = unet.get_submodule(op_name)
    if mod is None or not mod.applies(original):
        raise ValueError(f"{modification!r} does not apply to {op_name} ({op_type})")
    if mod.apply is not None:
        return mod.apply(unet, op_name, op_type, params or {})
    parent, attr = _parent(unet, op_name)
    setattr(parent, attr, mod.stand_in(original))  # None is allowed for a registered submodule (mid-block)

    def undo() -> None:
        setattr(parent, attr, original)

    return undo


from . import narrow as _narrow  # noqa: E402,F401  (registers ``narrow``: Torch-Pruning's channel groups)
