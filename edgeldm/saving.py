"""Writing a loaded pipeline back as a diffusers folder, each component in the precision its source stored.

diffusers and transformers load half-precision weights as fp32 unless told otherwise (``tiny`` ships its text
encoder in fp16, as many SD checkpoints ship every component), so a stage that changes only the UNet would
write the untouched text encoder back at twice its size. :func:`remember_stored_dtypes` notes on each
component module the floating dtype its files held; :func:`save_pipeline` writes a component in that dtype
whenever doing so is exact — an untouched component, or a pruned one whose weights are a subset of the
stored ones — and in its working dtype otherwise (trained weights keep their full precision).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

logger = logging.getLogger("edgeldm")

STORED_DTYPE = "_edgeldm_stored_dtype"  # attribute on a component module; survives copy.deepcopy
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")  # those a pipeline has


def remember_stored_dtypes(pipe, stored: dict[str, str | None]) -> None:
    """Tag ``pipe``'s components with their on-disk floating dtype (``{"text_encoder": "float16", ...}``)."""
    import torch

    for name, dtype in stored.items():
        module = getattr(pipe, name, None)
        target = getattr(torch, dtype, None) if dtype else None
        if module is not None and isinstance(target, torch.dtype) and target.is_floating_point:
            setattr(module, STORED_DTYPE, target)


def _exact_in(module, dtype) -> bool:
    """Every floating parameter and buffer of ``module`` survives a round trip through ``dtype`` unchanged."""
    import torch

    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point() and t.dtype != dtype and not torch.equal(t, t.to(dtype).to(t.dtype)):
            return False
    return True


@contextlib.contextmanager
def stored_precision(pipe):
    """Cast the components that can be exactly to their stored dtype, and back on exit (exact both ways)."""
    cast = []
    try:
        for name in COMPONENTS:
            module = getattr(pipe, name, None)
            dtype = getattr(module, STORED_DTYPE, None)
            if dtype is None or getattr(module, "dtype", dtype) == dtype or not _exact_in(module, dtype):
                continue
            cast.append((name, module, module.dtype))
            module.to(dtype)
        if cast:
            logger.info("writing %s in the precision their source stored", ", ".join(
                f"{n} ({str(m.dtype).removeprefix('torch.')})" for n, m, _ in cast))
        yield
    finally:
        for _, module, dtype in cast:
            module.to(dtype)


def save_pipeline(pipe, folder: str | Path) -> None:
    """``pipe.save_pretrained(folder)`` as safetensors, components in their stored precision where exact."""
    with stored_precision(pipe):
        pipe.save_pretrained(str(folder), safe_serialization=True)
