"""Euler (Karras et al. 2022, Algorithm 2 without churn), matching diffusers' ``EulerDiscreteScheduler``.

Works on the variance-exploding view x = x0 + sigma * eps with sigma = sqrt((1 - a) / a), so the model input is
scaled by 1 / sqrt(sigma^2 + 1) and the initial noise by the largest sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Sampler, SamplerPlan, SamplerState, StepResult, noised, as_f64, output_dtype
from .config import EulerConfig
from .registry import register_sampler
from .schedule import check_num_inference_steps, make_alphas_cumprod, spaced_timesteps


@dataclass(frozen=True, eq=False)
class EulerPlan(SamplerPlan):
    sigmas: np.ndarray  # len(timesteps) + 1 values, float32 like diffusers' (the last is 0 or sigma_min)


@register_sampler("euler", diffusers_class="EulerDiscreteScheduler")
class EulerSampler(Sampler):
    config_class = EulerConfig
    plan_class = EulerPlan
    config: EulerConfig

    def __init__(self, config: EulerConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config, zero_snr_floor=True)
        ac = self.alphas_cumprod
        self.train_sigmas = np.sqrt((np.float32(1.0) - ac) / ac)  # float32, as diffusers computes it
        self.train_sigmas.flags.writeable = False

    def plan(self, num_inference_steps: int) -> EulerPlan:
        cfg = self.config
        n = check_num_inference_steps(num_inference_steps, cfg.num_train_timesteps)
        # Euler keeps "linspace" timesteps fractional and interpolates sigma between training steps.
        timesteps = spaced_timesteps(
            cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset, round_linspace=False
        ).astype(np.float32)
        sigmas = np.interp(timesteps, np.arange(len(self.train_sigmas)), self.train_sigmas)
        sigmas = np.concatenate([sigmas, [self._final_sigma()]]).astype(np.float32)

        max_sigma = float(sigmas.max())
        # With "leading" spacing the first timestep is below T, and diffusers scales the initial noise to the
        # total std sqrt(sigma^2 + 1) instead of sigma.
        if cfg.timestep_spacing in ("linspace", "trailing"):
            init_noise_sigma = max_sigma
        else:
            init_noise_sigma = float(np.sqrt(np.float32(max_sigma) ** 2 + np.float32(1.0)))
        return EulerPlan(num_inference_steps=n, timesteps=timesteps, init_noise_sigma=init_noise_sigma, sigmas=sigmas)

    def _final_sigma(self) -> float:
        """The sigma after the last step: 0 (a clean sample) or the training schedule's smallest."""
        return 0.0 if self.config.final_sigmas_type == "zero" else float(self.train_sigmas[0])

    def add_noise(self, sample: np.ndarray, noise: np.ndarray, plan: EulerPlan, state: SamplerState) -> np.ndarray:
        """x + sigma * eps: the variance-exploding view (diffusers' ``EulerDiscreteScheduler.add_noise``)."""
        return noised(sample, noise, 1.0, float(plan.sigmas[self._check_step(plan, state)]))

    def scale_model_input(self, sample: np.ndarray, plan: EulerPlan, state: SamplerState) -> np.ndarray:
        i = self._check_step(plan, state)
        sigma = float(plan.sigmas[i])
        dtype = output_dtype(sample)
        return (as_f64(sample) / (sigma**2 + 1.0) ** 0.5).astype(dtype)

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
        sigma, sigma_next = float(plan.sigmas[i]), float(plan.sigmas[i + 1])

        x0 = predict_x0(out, x, sigma, self.config.prediction_type)
        derivative = (x - x0) / sigma
        prev = x + derivative * (sigma_next - sigma)
        return StepResult(prev.astype(dtype), x0.astype(dtype), SamplerState(step_index=i + 1))


def predict_x0(model_output: np.ndarray, sample: np.ndarray, sigma: float, prediction_type: str) -> np.ndarray:
    """The model's prediction at ``sigma`` (variance-exploding view) as the denoised sample x0."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1.0) ** 0.5) + sample / (sigma**2 + 1.0)
    return model_output  # "sample"
