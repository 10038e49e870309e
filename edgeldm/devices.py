"""torch device names a user types, checked before any work: a typo or an absent accelerator is an error at once
(the runtimes' devices: ``edgeldm.runtimes.backends.devices``).

torch and ONNX Runtime both accept a device they cannot use and fail late (torch at the first ``.to``)
or fall back to the CPU with only a warning (ONNX Runtime) — which would put a CPU figure under a GPU's
name in a benchmark record.
"""

from __future__ import annotations

from .errors import EdgeLDMError


def torch_device(name: str | None, default="cpu"):
    """``name`` as a torch device that exists here (``default`` when None)."""
    import torch

    if name is None:
        return torch.device(default)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EdgeLDMError(f"--device {name!r} is not a torch device", hint="e.g. cpu, cuda, cuda:1, mps") from None
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(device.type)
    if available is not None and not available():
        raise EdgeLDMError(f"--device {name}: this torch build or machine has no {device.type.upper()} device",
                           hint="leave --device out to use the CPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EdgeLDMError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device
