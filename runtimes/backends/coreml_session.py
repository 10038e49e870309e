"""Core ML session over a ``model.mlpackage`` (macOS only: coremltools predicts through Core ML itself).

The package's inputs can differ from the declared I/O in dtype (int32 ``input_ids``) and shape (the UNet's
scalar ``timestep`` as (1,)): see :mod:`edgeldm.exporters.coreml_export`. The session reads what the
package declares and adapts each checked input to it, so callers feed what the manifest says.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..._lazy import require
from ...errors import EdgeLDMError
from .base import BackendSession, SessionInputError

# Core ML's ArrayFeatureType.ArrayDataType values
_ARRAY_DTYPES = {65552: np.float16, 65568: np.float32, 65600: np.float64, 131104: np.int32}


class CoreMLSession(BackendSession):
    backend = "coreml"

    def __init__(self, model_path: Path, io, *, compute_units: str = "ALL"):
        if sys.platform != "darwin":
            raise EdgeLDMError("Core ML prediction needs macOS; the .mlpackage converts on Linux",
                               hint="run this bundle with --backend onnx or openvino here, or on a Mac")
        super().__init__(model_path, io)
        ct = require("coremltools")
        try:
            units = ct.ComputeUnit[compute_units]
        except KeyError:
            raise EdgeLDMError(f"unknown Core ML compute units {compute_units!r}",
                               hint=f"choose one of {', '.join(u.name for u in ct.ComputeUnit)}") from None
        self.model = ct.models.MLModel(str(self.model_path), compute_units=units)
        self._feeds = {f.name: (_ARRAY_DTYPES[f.type.multiArrayType.dataType], tuple(f.type.multiArrayType.shape))
                       for f in self.model.get_spec().description.input}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, value in inputs.items():
            dtype, shape = self._feeds[name]
            if np.dtype(dtype).kind == "i" and value.size and (
                    value.min() < np.iinfo(dtype).min or value.max() > np.iinfo(dtype).max):
                raise SessionInputError(f"{self.io.component} (coreml): {name} does not fit in {np.dtype(dtype).name}")
            feed[name] = np.ascontiguousarray(value.astype(dtype, copy=False).reshape(shape))  # () -> (1,)
        result = self.model.predict(feed)
        return {spec.name: np.asarray(result[spec.name], dtype=spec.dtype).reshape(self.io.resolve(spec))
                for spec in self.io.outputs}
