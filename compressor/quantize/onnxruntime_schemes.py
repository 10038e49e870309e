"""ONNX Runtime schemes (``onnxruntime.quantization``), on the bundle's ONNX graphs.

* ``qdq-static``: QDQ graph with calibrated activations (MinMax / Percentile / Entropy), per-channel INT8
  weights; UNet and text encoder — the VAE decoder stays fp32 by default (its outputs are pixels, and
  8-bit activations band them visibly).
* ``dynamic``: INT8 weights, activations quantized at run time per tensor (no calibration).
* ``qnn-a16w8``: graphs for Qualcomm's NPU (QNN HTP): static shapes, QNN's preprocessing, QDQ with 16-bit
  activations and 8-bit weights (``onnxruntime.quantization.execution_providers.qnn``); validated here on the
  CPU provider — no QNN device on these machines.
* ``int8-weights`` / ``int4-weights``: weight-only — a smaller download, fp32 arithmetic. INT8 weights sit
  behind ``DequantizeLinear`` (per output channel); INT4 MatMul / embedding weights are ORT's blocked
  ``MatMulNBits`` / ``GatherBlockQuantized`` (its ``MatMulNBitsQuantizer``; embedding scales fp16),
  convolutions INT8 as OpenVINO's int4 mode does. The manifest asks the runtime for ``session.disable_quant_qdq`` so ORT folds the
  DequantizeLinear nodes into fp32 weights once at load; without it ORT keeps them for QDQ fusion and
  dequantizes on every call (tiny VAE decoder: 4.6 vs 3.4 ms, folded as fast as fp32).

``quant_pre_process`` runs ONNX shape inference first without the symbolic pass, which fails on these
graphs (FINDINGS). Calibration data stream from the capture (``CalibrationDataReader`` protocol).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ...exporters.onnx_export import ONNX_DATA_FILE
from .schemes import QuantOptions, excluded, register_scheme

ONNX_FILE = "model.onnx"
_CALIBRATE = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# op types static QDQ quantizes by default: the compute-heavy ones. Quantizing the element-wise ops between
# them too (Add, Mul, Softmax, ...) took the tiny text encoder to 13 dB (its causal-mask Add spans -inf..0, so
# one 8-bit range cannot hold it) and the UNet from 42.7 to 26.3 dB; --op-types widens it per model.
STATIC_OPS = ("Conv", "MatMul", "Gemm")
DYNAMIC_OPS = ("MatMul", "Gemm", "Conv")
WEIGHT_OPS = ("Conv", "MatMul", "Gemm", "Gather")
FOLD_DQ_AT_LOAD = (("session.disable_quant_qdq", "1"),)
MIN_WEIGHT_ELEMENTS = 256  # smaller weights (1x1 latent convs, ...) stay float: scales would outweigh them


def _large(src: Path) -> bool:
    return (src.parent / ONNX_DATA_FILE).is_file()


def _preprocess(src: Path, scratch: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = scratch / "pre.onnx"
    quant_pre_process(str(src), str(out), skip_symbolic_shape=True, skip_optimization=_large(src),
                      save_as_external_data=_large(src))
    return out


def _excluded_nodes(model_path: Path, options: QuantOptions) -> list[str]:
    if not options.exclude:
        return []
    import onnx

    return _excluded_nodes_of(onnx.load(str(model_path), load_external_data=False), options)


def _excluded_nodes_of(model, options: QuantOptions) -> list[str]:
    return [n.name for n in model.graph.node if excluded(n.name, options.exclude)]


def _save_model(model, dst: Path, large: bool) -> list[Path]:
    """An in-memory graph into ``dst`` in the bundle's layout: ``model.onnx``, and for a large graph one
    ``model.onnx_data`` beside it (optimum's convention too)."""
    import onnx

    dst.mkdir(parents=True, exist_ok=True)
    target = dst / ONNX_FILE
    onnx.save_model(model, str(target), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=ONNX_DATA_FILE, size_threshold=1024)
    return [target, dst / ONNX_DATA_FILE] if large else [target]


def _write(tmp_out: Path, dst: Path, large: bool) -> list[Path]:
    """A quantizer's output file into ``dst``: moved as it is, or — large, since the quantizer names its
    external data "<model>.data" — re-saved in the bundle's layout."""
    if not large:
        dst.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_out), dst / ONNX_FILE)
        return [dst / ONNX_FILE]
    import onnx

    return _save_model(onnx.load(str(tmp_out), load_external_data=True), dst, large)


@register_scheme("qdq-static", "onnx", "INT8 QDQ, calibrated activations, per-channel weights (UNet, text "
                 "encoder; VAE decoder fp32)", calibrated=True)
