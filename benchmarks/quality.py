"""Quality metrics on generated images: exact prompt accuracy, Fréchet distance, pairwise fidelity.

* **prompt accuracy** — per attribute (shape, colour, position, size) and *joint* (all four right), from
  the attribute classifier's predictions against the attributes the prompt asked for;
* **Fréchet distance** — between the classifier features of generated images and of held-out real
  scenes (our stand-in for FID);
* **pairwise** — for a compressed model against its source on the same (prompt, seed) pairs: image PSNR
  and latent MSE.
"""

from __future__ import annotations

import numpy as np

from ..calibration.scenes import ATTRIBUTES, Scene

#: attributes a prompt is scored on; joint accuracy needs all of them right
SCORED_ATTRIBUTES = ("shape", "color", "position", "size")


def prompt_accuracy(predicted: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """``predicted``: class index per attribute (n, len(ATTRIBUTES)) -> accuracy per scored attribute + joint."""
    if len(scenes) == 0:
        raise ValueError("no images to score")
    truth = np.array([sc.labels() for sc in scenes])
    cols = [ATTRIBUTES.index(a) for a in SCORED_ATTRIBUTES]
    hits = predicted[:, cols] == truth[:, cols]
    acc = {a: float(hits[:, k].mean()) for k, a in enumerate(SCORED_ATTRIBUTES)}
    acc["joint"] = float(hits.all(axis=1).mean())
    return acc


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½) between two feature sets (rows are samples).

    The trace of the matrix square root is taken from the eigenvalues of Σa^½ Σb Σa^½, which is
    symmetric positive semi-definite, so no complex parts appear as with a general ``sqrtm``.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (n >= 2, d) feature sets of equal d, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    tr_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def psnr(images_a: np.ndarray, images_b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB per image pair (inf where identical)."""
    a, b = np.asarray(images_a, np.float64), np.asarray(images_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image sets differ in shape: {a.shape} vs {b.shape}")
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(peak**2 / mse)


def latent_mse(latents_a: np.ndarray, latents_b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(latents_a, np.float64), np.asarray(latents_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"latent sets differ in shape: {a.shape} vs {b.shape}")
    return ((a - b) ** 2).reshape(len(a), -1).mean(1)
