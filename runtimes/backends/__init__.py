"""Backend sessions: one small class per backend, one call signature.

``session(**named_inputs) -> dict[str, np.ndarray]``; inputs are checked against the component's
declared I/O (from the bundle manifest) before the backend sees them, and outputs never alias inputs
(LCM reads the sample it passed in after the call). Backends are described in :mod:`edgeldm.backends` (one file each)
and their session modules imported inside :func:`open_session`, so only the one in use needs to be installed.
"""

from __future__ import annotations

from pathlib import Path

from ...backends import BACKENDS, get_backend, load
from ...errors import EdgeLDMError

__all__ = ["BACKENDS", "device_options", "session_class", "open_session"]


def device_options(backend: str, device: str | None) -> dict:
    """Session options that put ``backend`` on ``device``: an ONNX Runtime execution provider (CPU stays
    the fallback for operators it lacks), an OpenVINO device (CPU, GPU, NPU, AUTO) or Core ML compute units."""
    if not device:
        return {}
    key = get_backend(backend).device_option
    if key is None:
        raise EdgeLDMError(f"the {backend} backend takes no --device", hint="it runs on the CPU; leave --device out")
    if key != "providers":
        return {key: device}
    # the CPU provider stays last: ONNX Runtime runs there what the requested provider has no kernel for
    return {key: [device] if device == "CPUExecutionProvider" else [device, "CPUExecutionProvider"]}


def precision_options(backend: str, precision: str | None) -> dict:
    """Session options that make ``backend`` compute in ``precision`` (``--inference-precision``)."""
    if not precision:
        return {}
    offered = get_backend(backend).inference_precisions
    if not offered:
        raise EdgeLDMError(f"the {backend} backend takes no --inference-precision",
                           hint="it computes in the graph's own precision; leave the option out")
    if precision not in offered:
        raise EdgeLDMError(f"{backend} computes in {', '.join(offered)}, not {precision!r}",
                           hint=f"choose one of {', '.join(offered)}")
    return {"inference_precision": precision}


def session_class(backend: str):
    """The session class of ``backend`` (its module imported now: only the backend in use must be installed)."""
    return load(get_backend(backend).session)


def open_session(backend: str, model_path: str | Path, io, **options):
    """A session of ``backend`` over the graph at ``model_path`` with declared I/O ``io`` (a ComponentIO)."""
    return session_class(backend)(Path(model_path), io, **options)
