"""ONNX Runtime's transformer optimizer on an exported graph (``edgeldm export --onnx-fusion``).

What ONNX Runtime's own Stable Diffusion examples run on their graphs: ``onnxruntime.transformers.optimizer``
with the component's model type (``unet``, ``clip``, ``vae``) fuses attention into ``Attention`` /
``MultiHeadAttention``, layer norms into ``SkipLayerNormalization``, GELU's Erf pattern into ``Gelu`` — contrib
ops of the ``com.microsoft`` domain with CPU kernels. The fusions whose ops have GPU kernels only (GroupNorm,
NHWC convolution, BiasSplitGelu, packed QKV / KV, BiasAdd) are switched off: the graph must run on the CPU EP
too. Attention fuses only in the plain form (diffusers' ``AttnProcessor``: a constant scale, MatMul - Softmax -
MatMul on (batch x heads, tokens, head_dim)), not in the exported ``scaled_dot_product_attention`` (its scale
is computed from shapes), so the module is exported with :class:`~edgeldm.exporters.attention_slicing.
MatMulAttnProcessor` — diffusers' ``AttnProcessor`` would do too, but its ``baddbmm`` on an empty tensor
becomes a constant of batch x heads x tokens^2 floats in a static graph (6x the file on tiny-random, 1 GB per
layer at 512 px). The fused graph is ONNX Runtime's alone (OpenVINO and ORT Mobile convert the plain graph;
the quantizers refuse it); it is validated against torch like any other.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

from .._lazy import require
from ..errors import EdgeLDMError

logger = logging.getLogger("edgeldm")

#: the optimizer's model type per component
MODEL_TYPES = {"unet": "unet", "text_encoder": "clip", "vae_decoder": "vae", "vae_encoder": "vae"}
#: fusions into ops that only ONNX Runtime's GPU providers implement
_GPU_ONLY = ("enable_nhwc_conv", "enable_group_norm", "enable_skip_group_norm", "enable_bias_splitgelu",
             "enable_packed_qkv", "enable_packed_kv", "enable_bias_add")
#: the contrib ops a fusion writes (what the manifest counts)
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "Gelu", "BiasGelu",
             "FastGelu")


def fuse_onnx(source: Path, folder: Path, component: str) -> tuple[list[Path], dict]:
    """Optimize the graph ``source`` for ``component`` into ``folder/model.onnx``; returns its files and what
    fused (``{"optimizer", "model_type", "ops": {op: count}}``)."""
    require("onnxruntime")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from .onnx_export import ONNX_FILE, PROTOBUF_LIMIT

    model_type = MODEL_TYPES.get(component)
    if model_type is None:
        raise EdgeLDMError(f"--onnx-fusion: no ONNX Runtime model type for {component!r}")
    options = FusionOptions(model_type)
    for name in _GPU_ONLY:
        setattr(options, name, False)
    weights = sum(f.stat().st_size for f in Path(source).parent.glob(f"{Path(source).name}*"))
    if weights > PROTOBUF_LIMIT:  # onnx's shape inference serializes the model in memory: 2 GB at most
        options.enable_shape_inference = False
    if model_type == "vae":
        # one attention layer in the mid-block, and onnxruntime 1.32's VAE attention fusion reads its head count
        # with int() of a 1-element array, which numpy 2 refuses
        options.enable_attention = False
    try:
        # opt_level 0: only the transformer fusions; ONNX Runtime applies its graph optimizations at load anyway
        optimized = optimize_model(str(source), model_type=model_type, num_heads=0, hidden_size=0, opt_level=0,
                                   use_gpu=False, optimization_options=options)
    except Exception as exc:  # the optimizer's pattern matchers raise whatever they hit
        raise EdgeLDMError(f"ONNX Runtime's transformer optimizer failed on {component}: {type(exc).__name__}: {exc}",
                           hint="export without --onnx-fusion") from exc
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{ONNX_FILE}*"):
        stale.unlink()
    # beyond protobuf's 2 GB the weights go to one data file beside the graph (the optimizer names it model.onnx.data)
    large = sum(len(t.raw_data) for t in optimized.model.graph.initializer) > PROTOBUF_LIMIT - 64 * 2**20
    optimized.save_model_to_file(str(folder / ONNX_FILE), use_external_data_format=large,
                                 all_tensors_to_one_file=True)
    counts = collections.Counter(n.op_type for n in optimized.model.graph.node if n.op_type in FUSED_OPS)
    fused = {op: counts[op] for op in FUSED_OPS if counts[op]}
    logger.debug("%s: ONNX Runtime fusions %s", component, fused)
    return sorted(p for p in folder.iterdir() if p.name.startswith(ONNX_FILE)), \
        {"optimizer": "onnxruntime.transformers.optimizer", "model_type": model_type, "ops": fused}
