"""OpenVINO: IR (``openvino_model.xml`` + ``.bin``) converted from the ONNX graph; CPU, GPU, NPU, AUTO."""

from . import Backend, register_backend

OPENVINO = register_backend(Backend(
    name="openvino",
    graph_file="openvino_model.xml",
    owns=("openvino_model.",),
    session="edgeldm.runtimes.backends.openvino_session:OpenVINOSession",
    exporter="edgeldm.exporters.openvino_export:export_for_bundle",
    schemes="edgeldm.compressor.quantize.openvino_schemes",
    device_option="device",
    default_device="CPU",
    threads=True,
))
