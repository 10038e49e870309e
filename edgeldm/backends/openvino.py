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
    # f32 pinned by default (parity); bf16 where the CPU has it (AVX512_BF16, AMX) trades ~50 dB image parity for
    # speed, f16 the same on GPUs (OpenVINO computes in f32 where the device has neither)
    inference_precisions=("f32", "bf16", "f16"),
))
