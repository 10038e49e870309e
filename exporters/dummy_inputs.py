"""Seeded example inputs for a component's declared I/O, at any set of symbolic sizes."""

from __future__ import annotations

import numpy as np

from ..io_spec import ComponentIO

#: where a diffusion UNet is usually evaluated; any value in [0, 1000) works
EXAMPLE_TIMESTEP = 981.0
#: SDXL's micro-conditioning as its pipeline sends it: original size, crop top-left, target size (pixels)
EXAMPLE_TIME_IDS = (1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0)


def example_inputs(io: ComponentIO, dims: dict[str, int] | None = None, *, seed: int = 0,
                   vocab_size: int = 49408) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for spec in io.inputs:
        shape = io.resolve(spec, dims)
        if spec.name == "input_ids":
            ids = rng.integers(1, vocab_size - 2, size=shape)
            ids[..., 0], ids[..., -1] = vocab_size - 2, vocab_size - 1  # <|startoftext|> … <|endoftext|>
            out[spec.name] = ids.astype(spec.dtype)
        elif spec.name == "timestep":
            out[spec.name] = np.full(shape, EXAMPLE_TIMESTEP, dtype=spec.dtype)
        elif spec.name == "time_ids":  # sizes, Fourier-embedded: values in the range the UNet was trained on
            out[spec.name] = np.broadcast_to(np.asarray(EXAMPLE_TIME_IDS, dtype=spec.dtype), shape).copy()
        else:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return out


def validation_dims(io: ComponentIO, *, spatial_multiple: int) -> dict[str, int]:
    """Symbolic sizes that differ from the export sizes (batch, sequence and spatial), for dynamic graphs."""
    dims = dict(io.dims)
    for name, value in io.dims.items():
        if name == "batch_size":
            dims[name] = 1 if value != 1 else 2
        elif name == "sequence_length":
            dims[name] = value  # CLIP position embeddings fix 77; the pipeline always pads to it
        else:
            dims[name] = value + spatial_multiple
    return dims
