"""What every backend session shares: input checking against the declared I/O, output copying."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ...errors import EdgeLDMError
from ...io_spec import ComponentIO


class SessionInputError(EdgeLDMError):
    """Inputs that do not match what the exported graph declares."""


class BackendSession(ABC):
    backend: str = ""

    def __init__(self, model_path: Path, io: ComponentIO):
        self.model_path = Path(model_path)
        self.io = io
        if not self.model_path.exists():
            raise EdgeLDMError(f"{self.backend} graph {self.model_path} is missing")

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        problems = []
        expected = {t.name: t for t in self.io.inputs}
        missing = [n for n in expected if n not in inputs]
        extra = [n for n in inputs if n not in expected]
        if missing:
            problems.append(f"missing input(s) {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected input(s) {', '.join(extra)}")
        checked = {}
        for name, spec in expected.items():
            if name not in inputs:
                continue
            value = np.asarray(inputs[name])
            if value.dtype != np.dtype(spec.dtype):
                if np.can_cast(value.dtype, spec.dtype, casting="same_kind"):
                    value = value.astype(spec.dtype)
                else:
                    problems.append(f"{name}: dtype {value.dtype}, expected {spec.dtype}")
            if value.ndim != len(spec.shape):
                problems.append(f"{name}: rank {value.ndim} {value.shape}, expected {len(spec.shape)} {spec.shape}")
            else:
                bad = [(i, d, s) for i, (d, s) in enumerate(zip(spec.shape, value.shape)) if isinstance(d, int) and d != s]
                problems.extend(f"{name}: dim {i} is {s}, the graph is fixed at {d}" for i, d, s in bad)
            checked[name] = value
        if problems:
            raise SessionInputError(f"{self.io.component} ({self.backend}): " + "; ".join(problems))
        return checked

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        outputs = self.run(self.check_inputs(inputs))
        ins = list(inputs.values())
        # never hand back a buffer that aliases an input (or the backend's own reusable output buffer)
        return {k: np.array(v, copy=True) if any(np.shares_memory(v, i) for i in ins if isinstance(i, np.ndarray))
                or not v.flags.owndata else v for k, v in outputs.items()}

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Backend call on checked inputs; returns every declared output by name."""
