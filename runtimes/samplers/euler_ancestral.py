"""Euler ancestral (Karras et al. 2022's Euler with ancestral sampling, k-diffusion's ``sample_euler_ancestral``),
matching diffusers' ``EulerAncestralDiscreteScheduler``.

Each step moves the sample deterministically down to ``sigma_down`` and then adds fresh noise of std ``sigma_up``,
with ``sigma_down^2 + sigma_up^2 = sigma_next^2``: a stochastic sampler that forgets part of its trajectory at every
step. The noise comes from the caller at *every* step (diffusers draws on the last one too, where ``sigma_up`` is 0),
so a replayed torch generator stays in step with the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import SamplerState, StepResult, as_f64, check_noise, output_dtype
from .config import NoiseScheduleConfig
from .euler import EulerPlan, EulerSampler, predict_x0
from .registry import register_sampler


@dataclass(frozen=True)
class EulerAncestralConfig(NoiseScheduleConfig):
    timestep_spacing: str = "linspace"

    # diffusers raises NotImplementedError for "sample"
    PREDICTION_TYPES: ClassVar[tuple[str, ...]] = ("epsilon", "v_prediction")


@register_sampler("euler-a", diffusers_class="EulerAncestralDiscreteScheduler")
class EulerAncestralSampler(EulerSampler):
    config_class = EulerAncestralConfig
    config: EulerAncestralConfig

    def _final_sigma(self) -> float:
        return 0.0  # the ancestral schedule always ends on a clean sample

    def requires_noise(self, plan: EulerPlan, state: SamplerState) -> bool:
        return True

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: EulerPlan,
        state: SamplerState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        dtype = output_dtype(sample, model_output)
        x, out = as_f64(sample), as_f64(model_output)
        eps = check_noise(noise, x.shape, "Euler ancestral", "every step adds fresh noise")
        sigma, sigma_next = float(plan.sigmas[i]), float(plan.sigmas[i + 1])

        x0 = predict_x0(out, x, sigma, self.config.prediction_type)
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        prev = x + (x - x0) / sigma * (sigma_down - sigma) + eps * sigma_up
        return StepResult(prev.astype(dtype), x0.astype(dtype), SamplerState(step_index=i + 1))
