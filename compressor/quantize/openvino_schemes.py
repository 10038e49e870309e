"""OpenVINO schemes through NNCF, on the bundle's IR.

* ``int8-weights`` / ``int4-weights``: weight-only compression (``nncf.compress_weights``); INT4 touches
  MatMul / embedding weights in groups of ``group_size`` (convolutions fall back to INT8 — NNCF's rule).
* ``hybrid`` (UNet): weights of MatMul / Embedding to INT8 weight-only, convolutions fully quantized with
  calibrated activations (optimum-intel's recipe for diffusion models, built from the same two NNCF calls);
  the other components get INT8 weights.
* ``w8a8`` (UNet): everything quantized with calibrated activations (``nncf.quantize``, transformer model
  type), SmoothQuant on MatMuls with ``smooth_quant_alpha``; other components INT8 weights.
"""

from __future__ import annotations

from pathlib import Path

from ..._lazy import require
from ...exporters.openvino_export import OV_BIN, OV_XML
from .schemes import QuantOptions, excluded, register_scheme


def _read(src: Path):
    ov = require("openvino")
    return ov.Core().read_model(str(src))


def _save(model, folder: Path) -> list[Path]:
    ov = require("openvino")
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / OV_XML), compress_to_fp16=False)
    return [folder / OV_XML, folder / OV_BIN]


def _ignored(model, options: QuantOptions, *, types: list[str] | None = None, names: list[str] | None = None):
    """An IgnoredScope of node types / names plus every node under an excluded prefix."""
    import nncf

    inside = [op.get_friendly_name() for op in model.get_ops() if excluded(op.get_friendly_name(), options.exclude)]
    names = sorted(set((names or []) + inside))
    return nncf.IgnoredScope(types=types or [], names=names, validate=False)


def _weights_int8(model, options: QuantOptions, *, ignore_types=None):
    import nncf

    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                 ignored_scope=_ignored(model, options, types=ignore_types))


@register_scheme("int8-weights", "openvino", "INT8 weight-only (all components)",
                 components=("text_encoder", "unet", "vae_decoder"))
def int8_weights(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    return _save(_weights_int8(_read(src), options), dst)


@register_scheme("int4-weights", "openvino", "INT4 weight-only in groups (MatMul/embeddings; convolutions INT8)",
                 components=("text_encoder", "unet", "vae_decoder"))
def int4_weights(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    import nncf

    model = _read(src)
    kwargs = dict(mode=nncf.CompressWeightsMode.INT4_SYM, group_size=options.group_size, ratio=1.0,
                  ignored_scope=_ignored(model, options), all_layers=False)
    try:  # layers whose channels are not a multiple of the group size: a smaller group, else INT8
        from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

        kwargs["advanced_parameters"] = AdvancedCompressionParameters(
            group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)
    except ImportError:
        pass
    return _save(nncf.compress_weights(model, **kwargs), dst)


def _weighted_matmuls_and_gathers(model) -> list[str]:
    """Names of MatMul nodes with a constant operand and Gather (embedding) nodes over a constant table."""
    names = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind not in ("MatMul", "Gather"):
            continue
        if any(_is_constant(op.input_value(i).get_node()) for i in range(op.get_input_size())
               if kind == "MatMul" or i == 0):
            names.append(op.get_friendly_name())
    return names


def _is_constant(node) -> bool:
    # through the decompression subgraph that weight compression inserts (Convert / Subtract / Multiply)
    for _ in range(4):
        if node.get_type_name() == "Constant":
            return True
        if node.get_type_name() not in ("Convert", "Subtract", "Multiply", "Reshape") or node.get_input_size() == 0:
            return False
        node = node.input_value(0).get_node()
    return False


def _calibration(calib, component: str, options: QuantOptions):
    from ...calibration.capture import nncf_dataset

    (start, count), _ = calib.split(component)
    n = min(count, options.calib_samples)
    return nncf_dataset(calib, component, start=start, limit=n, count=count), n


@register_scheme("hybrid", "openvino", "UNet: INT8 weights on MatMul/Embedding + INT8 convolutions with "
                 "calibrated activations; other components INT8 weights", components=("text_encoder", "unet",
                                                                                     "vae_decoder"),
                 calibrated=True)
def hybrid(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    import nncf

    model = _read(src)
    if component != "unet":
        return _save(_weights_int8(model, options), dst)
    model = _weights_int8(model, options, ignore_types=["Convolution"])
    dataset, n = _calibration(calib, component, options)
    model = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=n,
                          ignored_scope=_ignored(model, options, names=_weighted_matmuls_and_gathers(model)),
                          advanced_parameters=_smooth_quant(-1.0))
    return _save(model, dst)


def _smooth_quant(alpha: float):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    return AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))


@register_scheme("w8a8", "openvino", "UNet: INT8 weights and activations (SmoothQuant on MatMuls); other "
                 "components INT8 weights", components=("text_encoder", "unet", "vae_decoder"), calibrated=True)
def w8a8(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    import nncf

    model = _read(src)
    if component != "unet":
        return _save(_weights_int8(model, options), dst)
    dataset, n = _calibration(calib, component, options)
    model = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=n,
                          ignored_scope=_ignored(model, options),
                          advanced_parameters=_smooth_quant(options.smooth_quant_alpha))
    return _save(model, dst)


def node_names(graph: Path) -> list[str]:
    """The graph's operation names, for the sensitivity search's exclusions."""
    return [op.get_friendly_name() for op in require("openvino").Core().read_model(str(graph)).get_ops()]
