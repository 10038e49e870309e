"""ONNX Runtime session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .base import BackendSession


class OnnxRuntimeSession(BackendSession):
    backend = "onnx"

    def __init__(self, model_path: Path, io, *, providers: list[str] | None = None, threads: int | None = None,
                 session_config: dict[str, str] | None = None):
        super().__init__(model_path, io)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # A bundle runs its sessions back to back, each with its own thread pool, and ORT's pool keeps spinning
        # for a while after a call. That helps the UNet (called in a loop; without it the sd15 step is 3.7 %
        # slower) but a once-per-image session's spinning pool steals the cores of the session after it.
        # Measured on 2 cores, tiny 4-step / 25-step images: all spinning 32.5 / 104 ms, none 20 / 104 ms,
        # UNet only 17-19 / 73-79 ms.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if io.component == "unet" else "0")
        for key, value in (session_config or {}).items():  # what the graph's quantization scheme asks for
            options.add_session_config_entry(key, str(value))
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.model_path), options,
                                            providers=providers or ["CPUExecutionProvider"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.io.output_names
        return dict(zip(names, self.session.run(names, inputs)))
