"""Trajectory Consistency Distillation's strategic stochastic sampling (Zheng et al. 2024), matching diffusers'
``TCDScheduler``.

On the consistency-distilled schedule of LCM, each step predicts x0 and noise, jumps to an intermediate timestep
``s = floor((1 - gamma) * t_next)`` along the predicted trajectory, then re-noises from ``s`` to ``t_next`` with
fresh noise. ``eta`` is TCD's gamma: 0 is deterministic (the jump lands on ``t_next``), 1 jumps to x0 and re-noises
like LCM. diffusers takes it as ``scheduler.step(..., eta=)`` (default 0.3); here it is part of the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Sampler, SamplerPlan, SamplerState, StepResult, as_f64, check_noise, output_dtype, \
    predict_x0_and_eps
from .config import LCMConfig
from .registry import register_sampler
from .schedule import consistency_timesteps, make_alphas_cumprod


@dataclass(frozen=True)
class TCDConfig(LCMConfig):
    eta: float = 0.3  # gamma; diffusers' TCDScheduler.step default

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"TCDConfig.eta={self.eta!r} (gamma) must lie in [0, 1]")


@dataclass(frozen=True, eq=False)
class TCDPlan(SamplerPlan):
    alpha_prod: np.ndarray  # alphas_cumprod at each timestep t
    alpha_prod_prev: np.ndarray  # ... at the next timestep (0 after the last)
    alpha_prod_s: np.ndarray  # ... at the intermediate timestep s the step jumps to


@register_sampler("tcd", diffusers_class="TCDScheduler")
class TCDSampler(Sampler):
    config_class = TCDConfig
    plan_class = TCDPlan
    config: TCDConfig

    def __init__(self, config: TCDConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config)

    def plan(self, num_inference_steps: int) -> TCDPlan:
        cfg = self.config
        timesteps = consistency_timesteps(cfg.num_train_timesteps, cfg.original_inference_steps, num_inference_steps)
        prev = np.concatenate([timesteps[1:], [0]]).astype(np.int64)  # diffusers: 0 after the last step
        # float32 as torch computes floor((1 - eta) * prev_timestep) on a long tensor
        s = np.floor(np.float32(1.0 - cfg.eta) * prev.astype(np.float32)).astype(np.int64)
        table = self.alphas_cumprod.astype(np.float64)
        return TCDPlan(num_inference_steps=len(timesteps), timesteps=timesteps, init_noise_sigma=1.0,
                       alpha_prod=table[timesteps], alpha_prod_prev=table[prev], alpha_prod_s=table[s])

    def requires_noise(self, plan: TCDPlan, state: SamplerState) -> bool:
        return self.config.eta > 0 and state.step_index < len(plan.timesteps) - 1

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: TCDPlan,
        state: SamplerState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        dtype = output_dtype(sample, model_output)
        x, out = as_f64(sample), as_f64(model_output)

        x0, eps = predict_x0_and_eps(out, x, float(plan.alpha_prod[i]), self.config.prediction_type)
        alpha_s = float(plan.alpha_prod_s[i])
        noised_s = alpha_s**0.5 * x0 + (1.0 - alpha_s) ** 0.5 * eps  # the trajectory's point at s
        if self.requires_noise(plan, state):
            fresh = check_noise(noise, x.shape, "TCD", "with eta > 0 every step but the last re-noises")
            ratio = float(plan.alpha_prod_prev[i]) / alpha_s
            prev = ratio**0.5 * noised_s + (1.0 - ratio) ** 0.5 * fresh
        else:
            prev = noised_s
        return StepResult(prev.astype(dtype), noised_s.astype(dtype), SamplerState(step_index=i + 1))
