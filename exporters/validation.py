"""Validate an exported graph against the torch module it came from.

Checks names, then shapes, then values — max abs diff, cosine similarity and PSNR per output, each
against a named tolerance — and collects *every* failing output before raising one error, so a user
sees all of what is wrong at once. Dynamic graphs are validated on shapes different from the export
shapes (a broken dynamic axis shows up there, not at the export size).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import EdgeLDMError


class ExportValidationError(EdgeLDMError):
    """An exported graph does not reproduce its torch module within tolerance."""


@dataclass(frozen=True)
class Tolerances:
    max_abs_diff: float = 1e-3
    min_cosine: float = 0.9999
    min_psnr_db: float = 50.0


#: defaults per precision; fp16 graphs are checked for agreement, not bit-closeness
DEFAULT_TOLERANCES = {
    "fp32": Tolerances(max_abs_diff=1e-3, min_cosine=0.99999, min_psnr_db=60.0),
    "fp16": Tolerances(max_abs_diff=5e-2, min_cosine=0.999, min_psnr_db=35.0),
}


@dataclass
class OutputCheck:
    name: str
    shape: list[int]
    max_abs_diff: float
    cosine: float
    psnr_db: float
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def tensor_psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR with the reference's value range as the peak (inf when identical)."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    mse = float(np.mean((ref - cand) ** 2))
    peak = float(ref.max() - ref.min()) or 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if denom == 0 else float(a @ b / denom)


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    tolerances: Tolerances) -> list[OutputCheck]:
    checks = []
    for name, ref in reference.items():
        if name not in candidate:
            checks.append(OutputCheck(name, list(ref.shape), math.inf, 0.0, -math.inf, ["output missing"]))
            continue
        cand = np.asarray(candidate[name])
        if cand.shape != ref.shape:
            checks.append(OutputCheck(name, list(cand.shape), math.inf, 0.0, -math.inf,
                                      [f"shape {tuple(cand.shape)} != torch {tuple(ref.shape)}"]))
            continue
        diff = float(np.max(np.abs(ref.astype(np.float64) - cand.astype(np.float64)))) if ref.size else 0.0
        check = OutputCheck(name, list(ref.shape), diff, cosine(ref, cand), tensor_psnr(ref, cand))
        if not np.isfinite(cand).all():
            check.failures.append("non-finite values")
        if diff > tolerances.max_abs_diff:
            check.failures.append(f"max abs diff {diff:.3g} > {tolerances.max_abs_diff:g}")
        if check.cosine < tolerances.min_cosine:
            check.failures.append(f"cosine {check.cosine:.6f} < {tolerances.min_cosine:g}")
        if check.psnr_db < tolerances.min_psnr_db:
            check.failures.append(f"PSNR {check.psnr_db:.1f} dB < {tolerances.min_psnr_db:g} dB")
        checks.append(check)
    return checks


@dataclass
class ValidationReport:
    component: str
    backend: str
    precision: str
    input_shapes: dict[str, list[int]]
    tolerances: Tolerances
    outputs: list[OutputCheck]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_dict(self) -> dict:
        def finite(x: float):
            return x if math.isfinite(x) else str(x)

        return {
            "passed": self.passed,
            "input_shapes": self.input_shapes,
            "tolerances": asdict(self.tolerances),
            "outputs": {o.name: {"max_abs_diff": finite(o.max_abs_diff), "cosine": finite(o.cosine),
                                 "psnr_db": finite(o.psnr_db), "failures": o.failures} for o in self.outputs},
        }

    def raise_if_failed(self) -> None:
        if self.passed:
            return
        lines = [f"{o.name}: " + "; ".join(o.failures) for o in self.outputs if not o.passed]
        raise ExportValidationError(
            f"{self.backend} {self.component} ({self.precision}) does not match torch on inputs "
            f"{self.input_shapes}:\n    " + "\n    ".join(lines),
            hint="re-export with --precision fp32, or loosen the tolerance if the difference is expected",
        )
