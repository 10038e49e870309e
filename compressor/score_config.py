"""The settings of LD-Pruner's scoring: torch-free, so the CLI can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

#: the budget of a prune given none: keep 65 % of the UNet's MACs (LD-Pruner's SD v1.5 setting is ~0.7-0.8;
#: tiny recovers fully at 0.70 and to 90 % of its accuracy at 0.65, README)
DEFAULT_TARGET_MACS = 0.65
#: removals between re-scorings of an iterative prune
RESCORE_EVERY = 4



@dataclass(frozen=True)
class ScoreConfig:
    samples: int = 32  # calibration prompts, one seed each
    steps: int = 10  # sampler steps per latent
    guidance: float = 7.5
    variant: str = "final"  # a registered score variant (compressor/scores.py)
    seed: int = 0
    batch_size: int = 32
    height: int | None = None  # None: the model's default size
    width: int | None = None
    latency_repeat: int = 5  # UNet-step timings per candidate (0: skip the latency measurement)
