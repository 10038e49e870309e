"""ONNX Runtime Mobile: ``model.ort`` (ONNX Runtime's flatbuffer format, optimisations saved) and the operator and
type list a reduced-size build of ONNX Runtime takes. Otherwise the ONNX backend: ONNX Runtime loads ``.ort``
files with the same session, devices and options as ``.onnx`` ones. No quantization schemes yet: a quantized
``.ort`` graph (the ONNX schemes' output through the same converter) is not built."""

from dataclasses import replace

from . import register_backend
from .onnxruntime import ONNX

ORT_MOBILE = register_backend(replace(
    ONNX,
    name="ort_mobile",
    graph_file="model.ort",
    owns=("model.ort", "model.required_operators"),
    exporter="edgeldm.exporters.ort_mobile_export:export_for_bundle",
    schemes=None,
))
