"""ONNX Runtime session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .devices import check_ort_providers, check_ort_session
from .base import BackendSession


class OnnxRuntimeSession(BackendSession):
    backend = "onnx"

    def __init__(self, model_path: Path, io, *, providers: list[str] | None = None, threads: int | None = None,
                 session_config: dict[str, str] | None = None, memory_arena: bool = True):
        super().__init__(model_path, io)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if not memory_arena:  # low-memory mode: no arena and no pre-planned buffers outliving a call
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # A bundle runs its sessions back to back, each with its own thread pool. Spinning threads make a call's
        # parallel sections fast, but ORT's pool keeps spinning after the call and steals the cores of the
        # session that runs next — so every pool spins during its own call and stops at its end. Measured on 2
        # cores, the demo's 4-step bundle vs torch tiny (edgeldm bench --vs tiny, 4 runs each): 18.8-22.9x
        # faster this way; 15.7-19.4x with only the UNet's pool spinning and never stopped (the previous
        # setting; all pools spinning unstopped was worse still: 32.5 vs 17-19 ms per image).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        for key, value in (session_config or {}).items():  # what the graph's quantization scheme asks for
            options.add_session_config_entry(key, str(value))
        options.log_severity_level = 3
        wanted = list(providers or ["CPUExecutionProvider"])
        check_ort_providers(ort, wanted)
        self.session = ort.InferenceSession(str(self.model_path), options, providers=wanted)
        check_ort_session(self.session, wanted, self.model_path.name)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.io.output_names
        return dict(zip(names, self.session.run(names, inputs)))
