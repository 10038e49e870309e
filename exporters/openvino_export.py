"""ONNX graph (or torch module) -> OpenVINO IR (``openvino_model.xml`` / ``.bin``)."""

from __future__ import annotations

from pathlib import Path

from .._lazy import require
from ..io_spec import ComponentIO
from .dummy_inputs import example_inputs

OV_XML = "openvino_model.xml"
OV_BIN = "openvino_model.bin"


def export_openvino(source, io: ComponentIO, folder: Path, *, precision: str = "fp32",
                    vocab_size: int = 49408) -> list[Path]:
    """Convert ``source`` — a path to an ONNX file (faster, and the same graph) or a torch module.

    A static ``io`` reshapes the model to fixed shapes; ``precision="fp16"`` compresses weights to fp16
    (OpenVINO computes in the device's preferred precision either way).
    """
    ov = require("openvino")
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source, (str, Path)):
        model = ov.convert_model(str(source))
    else:
        torch = require("torch")
        inputs = example_inputs(io, vocab_size=vocab_size)
        example = tuple(torch.from_numpy(inputs[n]) for n in io.input_names)
        with torch.no_grad():
            model = ov.convert_model(source, example_input=example)
        for port, name in zip(model.inputs, io.input_names):
            port.get_tensor().set_names({name})
        for port, name in zip(model.outputs, io.output_names):
            port.get_tensor().set_names({name})
    if io.is_static:
        model.reshape({t.name: ov.PartialShape(list(t.shape)) for t in io.inputs})
    xml = folder / OV_XML
    ov.save_model(model, str(xml), compress_to_fp16=(precision == "fp16"))
    return [xml, folder / OV_BIN]


def export_for_bundle(job) -> list[Path]:
    """The OpenVINO backend's exporter (``edgeldm.backends.openvino``): converts the component's ONNX graph."""
    return export_openvino(job.onnx_graph(), job.io, job.folder, precision=job.precision, vocab_size=job.vocab_size)
