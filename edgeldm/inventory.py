"""The UNet's operator inventory and its MACs per denoising step, measured by a real counter.

The inventory is what pruning works on: every ResNet block, spatial transformer, transformer block,
self- / cross-attention, feed-forward, down/upsampler and mid-block, found by walking the module tree
(not from a table of SD's layout), so it holds for any UNet2DConditionModel, pruned ones included.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2 of matmuls, convolutions and
attention) run under ``FakeTensorMode``: shapes propagate, nothing is computed, so an SD v1.5 UNet at
512 px is counted in a fraction of a second, from real or meta weights alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ._lazy import require
from .io_spec import added_condition_shapes

#: (operator type, diffusers class) in match order; the first isinstance hit wins
OPERATOR_TYPES: list[tuple[str, str]] = []


def register_operator_type(op_type: str, class_path: str) -> None:
    if any(t == op_type for t, _ in OPERATOR_TYPES):
        raise ValueError(f"operator type {op_type!r} registered twice")
    if "." not in class_path:
        raise ValueError(f"operator class must be a dotted path, got {class_path!r}")
    OPERATOR_TYPES.append((op_type, class_path))


for _op_type, _class_path in [
    ("resnet", "diffusers.models.resnet.ResnetBlock2D"),
    ("transformer", "diffusers.models.transformers.transformer_2d.Transformer2DModel"),
    ("transformer_block", "diffusers.models.attention.BasicTransformerBlock"),
    ("attention", "diffusers.models.attention_processor.Attention"),  # split into self / cross below
    ("feed_forward", "diffusers.models.attention.FeedForward"),
    ("downsampler", "diffusers.models.downsampling.Downsample2D"),
    ("upsampler", "diffusers.models.upsampling.Upsample2D"),
    ("mid_block", "diffusers.models.unets.unet_2d_blocks.UNetMidBlock2DCrossAttn"),
]:
    register_operator_type(_op_type, _class_path)


@dataclass
class Operator:
    name: str  # qualified module name inside the UNet
    type: str
    parameters: int
    macs: int | None = None  # per denoising step, batch 1
    mac_share: float | None = None  # fraction of the UNet's MACs

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_types() -> list[tuple[str, type]]:
    import importlib

    resolved = []
    for op_type, path in OPERATOR_TYPES:
        module_name, cls_name = path.rsplit(".", 1)
        resolved.append((op_type, getattr(importlib.import_module(module_name), cls_name)))
    return resolved


def operator_type(module, types: list[tuple[str, type]] | None = None) -> str | None:
    for op_type, cls in types or _resolve_types():
        if isinstance(module, cls):
            if op_type == "attention":
                return "cross_attention" if getattr(module, "is_cross_attention", False) else "self_attention"
            return op_type
    return None


def operator_inventory(unet) -> list[Operator]:
    """Every prunable operator of ``unet``, in module order."""
    types = _resolve_types()
    ops = []
    for name, module in unet.named_modules():
        op_type = operator_type(module, types)
        if op_type is not None:
            ops.append(Operator(name, op_type, sum(p.numel() for p in module.parameters())))
    return ops


@dataclass(frozen=True)
class MacCount:
    total: int
    per_module: dict[str, int]  # qualified module name ("" = whole model) -> MACs


def unet_example_inputs(unet, height: int, width: int, *, vae_scale_factor: int = 8, batch: int = 1,
                        sequence_length: int = 77, device=None) -> dict:
    """Inputs of one denoising step at an image size (latents are ``size / vae_scale_factor``), on ``device``
    (default: the CPU) — SDXL's added conditions nested under ``added_cond_kwargs``, as the UNet takes them."""
    torch = require("torch")
    cfg = unet.config
    if height % vae_scale_factor or width % vae_scale_factor:
        from .errors import EdgeLDMError

        raise EdgeLDMError(f"height and width must be multiples of {vae_scale_factor} (the VAE's downsampling "
                           f"factor), got {height}x{width}")
    inputs = {
        "sample": torch.zeros(batch, cfg.in_channels, height // vae_scale_factor, width // vae_scale_factor),
        "timestep": torch.full((batch,), 999, dtype=torch.long),
        "encoder_hidden_states": torch.zeros(batch, sequence_length, cfg.cross_attention_dim),
    }
    if getattr(cfg, "time_cond_proj_dim", None):
        inputs["timestep_cond"] = torch.zeros(batch, cfg.time_cond_proj_dim)
    added = added_condition_shapes(cfg)
    if added:  # SDXL: the pooled text embedding and the micro-conditioning time_ids
        inputs["added_cond_kwargs"] = {name: torch.zeros(batch, width) for name, width in added.items()}
    if device is not None:
        from torch.utils._pytree import tree_map

        inputs = tree_map(lambda t: t.to(device), inputs)
    return inputs


REAL_COUNT_MAX_PARAMS = 50_000_000


def count_macs(model, inputs: dict, *, args: tuple = ()) -> MacCount:
    """MACs of ``model(*args, **inputs)``, per module; shapes only matter, so large models are traced, not run."""
    torch = require("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._pytree import tree_map
    from torch.utils.flop_counter import FlopCounterMode

    # inputs follow the weights: a meta model (``edgeldm info`` builds one) gets meta inputs
    first = next(model.parameters(), None)
    device = first.device if first is not None else None  # a stand-in without weights takes inputs as they are
    args, inputs = tree_map(lambda v: v.to(device) if device is not None and isinstance(v, torch.Tensor) else v,
                            (tuple(args), dict(inputs)))
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_cpu_attention_formulas())
    # The counter reads shapes only. Fake tensors skip the arithmetic but cost ~1 s of tracing per pass,
    # which a small real model computes ten times faster (tiny: 0.11 vs 1.1 s; pruning counts once per
    # candidate); a large or meta model is traced, and so is one in training mode, whose dropout would draw
    # from torch's global generator and make counting a side effect.
    small = sum(p.numel() for p in model.parameters()) <= REAL_COUNT_MAX_PARAMS
    if (device is None or device.type != "meta") and small and not model.training:
        with torch.no_grad(), counter:
            model(*args, **inputs)
    else:
        with FakeTensorMode(allow_non_fake_inputs=True) as fake_mode, torch.no_grad():
            fake_args, fake_inputs = tree_map(
                lambda v: fake_mode.from_tensor(v) if isinstance(v, torch.Tensor) else v, (args, inputs))
            with counter:
                model(*fake_args, **fake_inputs)
    per_module: dict[str, int] = {}
    for key, by_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        # keys are "<RootClass>.<qualified.name>"; the root itself is "<RootClass>"
        name = key.split(".", 1)[1] if "." in key else ""
        per_module[name] = sum(by_op.values()) // 2
    return MacCount(total=counter.get_total_flops() // 2, per_module=per_module)


def _cpu_attention_formulas() -> dict:
    """torch counts SDPA's CUDA kernels but not the CPU flash kernel that a CPU model runs (really or traced
    with fake tensors): without this its attention products went uncounted, while a meta model (``edgeldm
    info``), which dispatches SDPA differently, had them."""
    torch = require("torch")
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_counter.flop_registry:  # a torch that counts it already
        return {}

    def sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: sdpa}  # FlopCounterMode hands it shapes, as it does its own formulas


@dataclass(frozen=True)
class CallShapes:
    """The arguments one module was called with, tensors kept as (shape, dtype): enough to count it again."""
    args: tuple
    kwargs: dict

    def materialize(self, device) -> tuple[tuple, dict]:
        torch = require("torch")
        from torch.utils._pytree import tree_map

        return tree_map(lambda v: torch.zeros(v[1], dtype=v[2], device=device)
                        if isinstance(v, tuple) and len(v) == 3 and v[0] == "tensor" else v,
                        (self.args, self.kwargs), is_leaf=lambda v: isinstance(v, tuple) and v[:1] == ("tensor",))


def count_macs_with_calls(model, inputs: dict, names: list[str]) -> tuple[MacCount, dict[str, CallShapes]]:
    """:func:`count_macs` of ``model`` plus the call of each named submodule during that pass.

    A submodule called more than once in the pass is left out of the calls (one call's shapes would not
    account for its count).
    """
    torch = require("torch")
    from torch.utils._pytree import tree_map

    def spec(v):
        return ("tensor", tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v

    calls: dict[str, list[CallShapes]] = {n: [] for n in names}
    hooks = []
    for name in names:
        def hook(_module, args, kwargs, name=name):
            calls[name].append(CallShapes(*tree_map(spec, (tuple(args), dict(kwargs)))))
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        macs = count_macs(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return macs, {n: c[0] for n, c in calls.items() if len(c) == 1}


def unet_inventory_with_macs(unet, height: int, width: int, *, vae_scale_factor: int = 8,
                             sequence_length: int = 77) -> tuple[list[Operator], MacCount]:
    ops = operator_inventory(unet)
    macs = count_macs(unet, unet_example_inputs(unet, height, width, vae_scale_factor=vae_scale_factor,
                                                sequence_length=sequence_length))
    for op in ops:
        op.macs = macs.per_module.get(op.name, 0)
        op.mac_share = op.macs / macs.total if macs.total else 0.0
    return ops, macs
