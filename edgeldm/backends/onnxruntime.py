"""ONNX Runtime: ``model.onnx`` (+ ``model.onnx_data`` past 2 GB), execution providers as devices."""

from . import Backend, register_backend

ONNX = register_backend(Backend(
    name="onnx",
    graph_file="model.onnx",
    owns=("model.onnx",),
    session="edgeldm.runtimes.backends.onnxruntime_session:OnnxRuntimeSession",
    exporter="edgeldm.exporters.onnx_export:export_for_bundle",
    schemes="edgeldm.compressor.quantize.onnxruntime_schemes",
    device_option="providers",
    default_device="CPUExecutionProvider",
    threads=True,
    # the CPU arena keeps every graph's largest activations for reuse; off, a call's memory goes back after it
    low_memory_options=(("memory_arena", False),),
))