def qdq_static(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ...calibration.capture import OnnxCalibrationReader

    (start, count), _ = calib.split(component)
    reader = OnnxCalibrationReader(calib, component, start=start, limit=min(count, options.calib_samples),
                                   count=count)
    with tempfile.TemporaryDirectory(prefix="edgeldm-qdq-") as scratch:
        scratch = Path(scratch)
        pre = _preprocess(src, scratch)
        out = scratch / "out" / ONNX_FILE
        out.parent.mkdir()
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(options.op_types or STATIC_OPS), per_channel=options.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_excluded_nodes(pre, options),
                        calibrate_method=getattr(CalibrationMethod, _CALIBRATE[options.calibrate_method]),
                        use_external_data_format=_large(src),
                        # symmetric weights let ORT's CPU kernels use the faster s8s8 / u8s8 paths
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                       "CalibMovingAverage": True})
        # (not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the collected outputs at that count
        # without folding them into the ranges. ORT holds every intermediate tensor of every calibration
        # input, GBs per input for an SD UNet: keep options.calib_samples small there.)
        return _write(out, dst, _large(src))


@register_scheme("dynamic", "onnx", "INT8 weights, activations quantized at run time (no calibration)")
def dynamic(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="edgeldm-dyn-") as scratch:
        scratch = Path(scratch)
        pre = _preprocess(src, scratch)
        out = scratch / "out" / ONNX_FILE
        out.parent.mkdir()
        quantize_dynamic(str(pre), str(out), op_types_to_quantize=list(options.op_types or DYNAMIC_OPS),
                         per_channel=options.per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=_excluded_nodes(pre, options), use_external_data_format=_large(src))
        return _write(out, dst, _large(src))


def _weight_axis(node, name_index: int) -> int | None:
    """The output-channel axis of a node's constant weight (one scale per channel along it), or None when
    the input is not a weight. Gather's table is quantized per row: each token keeps its own scale."""
    op, i = node.op_type, name_index
    if op == "Conv" and i == 1:
        return 0
    if op == "MatMul" and i == 1:
        return -1
    if op == "Gemm" and i == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else -1
    if op == "Gather" and i == 0:
        return 0
    return None


