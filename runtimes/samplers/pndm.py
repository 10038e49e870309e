"""PNDM / PLMS (Liu et al. 2022), matching diffusers' ``PNDMScheduler``.

With ``skip_prk_steps=True`` (Stable Diffusion's config) this is PLMS: a linear multistep method on the noise
prediction, warmed up by one Heun-like step that re-evaluates the first timestep pair. With the default
``skip_prk_steps=False`` the first three intervals run 4-stage pseudo Runge-Kutta (12 model calls) instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .base import (
    Sampler,
    SamplerPlan,
    SamplerState,
    StepResult,
    as_f64,
    frozen_copy,
    img2img_steps,
    output_dtype,
    predict_x0_and_eps,
)
from .config import PNDMConfig
from .registry import register_sampler
from .schedule import check_num_inference_steps, make_alphas_cumprod, spaced_timesteps

_PNDM_ORDER = 4


@dataclass(frozen=True, eq=False)
class PNDMPlan(SamplerPlan):
    num_prk_steps: int  # leading entries of `timesteps` that are Runge-Kutta stages (0 for PLMS)


@dataclass(frozen=True, eq=False)
class PNDMState(SamplerState):
    ets: tuple[np.ndarray, ...] = ()  # last (up to 4) noise predictions used by the multistep formula
    cur_sample: np.ndarray | None = None  # sample the current Runge-Kutta / warm-up step started from
    cur_model_output: np.ndarray | None = None  # Runge-Kutta running weighted sum of stage outputs


@register_sampler("pndm", diffusers_class="PNDMScheduler")
class PNDMSampler(Sampler):
    config_class = PNDMConfig
    plan_class = PNDMPlan
    state_class = PNDMState
    config: PNDMConfig

    def __init__(self, config: PNDMConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config)
        self.final_alpha_cumprod = 1.0 if self.config.set_alpha_to_one else float(self.alphas_cumprod[0])

    def plan(self, num_inference_steps: int) -> PNDMPlan:
        cfg = self.config
        n = check_num_inference_steps(num_inference_steps, cfg.num_train_timesteps)
        ascending = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset)[::-1]
        ascending = ascending.astype(np.int64)
        if cfg.skip_prk_steps:
            # The second-to-last timestep appears twice: the warm-up evaluates the model at both ends of the
            # first interval and then redoes that interval with the averaged prediction.
            prk = np.array([], dtype=np.int64)
            plms = np.concatenate([ascending[:-1], ascending[-2:-1], ascending[-1:]])[::-1]
        else:
            if n < _PNDM_ORDER:
                raise ValueError(f"PNDM with Runge-Kutta warm-up needs at least {_PNDM_ORDER} steps, got {n}")
            half = cfg.num_train_timesteps // n // 2
            stages = ascending[-_PNDM_ORDER:].repeat(2) + np.tile(np.array([0, half]), _PNDM_ORDER)
            prk = stages[:-1].repeat(2)[1:-1][::-1]
            plms = ascending[:-3][::-1]
        timesteps = np.concatenate([prk, plms]).astype(np.int64)
        return PNDMPlan(num_inference_steps=n, timesteps=timesteps, init_noise_sigma=1.0, num_prk_steps=len(prk))

    def img2img_start(self, num_inference_steps: int, strength: float) -> tuple[PNDMPlan, PNDMState]:
        """PNDM's warm-up counts its own calls, not the plan's index: diffusers slices the timesteps and starts
        the multistep history afresh, so the plan is cut here and entered at its (new) start."""
        if not self.config.skip_prk_steps:
            raise ValueError("image-to-image with PNDM needs skip_prk_steps (the Runge-Kutta warm-up would start "
                             "mid-schedule); choose another sampler")
        plan = self.plan(num_inference_steps)
        start = num_inference_steps - img2img_steps(num_inference_steps, strength)
        cut = dataclasses.replace(plan, timesteps=np.array(plan.timesteps[start:]))
        return cut, self.initial_state(cut)

    def _alpha(self, timestep: int) -> float:
        return float(self.alphas_cumprod[timestep]) if timestep >= 0 else self.final_alpha_cumprod

    def _prev_sample(self, x: np.ndarray, timestep: int, prev_timestep: int, out: np.ndarray) -> np.ndarray:
        """Formula (9) of the PNDM paper: move x from `timestep` to `prev_timestep` along noise prediction `out`."""
        alpha_t, alpha_prev = self._alpha(timestep), self._alpha(prev_timestep)
        beta_t, beta_prev = 1.0 - alpha_t, 1.0 - alpha_prev
        if self.config.prediction_type == "v_prediction":
            out = alpha_t**0.5 * out + beta_t**0.5 * x
        sample_coeff = (alpha_prev / alpha_t) ** 0.5
        denom = alpha_t * beta_prev**0.5 + (alpha_t * beta_t * alpha_prev) ** 0.5
        return sample_coeff * x - (alpha_prev - alpha_t) * out / denom

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: PNDMPlan,
        state: PNDMState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        i = self._check_step(plan, state)
        dtype = output_dtype(sample, model_output)
        x, out = as_f64(sample), as_f64(model_output)
        timestep = int(plan.timesteps[i])
        # PNDM never forms x0; report the one this model call implies, for previews and consistency losses.
        x0, _ = predict_x0_and_eps(out, x, float(self.alphas_cumprod[timestep]), self.config.prediction_type)

        if i < plan.num_prk_steps:
            prev, new_state = self._step_prk(out, x, plan, state, i, timestep)
        else:
            prev, new_state = self._step_plms(out, x, plan, state, i, timestep)
        return StepResult(prev.astype(dtype), x0.astype(dtype), new_state)

    def _step_plms(self, out, x, plan, state, i, timestep):
        step_ratio = self.config.num_train_timesteps // plan.num_inference_steps
        prev_timestep = timestep - step_ratio
        ets, cur_sample = state.ets, state.cur_sample
        if i != 1:
            ets = ets[-3:] + (frozen_copy(out),)
        else:
            # Warm-up: redo the first interval (t + ratio -> t) from the saved sample with the averaged output.
            prev_timestep, timestep = timestep, timestep + step_ratio

        if len(ets) == 1 and i == 0:
            eps, cur_sample = out, frozen_copy(x)
        elif len(ets) == 1 and i == 1:
            eps, x, cur_sample = (out + ets[-1]) / 2, state.cur_sample, None
        elif len(ets) == 2:
            eps = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            eps = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            eps = (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])
        if i >= 2:
            cur_sample = None  # only the warm-up needs it; do not keep a latent alive for the whole loop
        prev = self._prev_sample(x, timestep, prev_timestep, eps)
        return prev, PNDMState(step_index=i + 1, ets=ets, cur_sample=cur_sample)

    def _step_prk(self, out, x, plan, state, i, timestep):
        half = self.config.num_train_timesteps // plan.num_inference_steps // 2
        prev_timestep = timestep - (0 if i % 2 else half)
        # All four stages of one Runge-Kutta step start from the same sample and timestep.
        base_timestep = int(plan.timesteps[i // 4 * 4])
        ets, cur_sample, acc = state.ets, state.cur_sample, state.cur_model_output
        stage = i % 4
        if stage == 0:
            acc = out / 6
            ets = ets + (frozen_copy(out),)
            cur_sample = frozen_copy(x)
            eps = out
        elif stage in (1, 2):
            acc = acc + out / 3
            eps = out
        else:
            eps = acc + out / 6
            acc = None
        start = cur_sample if cur_sample is not None else x
        prev = self._prev_sample(start, base_timestep, prev_timestep, eps)
        if acc is not None:
            acc.flags.writeable = False
        new_state = PNDMState(step_index=i + 1, ets=ets, cur_sample=cur_sample, cur_model_output=acc)
        return prev, new_state
