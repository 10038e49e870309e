"""The pruning plan: a replayable JSON log beside the pruned UNet's safetensors weights.

``unet/edgeldm_pruning.json`` records the base architecture (the UNet ``config.json``, unchanged) and
the operations in the order they were applied. Loading rebuilds the base architecture without
allocating weights, replays the operations, then loads the surviving weights strictly — no pickles,
no custom classes in the checkpoint. ``load_pipeline`` does this for any folder whose ``unet/`` holds
a plan, so a pruned model loads, exports and runs like any other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CheckpointError

PLAN_FILE = "edgeldm_pruning.json"
PLAN_FORMAT = "edgeldm.pruning/1"


@dataclass(frozen=True)
class Operation:
    op: str  # qualified module name in the UNet
    type: str  # operator type from the inventory
    modification: str  # "remove" | "replace" | "narrow"
    params: dict = field(default_factory=dict)  # narrow: {"keep": fraction, "idxs": channels removed}

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.params:
            d.pop("params")
        return d


@dataclass
class PruningPlan:
    base: str  # the model the plan was applied to (zoo name or absolute folder)
    operations: list[Operation] = field(default_factory=list)
    report: dict = field(default_factory=dict)  # MACs / params before and after, selection settings

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "base": self.base, "operations": [o.to_dict() for o in self.operations],
                "report": self.report}

    @classmethod
    def from_dict(cls, data: dict, source: str = "plan") -> "PruningPlan":
        if data.get("format") != PLAN_FORMAT:
            raise CheckpointError(f"{source}: not an edgeldm pruning plan (format {data.get('format')!r}, "
                                  f"expected {PLAN_FORMAT!r})")
        try:
            ops = [Operation(o["op"], o["type"], o["modification"], dict(o.get("params") or {}))
                   for o in data["operations"]]
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: malformed operation list ({exc})") from None
        return cls(base=data.get("base", ""), operations=ops, report=data.get("report", {}))


def apply_plan(unet, plan: PruningPlan) -> None:
    from .patches import apply_modification

    for o in plan.operations:
        try:
            apply_modification(unet, o.op, o.type, o.modification, o.params)
        except (ValueError, AttributeError) as exc:
            raise CheckpointError(f"cannot replay pruning operation {o.modification} {o.op}: {exc}",
                                  hint="the plan was written for another UNet architecture") from None


def read_plan(unet_folder: Path) -> PruningPlan | None:
    f = Path(unet_folder) / PLAN_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{f} is not valid JSON: {exc}") from None
    return PruningPlan.from_dict(data, str(f))


def pruned_unet_skeleton(unet_folder: Path, plan: PruningPlan):
    """The base architecture from ``config.json`` on the meta device, with the plan replayed."""
    from diffusers import UNet2DConditionModel

    from ..zoo.random_init import empty_weights

    config = UNet2DConditionModel.load_config(str(unet_folder))
    with empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    apply_plan(unet, plan)
    return unet


def load_pruned_unet(unet_folder: Path, plan: PruningPlan, *, dtype=None):
    """Rebuild a pruned UNet: skeleton + plan + the surviving weights (strict: every key, every shape)."""
    import torch
    from safetensors.torch import load_file

    unet = pruned_unet_skeleton(unet_folder, plan)
    files = sorted(Path(unet_folder).glob("*.safetensors"))
    if len(files) != 1:
        raise CheckpointError(f"{unet_folder} must hold exactly one .safetensors file for a pruned UNet, "
                              f"found {len(files)}")
    state = load_file(str(files[0]))
    # as diffusers' from_pretrained does: half-precision files load as fp32 unless a dtype is asked for
    # (``assign=True`` would otherwise keep the file's dtype, and e.g. an fp16 pruned UNet meet an fp32 pipeline)
    target = dtype if dtype is not None else torch.get_default_dtype()
    state = {k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}
    try:
        unet.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {files[0]} do not fit the pruned architecture: {exc}") from None
    return unet.eval()
