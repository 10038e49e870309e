"""What every sampler shares: plan/state/result types, the abstract interface, and small array helpers.

Purity is the point: a ``Sampler`` holds only its frozen config and read-only tables, a ``plan`` holds what
``set_timesteps`` would compute, and a ``state`` holds what diffusers keeps in hidden attributes (step index, model
output history). ``step`` returns a new state, so one sampler object serves any number of concurrent generations.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np

from .config import NoiseScheduleConfig


@dataclass(frozen=True, eq=False)
class SamplerPlan:
    """A schedule for one number of steps; ``timesteps`` equals diffusers' ``scheduler.timesteps``.

    Loop over ``timesteps``, not ``range(num_inference_steps)``: PNDM makes one model call more than the steps
    asked for (and 12 Runge-Kutta stages without ``skip_prk_steps``).
    """

    num_inference_steps: int
    timesteps: np.ndarray
    init_noise_sigma: float

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # a plan is shared by concurrent calls: nobody may edit it

    def __len__(self) -> int:
        return len(self.timesteps)


@dataclass(frozen=True, eq=False)
class SamplerState:
    """Where one generation stands; samplers with history subclass it. Arrays in a state are read-only."""

    step_index: int = 0


class StepResult(NamedTuple):
    prev_sample: np.ndarray
    denoised: np.ndarray
    state: SamplerState


class Sampler(ABC):
    """Base of the numpy samplers. Subclasses set ``config_class`` and implement ``plan`` and ``step``."""

    config_class: ClassVar[type[NoiseScheduleConfig]] = NoiseScheduleConfig
    plan_class: ClassVar[type[SamplerPlan]] = SamplerPlan
    state_class: ClassVar[type[SamplerState]] = SamplerState
    name: ClassVar[str] = ""  # filled by register_sampler
    diffusers_class_name: ClassVar[str | None] = None  # filled by register_sampler

    def __init__(self, config: NoiseScheduleConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class(**overrides)
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config

    @classmethod
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> "Sampler":
        """Build from a diffusers ``scheduler_config.json`` dict (unknown keys ignored)."""
        return cls(cls.config_class.from_dict(config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @abstractmethod
    def plan(self, num_inference_steps: int) -> SamplerPlan:
        """The timesteps and precomputed per-step constants for ``num_inference_steps``."""

    def initial_state(self, plan: SamplerPlan) -> SamplerState:
        self._check_plan(plan)
        return self.state_class()

    def img2img_start(self, num_inference_steps: int, strength: float) -> tuple[SamplerPlan, SamplerState]:
        """The plan and first state of an image-to-image run, as diffusers' img2img pipelines set them: the plan of
        ``num_inference_steps``, entered after its first ``(1 - strength)`` part (``get_timesteps`` and the
        scheduler's begin index). The input image is noised to the timestep of the returned state
        (:meth:`add_noise`)."""
        plan = self.plan(num_inference_steps)
        start = num_inference_steps - img2img_steps(num_inference_steps, strength)
        return plan, dataclasses.replace(self.initial_state(plan), step_index=start)

    def add_noise(self, sample: np.ndarray, noise: np.ndarray, plan: SamplerPlan, state: SamplerState) -> np.ndarray:
        """``sample`` (clean latents) noised to the timestep of ``state``, as diffusers' ``scheduler.add_noise``:
        sqrt(a) x + sqrt(1 - a) eps, a the training schedule's ``alphas_cumprod`` there. Samplers that work on
        sigmas override it."""
        i = self._check_step(plan, state)
        alpha = float(self.alphas_cumprod[int(plan.timesteps[i])])
        return noised(sample, noise, alpha**0.5, (1.0 - alpha) ** 0.5)

    def requires_noise(self, plan: SamplerPlan, state: SamplerState) -> bool:
        """Whether ``step`` at this state needs the caller's ``noise`` (LCM between steps, DDIM with eta > 0)."""
        return False

    def scale_model_input(self, sample: np.ndarray, plan: SamplerPlan, state: SamplerState) -> np.ndarray:
        """The model's input at this step; a copy, so the caller may reuse ``sample``'s buffer."""
        self._check_step(plan, state)
        return np.array(sample, copy=True)

    @abstractmethod
    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        plan: SamplerPlan,
        state: SamplerState,
        noise: np.ndarray | None = None,
    ) -> StepResult:
        """One denoising step at ``plan.timesteps[state.step_index]``; pure: ``state`` is not modified."""

    # ---- helpers for subclasses -------------------------------------------------------------------------

    def _check_plan(self, plan: SamplerPlan) -> None:
        if not isinstance(plan, self.plan_class):
            raise TypeError(f"{type(self).__name__} needs a {self.plan_class.__name__}, got {type(plan).__name__}")

    def _check_step(self, plan: SamplerPlan, state: SamplerState) -> int:
        self._check_plan(plan)
        if not isinstance(state, self.state_class):
            raise TypeError(f"{type(self).__name__} needs a {self.state_class.__name__}, got {type(state).__name__}")
        if not 0 <= state.step_index < len(plan.timesteps):
            raise ValueError(
                f"state.step_index={state.step_index} is outside the plan's {len(plan.timesteps)} timesteps "
                "(the sampling loop already finished?)"
            )
        return state.step_index


