"""What a backend's exporter gets: one component's torch module and where its graph goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io_spec import ComponentIO


@dataclass
class ExportJob:
    module: object  # the component's torch module (exporters.torch_modules)
    io: ComponentIO
    folder: Path  # the component's folder in the bundle being written
    scratch: Path  # for intermediate graphs that do not ship
    precision: str
    vocab_size: int
    opset: int
    coreml_target: str
    coreml_attention: str = "original"  # exporters/coreml_export.py: ATTENTION
    coreml_chunks: int | None = None  # the UNet's Core ML chunks (None: as the Neural Engine's limit needs)
    onnx_fusion: bool = False  # ONNX Runtime's transformer fusions in the bundle's ONNX graphs (onnx_fusion.py)
    onnx: list[Path] | None = field(default=None)  # the ONNX graph's files, once one was exported
    #: backend -> keys its exporter adds to the component's manifest entry for that backend (Core ML ``chunks``)
    entries: dict = field(default_factory=dict)

    def onnx_graph(self) -> Path:
        """The component's ONNX graph: the bundle's when ONNX is exported too (it comes first), else one in
        the scratch folder — converters such as OpenVINO's read it (faster than tracing, and the same graph)."""
        if self.onnx is None:
            from .onnx_export import export_onnx

            self.onnx = export_onnx(self.module, self.io, self.scratch / self.io.component, opset=self.opset,
                                    precision=self.precision, vocab_size=self.vocab_size)
        return self.onnx[0]
