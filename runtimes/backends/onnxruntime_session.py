"""ONNX Runtime session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .base import BackendSession


class OnnxRuntimeSession(BackendSession):
    backend = "onnx"

    def __init__(self, model_path: Path, io, *, providers: list[str] | None = None, threads: int | None = None):
        super().__init__(model_path, io)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # a bundle is several sessions run one after another, each with its own thread pool: a pool left
        # spinning after its call steals the cores from the next session's (measured on 2 cores: the tiny
        # LCM student's 4-step image 35 ms with spinning, 20 ms without — README "Few-step sampling")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.model_path), options,
                                            providers=providers or ["CPUExecutionProvider"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.io.output_names
        return dict(zip(names, self.session.run(names, inputs)))
