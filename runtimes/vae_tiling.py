"""Tiled VAE decode and encode over a backend session, as diffusers' ``AutoencoderKL`` tiles
(``enable_tiling``): overlapping tiles, each blended linearly into its upper and left neighbours over the overlap,
then cropped and stitched. The VAE at high resolution is where an app runs out of memory (its activations grow with
the image, at 128-512 channels); tiled, they stay those of one tile whatever the image size.

A tile is ``tile`` latent pixels a side (``tile x VAE factor`` image pixels), tiles start every ``(1 - overlap)``
of a tile, and a tile's first ``overlap`` of its output rows and columns is blended. Attention in the VAE's mid
block sees one tile, not the whole image: the result differs slightly from the untiled one (measured in
``docs/image-to-image.md``), which is why tiling is asked for (``--vae-tile``), not automatic.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: diffusers' ``tile_overlap_factor``
OVERLAP = 0.25


def tiled_apply(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tile_in: int, tile_out: int,
                overlap: float = OVERLAP) -> np.ndarray:
    """``fn`` (NCHW -> NCHW, scaling sides by ``tile_out / tile_in``) applied over overlapping tiles of ``x``;
    ``fn(x)`` itself when ``x`` fits in one tile (diffusers' rule)."""
    height, width = x.shape[2], x.shape[3]
    if height <= tile_in and width <= tile_in:
        return fn(x)
    stride = int(tile_in * (1 - overlap))
    extent = int(tile_out * overlap)
    limit = tile_out - extent
    if stride < 1 or limit < 1:
        raise ValueError(f"a tile of {tile_in} leaves no stride at overlap {overlap}")
    rows = [[np.array(fn(x[:, :, i:i + tile_in, j:j + tile_in]), dtype=np.float32, copy=True)
             for j in range(0, width, stride)] for i in range(0, height, stride)]
    stitched = []
    for i, row in enumerate(rows):
        parts = []
        for j, tile in enumerate(row):
            # in place, as diffusers does: a neighbour is blended already when the next tile reads it
            if i > 0:
                _blend(rows[i - 1][j], tile, extent, axis=2)
            if j > 0:
                _blend(row[j - 1], tile, extent, axis=3)
            parts.append(tile[:, :, :limit, :limit])
        stitched.append(np.concatenate(parts, axis=3))
    return np.concatenate(stitched, axis=2)


def _blend(before: np.ndarray, tile: np.ndarray, extent: int, axis: int) -> None:
    """Fade ``tile``'s first ``extent`` rows (axis 2) or columns (axis 3) in from ``before``'s last ones."""
    extent = min(before.shape[axis], tile.shape[axis], extent)
    if extent < 1:
        return
    shape = [1, 1, 1, 1]
    shape[axis] = extent
    weight = (np.arange(extent, dtype=np.float32) / np.float32(extent)).reshape(shape)
    head = [slice(None)] * 4
    tail = [slice(None)] * 4
    head[axis] = slice(0, extent)
    tail[axis] = slice(before.shape[axis] - extent, before.shape[axis])
    tile[tuple(head)] = before[tuple(tail)] * (1 - weight) + tile[tuple(head)] * weight
