"""Core ML: an ML program package per component (fixed shapes); converts anywhere, predicts on macOS only."""

from . import Backend, register_backend

COREML = register_backend(Backend(
    name="coreml",
    graph_file="model.mlpackage",
    owns=("model.mlpackage/", "model_chunk"),  # model_chunk<i>.mlpackage/: a graph split for the Neural Engine
    first_part="model_chunk1.mlpackage",
    session="edgeldm.runtimes.backends.coreml_session:CoreMLSession",
    exporter="edgeldm.exporters.coreml_export:export_for_bundle",
    schemes="edgeldm.compressor.quantize.coreml_schemes",
    device_option="compute_units",
    default_device="ALL",
    needs_static=True,
    runs_on=("darwin",),
    runs_on_hint="Core ML prediction needs macOS",
))
