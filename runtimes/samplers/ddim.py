"""DDIM (Song et al. 2020), matching diffusers' ``DDIMScheduler``."""

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
    clean_x0,
    output_dtype,
    predict_x0_and_eps,
)
from .config import DDIMConfig
from .registry import register_sampler
from .schedule import check_num_inference_steps, make_alphas_cumprod, spaced_timesteps


@dataclass(frozen=True, eq=False)
class DDIMPlan(SamplerPlan):
    alpha_prod: np.ndarray  # alphas_cumprod at each timestep (float64 of the float32 table)
    alpha_prod_prev: np.ndarray  # ... at the timestep each step lands on


@register_sampler("ddim", diffusers_class="DDIMScheduler")
class DDIMSampler(Sampler):
    config_class = DDIMConfig
    plan_class = DDIMPlan
    config: DDIMConfig

    def __init__(self, config: DDIMConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config)
        # The last step lands "before t=0": on 1 or on alphas_cumprod[0], per set_alpha_to_one.
        self.final_alpha_cumprod = 1.0 if self.config.set_alpha_to_one else float(self.alphas_cumprod[0])

    def plan(self, num_inference_steps: int) -> DDIMPlan:
        cfg = self.config
        n = check_num_inference_steps(num_inference_steps, cfg.num_train_timesteps)
        timesteps = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset)
        timesteps = timesteps.astype(np.int64)
        # diffusers lands each step on t - N // n, not on the next listed timestep; the two differ for
        # "trailing"/"linspace" spacing, and parity means doing the same.
        prev_timesteps = timesteps - cfg.num_train_timesteps // n
        table = self.alphas_cumprod.astype(np.float64)
        alpha_prod_prev = np.where(
            prev_timesteps >= 0, table[np.clip(prev_timesteps, 0, None)], self.final_alpha_cumprod
        )
        return DDIMPlan(
            num_inference_steps=n,
            timesteps=timesteps,
            init_noise_sigma=1.0,
            alpha_prod=table[timesteps],
            alpha_prod_prev=alpha_prod_prev,
        )

    def requires_noise(self, plan: DDIMPlan, state: SamplerState) -> bool:
        return self.config.eta > 0

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: DDIMPlan,
        state: SamplerState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        cfg = self.config
        dtype = output_dtype(sample, model_output)
        x, out = as_f64(sample), as_f64(model_output)
        alpha_t, alpha_prev = float(plan.alpha_prod[i]), float(plan.alpha_prod_prev[i])

        x0, eps = predict_x0_and_eps(out, x, alpha_t, cfg.prediction_type)
        x0 = clean_x0(x0, cfg)

        # sigma_t of DDIM eq. 16; eta = 0 is the deterministic sampler, eta = 1 is DDPM's variance.
        variance = (1.0 - alpha_prev) / (1.0 - alpha_t) * (1.0 - alpha_t / alpha_prev)
        std_dev_t = cfg.eta * variance**0.5
        prev = alpha_prev**0.5 * x0 + (1.0 - alpha_prev - std_dev_t**2) ** 0.5 * eps
        if cfg.eta > 0:
            prev = prev + std_dev_t * check_noise(noise, out.shape, "DDIM", f"eta={cfg.eta}")

        return StepResult(prev.astype(dtype), x0.astype(dtype), SamplerState(step_index=i + 1))
