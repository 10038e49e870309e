"""Latent Consistency Model multistep sampling (Luo et al. 2023), matching diffusers' ``LCMScheduler``.

Each step maps x_t straight to a consistency-denoised x0 (c_skip * x_t + c_out * x0_pred), then re-noises it to
the next timestep with fresh noise. That noise comes from the caller, so the runtime owns its random stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import (
    Sampler,
    SamplerPlan,
    SamplerState,
    StepResult,
    as_f64,
    check_noise,
    check_unit_strength,
    clean_x0,
    output_dtype,
    predict_x0_and_eps,
)
from .config import LCMConfig
from .registry import register_sampler
from .schedule import consistency_timesteps, make_alphas_cumprod

_SIGMA_DATA = 0.5  # the consistency-model boundary condition's data std, fixed in diffusers


@dataclass(frozen=True, eq=False)
class LCMPlan(SamplerPlan):
    alpha_prod: np.ndarray  # alphas_cumprod at each timestep
    alpha_prod_prev: np.ndarray  # ... at the next timestep (the re-noising target)
    c_skip: np.ndarray
    c_out: np.ndarray


@register_sampler("lcm", diffusers_class="LCMScheduler")
class LCMSampler(Sampler):
    config_class = LCMConfig
    plan_class = LCMPlan
    config: LCMConfig

    def __init__(self, config: LCMConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config)
        self.final_alpha_cumprod = 1.0 if self.config.set_alpha_to_one else float(self.alphas_cumprod[0])

    def plan(self, num_inference_steps: int, strength: float = 1.0) -> LCMPlan:
        """``strength`` < 1 (image-to-image) keeps the least noisy ``strength`` part of the distillation schedule
        and spreads all ``num_inference_steps`` over it, as diffusers' ``LCMScheduler.set_timesteps``."""
        cfg = self.config
        timesteps = consistency_timesteps(cfg.num_train_timesteps, cfg.original_inference_steps, num_inference_steps,
                                          strength)
        n = len(timesteps)

        table = self.alphas_cumprod.astype(np.float64)
        # The last step has no next timestep; diffusers then uses the current one (its result is not re-noised).
        prev_timesteps = np.concatenate([timesteps[1:], timesteps[-1:]])
        alpha_prod_prev = np.where(
            prev_timesteps >= 0, table[np.clip(prev_timesteps, 0, None)], self.final_alpha_cumprod
        )
        scaled = timesteps.astype(np.float64) * cfg.timestep_scaling
        return LCMPlan(
            num_inference_steps=n,
            timesteps=timesteps,
            init_noise_sigma=1.0,
            alpha_prod=table[timesteps],
            alpha_prod_prev=alpha_prod_prev,
            c_skip=_SIGMA_DATA**2 / (scaled**2 + _SIGMA_DATA**2),
            c_out=scaled / (scaled**2 + _SIGMA_DATA**2) ** 0.5,
        )

    def img2img_start(self, num_inference_steps: int, strength: float) -> tuple[LCMPlan, SamplerState]:
        """Every step runs, on a schedule shortened by ``strength`` (diffusers' LCM img2img pipeline)."""
        check_unit_strength(strength)
        plan = self.plan(num_inference_steps, strength)
        return plan, self.initial_state(plan)

    def requires_noise(self, plan: LCMPlan, state: SamplerState) -> bool:
        return state.step_index < len(plan.timesteps) - 1

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: LCMPlan,
        state: SamplerState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        cfg = self.config
        dtype = output_dtype(sample, model_output)
        x, out = as_f64(sample), as_f64(model_output)

        x0, _ = predict_x0_and_eps(out, x, float(plan.alpha_prod[i]), cfg.prediction_type)
        x0 = clean_x0(x0, cfg)
        denoised = float(plan.c_out[i]) * x0 + float(plan.c_skip[i]) * x

        if self.requires_noise(plan, state):
            eps = check_noise(noise, denoised.shape, "LCM", "every step but the last re-noises its output")
            alpha_prev = float(plan.alpha_prod_prev[i])
            prev = alpha_prev**0.5 * denoised + (1.0 - alpha_prev) ** 0.5 * eps
        else:
            prev = denoised
        # Two separate arrays even on the last step: callers keep `denoised` and feed `prev_sample` onward.
        return StepResult(prev.astype(dtype), denoised.astype(dtype), SamplerState(step_index=i + 1))
