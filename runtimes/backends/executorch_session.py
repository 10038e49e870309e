"""ExecuTorch session over a ``model.pte`` (ExecuTorch's Python runtime, ``executorch.runtime``).

The runtime's Python bindings take and return torch tensors, so this one session imports torch (lazily, on
open); the arrays it hands back are numpy like every session's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .base import BackendSession


class ExecuTorchSession(BackendSession):
    backend = "executorch"

    def __init__(self, model_path: Path, io):
        super().__init__(model_path, io)
        self._torch = require("torch")
        runtime = require("executorch.runtime").Runtime.get()
        self._method = runtime.load_program(str(self.model_path)).load_method("forward")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # np.require, not np.ascontiguousarray: that one turns the UNet's 0-d timestep into shape (1,)
        feed = [self._torch.from_numpy(np.require(inputs[name], requirements="C")) for name in self.io.input_names]
        outputs = self._method.execute(feed)
        return {spec.name: outputs[i].numpy() for i, spec in enumerate(self.io.outputs)}
