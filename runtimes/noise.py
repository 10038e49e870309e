"""Seeded Gaussian noise that any language reproduces: the draw of ``edgeldm run --seed N``.

numpy's default generator (PCG64 plus a ziggurat for normals) exists nowhere outside numpy, so a Swift, Kotlin or
JavaScript client could not make the image a seed names. The portable generator is Philox4x32-10 (Salmon, Moraes,
Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11 — the generator of cuRAND, JAX and oneMKL) in
counter mode, turned into normals by Box–Muller. It needs only 32-bit integer multiplies and float64 ``log``,
``sqrt``, ``cos``, ``sin``; ``docs/bundle-format.md`` states it step by step and ``runtimes/js`` implements it.

The stream of one seed (what every client must do, in this order):

* key = (seed mod 2^32, seed div 2^32); the block counter starts at 0 and is shared by all draws of one image;
* a draw of ``n`` values takes ``ceil(n / 4)`` blocks: block ``b`` is Philox4x32-10 of the counter
  (b mod 2^32, b div 2^32, 0, 0) under the key, four uint32 words w0..w3; the counter then moves past them (a
  draw's unused words are dropped, so each draw starts on a fresh block);
* each word pair (w0, w1) and (w2, w3) gives two normals: u1 = (w0 + 0.5) / 2^32, u2 = (w1 + 0.5) / 2^32,
  r = sqrt(-2 ln u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), in float64, in that order, then rounded to float32;
* the values fill the shape in C (row-major) order.

numpy's generator stays available (``noise="numpy"``) for images made before the portable generator existed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# Random123's Philox4x32 constants: the two round multipliers and the Weyl key increments
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

NoiseFn = Callable[[tuple[int, ...]], np.ndarray]


def philox4x32(counters: np.ndarray, key: tuple[int, int], rounds: int = PHILOX_ROUNDS) -> np.ndarray:
    """Philox4x32-``rounds`` of ``counters`` ((N, 4) uint32 words) under ``key`` (two uint32 words)."""
    c = np.asarray(counters, dtype=np.uint64).reshape(-1, 4)
    c0, c1, c2, c3 = (c[:, i].copy() for i in range(4))
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for r in range(rounds):
        if r:  # the key is bumped between rounds, not before the first
            k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
        p0 = np.uint64(PHILOX_M0) * c0  # 32 x 32 -> 64 bits: exact in uint64
        p1 = np.uint64(PHILOX_M1) * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT) ^ c1 ^ np.uint64(k0), p1 & _MASK,
                          (p0 >> _SHIFT) ^ c3 ^ np.uint64(k1), p0 & _MASK)
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def box_muller(words: np.ndarray) -> np.ndarray:
    """Normals (float64) from uint32 words, two per consecutive pair (see the module docstring)."""
    w = np.asarray(words, dtype=np.float64).reshape(-1, 2)
    u1 = (w[:, 0] + 0.5) / 4294967296.0
    u2 = (w[:, 1] + 0.5) / 4294967296.0
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * math.pi * u2
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)


class PhiloxNormal:
    """The portable stream of one seed: each call draws the next values (float32, C order)."""

    def __init__(self, seed: int):
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed {seed}: the portable generator takes 0 <= seed < 2**64")
        self.key = (int(seed) & 0xFFFFFFFF, int(seed) >> 32)
        self.block = 0

    def __call__(self, shape) -> np.ndarray:
        shape = tuple(int(s) for s in np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
        n = math.prod(shape)
        blocks = -(-n // 4)
        index = np.arange(self.block, self.block + blocks, dtype=np.uint64)
        counters = np.stack([index & _MASK, index >> _SHIFT, np.zeros_like(index), np.zeros_like(index)], axis=1)
        self.block += blocks
        return box_muller(philox4x32(counters, self.key))[:n].astype(np.float32).reshape(shape)


class NumpyNormal:
    """numpy's default generator seeded by ``seed`` (the runtime's draw before the portable one)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, shape) -> np.ndarray:
        return self.rng.standard_normal(shape).astype(np.float32)


# one registry: the name a manifest and ``--noise`` use -> the generator's class
NOISE_GENERATORS: dict[str, type] = {"philox": PhiloxNormal, "numpy": NumpyNormal}
DEFAULT_NOISE = "philox"
# what the manifest writes: precise enough to implement from docs/bundle-format.md alone
NOISE_SPEC = {"philox": "philox4x32-10/box-muller/v1", "numpy": "numpy-pcg64-standard-normal"}


def noise_source(name: str, seed: int) -> NoiseFn:
    """The seeded draw ``shape -> float32 array`` named ``name`` (``philox`` or ``numpy``)."""
    try:
        return NOISE_GENERATORS[name](seed)
    except KeyError:
        raise ValueError(f"unknown noise generator {name!r}; choose from {', '.join(NOISE_GENERATORS)}") from None
