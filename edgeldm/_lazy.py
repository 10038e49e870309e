"""Lazy imports of optional, heavy dependencies with an install hint on failure."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: which pip extra provides which top-level module
EXTRA_FOR_MODULE = {
    "torch": "compress",
    "diffusers": "compress",
    "transformers": "compress",
    "accelerate": "compress",
    "safetensors": "compress",
    "torch_pruning": "compress",
    "nncf": "compress",
    "optimum": "compress",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxslim": "onnx",
    "openvino": "openvino",
    "executorch": "executorch",
    "coremltools": "coreml",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRA_FOR_MODULE.get(top, "all")
        raise MissingDependencyError(
            f"this feature needs '{top}', which is not importable ({exc})",
            hint=f"pip install 'edgeldm[{extra}]'",
        ) from exc
