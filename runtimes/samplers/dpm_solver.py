"""DPM-Solver++ multistep, orders 1 and 2 (Lu et al. 2022), matching diffusers' ``DPMSolverMultistepScheduler``
with ``algorithm_type="dpmsolver++"`` ("DPM++ 2M" in A1111's naming).

The solver works in log-SNR time lambda = log(alpha / sigma) on data predictions (x0): the second-order step
extrapolates x0 from this step and the previous one, which is the history the state carries.
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
    clean_x0,
    frozen_copy,
    noised,
    output_dtype,
)
from .config import DPMSolverConfig
from .registry import register_sampler
from .schedule import check_num_inference_steps, make_alphas_cumprod


@dataclass(frozen=True, eq=False)
class DPMSolverPlan(SamplerPlan):
    sigmas: np.ndarray  # VE sigmas, len(timesteps) + 1, float32 values like diffusers'
    alphas: np.ndarray  # alpha_t = 1 / sqrt(sigma^2 + 1), float64
    sigmas_vp: np.ndarray  # sigma_t = sigma * alpha_t, float64
    lambdas: np.ndarray  # log(alpha_t) - log(sigma_t); +inf where sigma = 0 (the final step)


@dataclass(frozen=True, eq=False)
class DPMSolverState(SamplerState):
    previous_x0: np.ndarray | None = None  # data prediction of the previous step, for the 2nd-order update
    lower_order_nums: int = 0  # how many steps have run, capped at solver_order (diffusers' counter)


@register_sampler("dpm++2m", diffusers_class="DPMSolverMultistepScheduler")
class DPMSolverMultistepSampler(Sampler):
    config_class = DPMSolverConfig
    plan_class = DPMSolverPlan
    state_class = DPMSolverState
    config: DPMSolverConfig

    def __init__(self, config: DPMSolverConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config, zero_snr_floor=True)
        ac = self.alphas_cumprod
        self.train_sigmas = np.sqrt((np.float32(1.0) - ac) / ac)
        self.train_sigmas.flags.writeable = False

    def _timesteps(self, n: int) -> np.ndarray:
        cfg = self.config
        # lambda_min_clipped drops the noisiest training steps (cosine schedules); -inf keeps all of them.
        lambda_t = np.log(np.sqrt(self.alphas_cumprod)) - np.log(np.sqrt(np.float32(1.0) - self.alphas_cumprod))
        clipped_idx = int(np.searchsorted(lambda_t[::-1], cfg.lambda_min_clipped, side="left"))
        last_timestep = cfg.num_train_timesteps - clipped_idx
        # diffusers spaces n + 1 points and drops the final (t = 0) one, unlike DDIM's spacing.
        if cfg.timestep_spacing == "linspace":
            timesteps = np.linspace(0, last_timestep - 1, n + 1).round()[::-1][:-1]
        elif cfg.timestep_spacing == "leading":
            step_ratio = last_timestep // (n + 1)
            timesteps = (np.arange(0, n + 1) * step_ratio).round()[::-1][:-1] + cfg.steps_offset
        else:  # "trailing"
            step_ratio = cfg.num_train_timesteps / n
            timesteps = np.arange(last_timestep, 0, -step_ratio).round() - 1
        return timesteps.astype(np.int64)

    def plan(self, num_inference_steps: int) -> DPMSolverPlan:
        cfg = self.config
        n = check_num_inference_steps(num_inference_steps, cfg.num_train_timesteps)
        timesteps = self._timesteps(n)
        sigmas = np.interp(timesteps, np.arange(len(self.train_sigmas)), self.train_sigmas)
        sigma_last = 0.0 if cfg.final_sigmas_type == "zero" else float(self.train_sigmas[0])
        sigmas = np.concatenate([sigmas, [sigma_last]]).astype(np.float32)

        s = sigmas.astype(np.float64)
        alphas = 1.0 / np.sqrt(s**2 + 1.0)
        sigmas_vp = s * alphas
        with np.errstate(divide="ignore"):  # sigma = 0 at the end gives lambda = +inf, which the update handles
            lambdas = np.log(alphas) - np.log(sigmas_vp)
        return DPMSolverPlan(
            num_inference_steps=len(timesteps),  # diffusers counts the steps it really made
            timesteps=timesteps,
            init_noise_sigma=1.0,
            sigmas=sigmas,
            alphas=alphas,
            sigmas_vp=sigmas_vp,
            lambdas=lambdas,
        )

    def add_noise(self, sample: np.ndarray, noise: np.ndarray, plan: DPMSolverPlan, state: SamplerState) -> np.ndarray:
        """alpha_t x + sigma_t eps at the plan's (interpolated) sigma there, as diffusers' DPM-Solver computes it."""
        i = self._check_step(plan, state)
        return noised(sample, noise, float(plan.alphas[i]), float(plan.sigmas_vp[i]))

    def _data_prediction(self, out: np.ndarray, x: np.ndarray, plan: DPMSolverPlan, i: int) -> np.ndarray:
        cfg = self.config
        alpha, sigma = float(plan.alphas[i]), float(plan.sigmas_vp[i])
        if cfg.prediction_type == "epsilon":
            if cfg.variance_type in ("learned", "learned_range"):
                out = out[:, :3]  # the model also predicts a variance in the extra channels (as diffusers slices)
            x0 = (x - sigma * out) / alpha
        elif cfg.prediction_type == "v_prediction":
            x0 = alpha * x - sigma * out
        else:  # "sample"
            x0 = out
        return clean_x0(x0, cfg)

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: DPMSolverPlan,
        state: DPMSolverState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        cfg = self.config
        n = len(plan.timesteps)
        dtype = output_dtype(sample, model_output)
        x = as_f64(sample)
        x0 = self._data_prediction(as_f64(model_output), x, plan, i)

        # Short schedules end with a first-order step (more stable), and a final sigma of 0 always does.
        lower_order_final = i == n - 1 and (
            cfg.euler_at_final or (cfg.lower_order_final and n < 15) or cfg.final_sigmas_type == "zero"
        )
        first_order = cfg.solver_order == 1 or state.lower_order_nums < 1 or lower_order_final

        alpha_t, sigma_t, sigma_s0 = float(plan.alphas[i + 1]), float(plan.sigmas_vp[i + 1]), float(plan.sigmas_vp[i])
        h = float(plan.lambdas[i + 1] - plan.lambdas[i])
        phi = np.expm1(-h)  # exp(-h) - 1, without cancellation when h is small
        if first_order:
            prev = (sigma_t / sigma_s0) * x - (alpha_t * phi) * x0
        else:
            if state.previous_x0 is None:
                raise ValueError("DPM-Solver++ state has no previous output for a second-order step")
            h_0 = float(plan.lambdas[i] - plan.lambdas[i - 1])
            d1 = (x0 - state.previous_x0) * (h / h_0)  # (m0 - m1) / r0 with r0 = h_0 / h
            prev = (sigma_t / sigma_s0) * x - (alpha_t * phi) * x0
            if cfg.solver_type == "midpoint":
                prev = prev - 0.5 * (alpha_t * phi) * d1
            else:  # "heun"
                prev = prev + (alpha_t * (phi / h + 1.0)) * d1

        new_state = DPMSolverState(
            step_index=i + 1,
            previous_x0=frozen_copy(x0) if cfg.solver_order > 1 else None,
            lower_order_nums=min(state.lower_order_nums + 1, cfg.solver_order),
        )
        return StepResult(prev.astype(dtype), x0.astype(dtype), new_state)
