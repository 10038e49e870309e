"""Backend sessions: one small class per backend, one call signature.

``session(**named_inputs) -> dict[str, np.ndarray]``; inputs are checked against the component's
declared I/O (from the bundle manifest) before the backend sees them, and outputs never alias inputs
(LCM reads the sample it passed in after the call). Backends are imported inside :func:`open_session`,
so only the one in use needs to be installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import EdgeLDMError

#: backend name -> (module, class); module imported on use
BACKENDS: dict[str, tuple[str, str]] = {}


def register_backend(name: str, module: str, class_name: str) -> None:
    if name in BACKENDS or not name.isidentifier():
        raise ValueError(f"backend name {name!r} is taken or not an identifier")
    BACKENDS[name] = (module, class_name)


register_backend("onnx", "edgeldm.runtimes.backends.onnxruntime_session", "OnnxRuntimeSession")
register_backend("openvino", "edgeldm.runtimes.backends.openvino_session", "OpenVINOSession")
register_backend("coreml", "edgeldm.runtimes.backends.coreml_session", "CoreMLSession")  # predicts on macOS only
register_backend("torch", "edgeldm.runtimes.backends.torch_session", "TorchSession")  # reference; imports torch


#: the session option through which each backend takes a device (the torch reference backend runs on the CPU)
DEVICE_OPTIONS = {"onnx": "providers", "openvino": "device", "coreml": "compute_units"}


def device_options(backend: str, device: str | None) -> dict:
    """Session options that put ``backend`` on ``device``: an ONNX Runtime execution provider (CPU stays
    the fallback for operators it lacks), an OpenVINO device (CPU, GPU, NPU, AUTO) or Core ML compute units."""
    if not device:
        return {}
    if backend not in DEVICE_OPTIONS:
        raise EdgeLDMError(f"the {backend} backend takes no --device", hint="it runs on the CPU; leave --device out")
    key = DEVICE_OPTIONS[backend]
    if key != "providers":
        return {key: device}
    # the CPU provider stays last: ONNX Runtime runs there what the requested provider has no kernel for
    return {key: [device] if device == "CPUExecutionProvider" else [device, "CPUExecutionProvider"]}


def session_class(backend: str):
    if backend not in BACKENDS:
        raise EdgeLDMError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend]
    return getattr(importlib.import_module(module), cls)


def open_session(backend: str, model_path: str | Path, io, **options):
    """A session of ``backend`` over the graph at ``model_path`` with declared I/O ``io`` (a ComponentIO)."""
    return session_class(backend)(Path(model_path), io, **options)
