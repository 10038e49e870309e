"""ONNX Runtime Mobile: ``model.ort`` (ONNX Runtime's flatbuffer format, optimisations saved) and the operator and
type list a reduced-size build of ONNX Runtime takes. The same session class runs it: ONNX Runtime loads
``.ort`` files as it loads ``.onnx`` ones."""

from . import Backend, register_backend

ORT_MOBILE = register_backend(Backend(
    name="ort_mobile",
    graph_file="model.ort",
    owns=("model.ort", "model.required_operators"),
    session="edgeldm.runtimes.backends.onnxruntime_session:OnnxRuntimeSession",
    exporter="edgeldm.exporters.ort_mobile_export:export_for_bundle",
    device_option="providers",
    default_device="CPUExecutionProvider",
    threads=True,
    low_memory_options=(("memory_arena", False),),
))