def img2img_steps(num_inference_steps: int, strength: float) -> int:
    """How many of ``num_inference_steps`` an image-to-image run of ``strength`` makes (diffusers' rule)."""
    check_unit_strength(strength)
    steps = min(int(num_inference_steps * strength), num_inference_steps)
    if steps < 1:
        raise ValueError(f"strength {strength} of {num_inference_steps} steps leaves no step to run "
                         f"(it needs at least {int(np.ceil(1 / strength))} steps)")
    return steps


def check_unit_strength(strength: float) -> None:
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength {strength} is outside (0, 1]")


def noised(sample: np.ndarray, noise: np.ndarray, a: float, b: float) -> np.ndarray:
    """a * sample + b * noise, in the sample's dtype."""
    if np.shape(noise) != np.shape(sample):
        raise ValueError(f"noise has shape {np.shape(noise)}, expected {np.shape(sample)}")
    return (a * as_f64(sample) + b * as_f64(noise)).astype(output_dtype(sample))


def output_dtype(*arrays: np.ndarray) -> np.dtype:
    """The dtype results are returned in: the inputs' common float type (float32 in, float32 out)."""
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def as_f64(array: np.ndarray) -> np.ndarray:
    # May return the caller's array itself when it is already float64: only ever read from it.
    return np.asarray(array, dtype=np.float64)


def frozen_copy(array: np.ndarray) -> np.ndarray:
    """A private read-only float64 copy, for model outputs a state keeps across steps."""
    out = np.array(array, dtype=np.float64, copy=True)
    out.flags.writeable = False
    return out


def check_noise(noise: np.ndarray | None, shape: tuple[int, ...], sampler: str, why: str) -> np.ndarray:
    if noise is None:
        raise ValueError(f"{sampler} needs `noise` at this step ({why}); pass a standard normal array of shape {shape}")
    noise = as_f64(noise)
    if noise.shape != tuple(shape):
        raise ValueError(f"{sampler}: noise has shape {noise.shape}, expected {tuple(shape)}")
    return noise


def predict_x0_and_eps(
    model_output: np.ndarray, sample: np.ndarray, alpha_prod_t: float, prediction_type: str
) -> tuple[np.ndarray, np.ndarray]:
    """Turn the model's prediction at alphas_cumprod ``alpha_prod_t`` into (predicted x0, predicted noise)."""
    sqrt_alpha, sqrt_beta = alpha_prod_t**0.5, (1.0 - alpha_prod_t) ** 0.5
    if prediction_type == "epsilon":
        return (sample - sqrt_beta * model_output) / sqrt_alpha, model_output
    if prediction_type == "v_prediction":
        return sqrt_alpha * sample - sqrt_beta * model_output, sqrt_alpha * model_output + sqrt_beta * sample
    if prediction_type == "sample":
        return model_output, (sample - sqrt_alpha * model_output) / sqrt_beta
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def dynamic_threshold(x0: np.ndarray, ratio: float, max_value: float) -> np.ndarray:
    """Imagen's dynamic thresholding: per sample, clip to the ``ratio`` quantile of |x0| (at least 1) and rescale."""
    flat = x0.reshape(x0.shape[0], -1)
    s = np.quantile(np.abs(flat), ratio, axis=1)  # numpy's default "linear" method is torch.quantile's
    s = np.clip(s, 1.0, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x0.shape)


def clean_x0(x0: np.ndarray, config: Any) -> np.ndarray:
    """Apply the config's dynamic thresholding or plain clipping to a predicted x0 (thresholding wins)."""
    if getattr(config, "thresholding", False):
        return dynamic_threshold(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
    if getattr(config, "clip_sample", False):
        return np.clip(x0, -config.clip_sample_range, config.clip_sample_range)
    return x0
