"""Core ML session over a ``model.mlpackage`` (macOS only: coremltools predicts through Core ML itself).

The package's inputs can differ from the declared I/O in dtype (int32 ``input_ids``) and shape (the UNet's
scalar ``timestep`` as (1,)): see :mod:`edgeldm.exporters.coreml_export`. The session reads what the
package declares and adapts each checked input to it, so callers feed what the manifest says.

A graph split for the Neural Engine (``model_chunk1.mlpackage`` ... ``model_chunkN.mlpackage``, see
:mod:`edgeldm.exporters.coreml_chunks`) opens from its first chunk: the session loads every chunk and runs them
in order, each reading by name from the inputs and the earlier chunks' outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..._lazy import require
from ...errors import EdgeLDMError
from .base import BackendSession, SessionInputError

#: chunk ``i`` (from 1) of a component's Core ML graph, beside where ``model.mlpackage`` would be
CHUNK_PACKAGE = "model_chunk{index}.mlpackage"
_CHUNK_PREFIX = "model_chunk"


def chunk_name(index: int) -> str:
    return CHUNK_PACKAGE.format(index=index)


def chunk_packages(package: Path) -> list[Path]:
    """The packages of one Core ML graph, in the order they run: ``[package]`` when it is whole, else every
    ``model_chunk<i>.mlpackage`` beside the first chunk."""
    package = Path(package)
    if not package.name.startswith(_CHUNK_PREFIX):
        return [package]
    parts, index = [], 1
    while (part := package.parent / chunk_name(index)).is_dir():
        parts.append(part)
        index += 1
    if not parts:
        raise EdgeLDMError(f"{package} has no Core ML chunks beside it", hint="re-export the bundle")
    return parts


def coreml_name(name: str) -> str:
    """The feature name Core ML gives a declared tensor name: it allows no dots (optimum's ``hidden_states.0``
    becomes ``hidden_states_0``); the export names the package's features so and the session maps them back."""
    return name.replace(".", "_")


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
        self.models = [ct.models.MLModel(str(p), compute_units=units) for p in chunk_packages(self.model_path)]
        self._feeds = [{f.name: (_ARRAY_DTYPES[f.type.multiArrayType.dataType], tuple(f.type.multiArrayType.shape))
                        for f in m.get_spec().description.input} for m in self.models]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = dict(inputs)
        for model, feeds in zip(self.models, self._feeds):
            feed = {}
            for name, (dtype, shape) in feeds.items():
                value = values[name]
                if np.dtype(dtype).kind == "i" and value.size and (
                        value.min() < np.iinfo(dtype).min or value.max() > np.iinfo(dtype).max):
                    raise SessionInputError(f"{self.io.component} (coreml): {name} does not fit in "
                                            f"{np.dtype(dtype).name}")
                feed[name] = np.ascontiguousarray(np.asarray(value).astype(dtype, copy=False).reshape(shape))
            values.update(model.predict(feed))  # a chunk's outputs: what the chunks after it read
        return {spec.name: np.asarray(values[coreml_name(spec.name)], dtype=spec.dtype).reshape(self.io.resolve(spec))
                for spec in self.io.outputs}
