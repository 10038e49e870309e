"""LD-Pruner's score variants: how far a modification moves the generated latents. One registry; numpy only.

A variant says which latents the calibration runs keep (the final ones, or every step's) and how the
original and the modified sets are compared: by their element-wise mean and standard deviation (LD-Pruner's
set statistics, so no pairing is needed), or latent by latent for the same prompt and seed (which also sees
prompt-conditional damage such as colour binding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ScoreVariant:
    name: str
    trajectory: bool  # keep every sampler step's latents, not only the final ones
    statistics: bool  # compare the sets' element-wise mean / std (else the latents themselves, paired)
    score: Callable[..., float]  # (reference, modified) -> distance; both as measured (statistics or latents)
    summary: str = ""


SCORES: dict[str, ScoreVariant] = {}


def register_score(variant: ScoreVariant) -> ScoreVariant:
    if variant.name in SCORES:
        raise ValueError(f"score variant {variant.name!r} registered twice")
    SCORES[variant.name] = variant
    return variant


def get_score(name: str) -> ScoreVariant:
    if name not in SCORES:
        raise ValueError(f"unknown score variant {name!r}; choose one of {', '.join(SCORES)}")
    return SCORES[name]


def ld_score(reference: tuple[np.ndarray, np.ndarray], modified: tuple[np.ndarray, np.ndarray]) -> float:
    """LD-Pruner: ||mu_orig - mu_mod||_2 + ||sigma_orig - sigma_mod||_2 over the latent set."""
    (mu_o, sd_o), (mu_m, sd_m) = reference, modified
    return float(np.linalg.norm((mu_o - mu_m).ravel()) + np.linalg.norm((sd_o - sd_m).ravel()))


def paired_score(reference: np.ndarray, modified: np.ndarray) -> float:
    """Mean over samples of ||z_orig_i - z_mod_i||_2, latents of the same prompt and seed paired."""
    diff = (reference.astype(np.float64) - modified.astype(np.float64)).reshape(len(reference), -1)
    return float(np.linalg.norm(diff, axis=1).mean())


register_score(ScoreVariant("final", trajectory=False, statistics=True, score=ld_score,
                            summary="set statistics of the final latents (the paper)"))
register_score(ScoreVariant("trajectory", trajectory=True, statistics=True, score=ld_score,
                            summary="set statistics of every step's latents"))
register_score(ScoreVariant("paired", trajectory=False, statistics=False, score=paired_score,
                            summary="mean distance between the final latents of the same prompt and seed"))
