"""ONNX Runtime schemes (``onnxruntime.quantization``), on the bundle's ONNX graphs.

* ``qdq-static``: QDQ graph with calibrated activations (MinMax / Percentile / Entropy), per-channel INT8
  weights; UNet and text encoder — the VAE decoder stays fp32 by default (its outputs are pixels, and
  8-bit activations band them visibly).
* ``dynamic``: INT8 weights, activations quantized at run time per tensor (no calibration).

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

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if excluded(n.name, options.exclude)]


def _write(tmp_out: Path, dst: Path, large: bool) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / ONNX_FILE
    if not large:
        shutil.move(str(tmp_out), target)
        return [target]
    # the quantizer names its external data "<model>.data"; the bundle's convention (and optimum's) is one
    # "model.onnx_data" beside "model.onnx"
    import onnx

    model = onnx.load(str(tmp_out), load_external_data=True)
    onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=ONNX_DATA_FILE, size_threshold=1024)
    return [target, dst / ONNX_DATA_FILE]


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
