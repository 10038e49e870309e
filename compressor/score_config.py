"""The settings of LD-Pruner's scoring: torch-free, so the CLI can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

#: what a score compares: the final latents' set statistics (the paper), every step's, or paired latents
VARIANTS = ("final", "trajectory", "paired")


@dataclass(frozen=True)
class ScoreConfig:
    samples: int = 32  # calibration prompts, one seed each
    steps: int = 10  # sampler steps per latent
    guidance: float = 7.5
    variant: str = "final"
    seed: int = 0
    batch_size: int = 32
    height: int | None = None  # None: the model's default size
    width: int | None = None
    latency_repeat: int = 5  # UNet-step timings per candidate (0: skip the latency measurement)