def _dequantize_linear_weights(model, op_types, exclude: tuple[str, ...], per_channel: bool = True) -> int:
    """Replace the float weights of ``op_types`` by symmetric INT8 + scale (per output channel, or one per
    tensor) behind a DequantizeLinear node (in place); returns how many. ORT's quantizers quantize weights only together
    with activations (static / dynamic) or, weight-only, MatMul and Gather alone: convolutions need this."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    axes: dict[str, set] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in inits:
                axis = _weight_axis(node, i) if node.op_type in op_types and not excluded(node.name, exclude) \
                    else None
                axes.setdefault(name, set()).add(axis)
    dq_nodes, count = [], 0
    for name, found in axes.items():
        if len(found) != 1 or None in found or name in graph_inputs:
            continue  # not a weight everywhere it is used, or used with different layouts
        w = numpy_helper.to_array(inits[name])
        if w.dtype.kind != "f" or w.ndim < 2 or w.size < MIN_WEIGHT_ELEMENTS:
            continue
        axis = next(iter(found)) % w.ndim
        reduce = tuple(d for d in range(w.ndim) if d != axis) if per_channel else None
        scale = np.abs(w.astype(np.float32)).max(axis=reduce, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        scale = scale.reshape(-1) if per_channel else scale.reshape(())
        graph.initializer.extend([numpy_helper.from_array(q, name + "_int8"),
                                  numpy_helper.from_array(scale.astype(w.dtype), name + "_scale")])
        dq_nodes.append(helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale"], [name],
                                         name=name + "_DequantizeLinear", **({"axis": axis} if per_channel else {})))
        count += 1
    nodes = dq_nodes + list(graph.node)  # a DequantizeLinear reads initializers only: first is topological
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def _half_gather_scales(model) -> int:
    """fp16 scales for GatherBlockQuantized tables, a Cast to fp32 after each (in place); returns how many.

    A token embedding in INT4 groups of 32 carries one fp32 scale per 32 values: a fifth of its bytes (tiny:
    395 of 1 976 KB). The op takes fp16 scales (its output then is fp16); MatMulNBits cannot — its scales must
    have its input's type. On tiny's text encoder the outputs move by 90 dB PSNR, far below the INT4 error.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        nodes.append(node)
        scales = inits.get(node.input[2]) if node.op_type == "GatherBlockQuantized" else None
        if scales is None or scales.data_type != TensorProto.FLOAT:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(scales).astype(np.float16), scales.name)
        scales.CopyFrom(half)
        out = node.output[0]
        node.output[0] = out + "_fp16"
        nodes.append(helper.make_node("Cast", [out + "_fp16"], [out], to=TensorProto.FLOAT, name=node.name + "_fp32"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


@register_scheme("int8-weights", "onnx", "INT8 weight-only per channel, fp32 arithmetic (all components; weights "
                 "dequantized once at load)", components=("text_encoder", "unet", "vae_decoder"),
                 session_config=FOLD_DQ_AT_LOAD)
def int8_weights(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    _dequantize_linear_weights(model, tuple(options.op_types or WEIGHT_OPS), options.exclude, options.per_channel)
    return _save_model(model, dst, _large(src))


@register_scheme("int4-weights", "onnx", "INT4 weight-only in groups (MatMulNBits / GatherBlockQuantized: MatMuls "
                 "and embeddings; convolutions INT8)", session_config=FOLD_DQ_AT_LOAD)
def int4_weights(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    import logging

    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    ops = tuple(options.op_types or WEIGHT_OPS)
    model = onnx.load(str(src), load_external_data=True)
    blocked = tuple(o for o in ("MatMul", "Gather") if o in ops)
    if blocked:
        config = DefaultWeightOnlyQuantConfig(block_size=options.group_size, is_symmetric=True,
                                              quant_format=QuantFormat.QOperator, op_types_to_quantize=blocked,
                                              quant_axes=(("MatMul", 0), ("Gather", 1)))
        # it warns that it lifts the opset to 21 for the int4 type: expected, and the graph is validated below
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
        quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=_excluded_nodes_of(model, options),
                                         algo_config=config)
        quantizer.process()
        model = quantizer.model.model
        _half_gather_scales(model)
    _dequantize_linear_weights(model, tuple(o for o in ops if o not in blocked), options.exclude,
                               options.per_channel)
    return _save_model(model, dst, _large(src))


def node_names(graph: Path) -> list[str]:
    """The graph's node names, for the sensitivity search's exclusions."""
    import onnx

    return [n.name for n in onnx.load(str(graph), load_external_data=False).graph.node]


def _static_inputs(model_path: Path) -> list[str]:
    """The graph inputs with a symbolic dimension (QNN compiles fixed shapes only)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [i.name for i in graph.input
            if any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)]


@register_scheme("qnn-a16w8", "onnx", "Qualcomm NPU (QNN HTP) layout: QDQ with 16-bit activations and 8-bit weights "
                 "after QNN's graph preprocessing (static bundles; validated here on ONNX Runtime's CPU provider, no "
                 "QNN device)", calibrated=True,
                 # the text encoder's causal mask (-inf..0) defeats even 16-bit activations: measured on tiny-random,
                 # below the 52 dB floor until the sensitivity search had kept every layer float
                 components=("unet",))
def qnn_a16w8(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    """onnxruntime's QNN tooling (``onnxruntime.quantization.execution_providers.qnn``): ``qnn_preprocess_model``
    (LayerNorm fusion, the graph rewrites the HTP wants), then ``get_qnn_qdq_config`` with uint16 activations and
    uint8 weights — the mix Qualcomm recommends where 8-bit activations lose too much — and ``quantize``. The
    HTP itself cannot run here: the parity numbers come from the CPU provider, which executes the same QDQ graph."""
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from ...calibration.capture import OnnxCalibrationReader
    from ...errors import EdgeLDMError

    dynamic_inputs = _static_inputs(src)
    if dynamic_inputs:
        raise EdgeLDMError(f"{component}: qnn-a16w8 needs fixed shapes; {', '.join(dynamic_inputs)} "
                           f"{'has' if len(dynamic_inputs) == 1 else 'have'} symbolic dimensions",
                           hint="export with --static --height H --width W (QNN compiles one shape)")
    (start, count), _ = calib.split(component)
    reader = OnnxCalibrationReader(calib, component, start=start, limit=min(count, options.calib_samples),
                                   count=count)
    large = _large(src)
    with tempfile.TemporaryDirectory(prefix="edgeldm-qnn-") as scratch:
        scratch = Path(scratch)
        pre = scratch / "pre.onnx"
        model = pre if qnn_preprocess_model(str(src), str(pre), fuse_layernorm=True, save_as_external_data=large,
                                            all_tensors_to_one_file=True) else src
        config = get_qnn_qdq_config(str(model), reader, activation_type=QuantType.QUInt16,
                                    weight_type=QuantType.QUInt8, per_channel=options.per_channel,
                                    op_types_to_quantize=list(options.op_types) if options.op_types else None,
                                    nodes_to_exclude=_excluded_nodes(model, options) or None)
        config.use_external_data_format = large
        out = scratch / "out" / ONNX_FILE
        out.parent.mkdir()
        quantize(str(model), str(out), config)
        return _write(out, dst, large)
