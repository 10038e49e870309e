"""Torch reference session: the component's own torch module, loaded from the bundle's source model.

For parity checks and debugging only. It imports torch and diffusers — on use, never at
``import edgeldm.runtimes`` — and needs the source checkpoint (or zoo model) recorded in the manifest.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..runtimes.backends.base import BackendSession


@lru_cache(maxsize=2)
def _source_pipeline(source: str):
    from ..families import FAMILIES
    from ..loading import load_pipeline

    return load_pipeline(source, families=tuple(FAMILIES))


class TorchSession(BackendSession):
    backend = "torch"

    def __init__(self, model_path: Path, io, *, source: str, threads: int | None = None):
        super().__init__(model_path, io)
        import torch

        from .torch_modules import component_module

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.module = component_module(_source_pipeline(source), io.component, io)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            outs = self.module(*[torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.io.input_names])
        return {name: out.float().numpy() for name, out in zip(self.io.output_names, outs)}
