"""Sampler configs: one frozen dataclass per sampler, fields named and defaulted exactly as diffusers' scheduler.

A diffusers ``scheduler_config.json`` dict round-trips through ``from_dict``/``to_dict``. Keys we do not model are
ignored, except the ones that would silently change the math if ignored (Karras sigmas, flow sigmas, ...): those are
refused with a ValueError unless they hold diffusers' default value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class NoiseScheduleConfig:
    """The training noise schedule and timestep spacing shared by every sampler (DDIM's defaults)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    trained_betas: tuple[float, ...] | None = None
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    rescale_betas_zero_snr: bool = False

    # Options diffusers has that this sampler does not implement, with the value that makes them a no-op.
    UNSUPPORTED: ClassVar[Mapping[str, Any]] = {}
    # Prediction types the diffusers scheduler itself accepts (PNDM, for one, has no "sample").
    PREDICTION_TYPES: ClassVar[tuple[str, ...]] = PREDICTION_TYPES

    def __post_init__(self) -> None:
        if self.trained_betas is not None:
            # JSON gives a list; a tuple keeps the config hashable and immutable.
            object.__setattr__(self, "trained_betas", tuple(float(b) for b in self.trained_betas))
        if self.prediction_type == "original_sample":  # Euler's older spelling of "sample"
            object.__setattr__(self, "prediction_type", "sample")
        if int(self.num_train_timesteps) != self.num_train_timesteps or self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be a positive integer, got {self.num_train_timesteps!r}")
        if self.trained_betas is None:
            _check_choice(self, "beta_schedule", BETA_SCHEDULES)
        elif len(self.trained_betas) != self.num_train_timesteps:
            raise ValueError(
                f"trained_betas has {len(self.trained_betas)} values but num_train_timesteps is "
                f"{self.num_train_timesteps}"
            )
        _check_choice(self, "prediction_type", self.PREDICTION_TYPES)
        _check_choice(self, "timestep_spacing", TIMESTEP_SPACINGS)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]):
        """Build from a diffusers scheduler config dict; unknown keys (``_class_name``, ...) are ignored."""
        for key, default in cls.UNSUPPORTED.items():
            if key in config and not _is_noop(config[key], default):
                raise ValueError(
                    f"{cls.__name__}: {key}={config[key]!r} is not supported by the numpy sampler "
                    f"(only {default!r})"
                )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["trained_betas"] is not None:
            out["trained_betas"] = list(out["trained_betas"])
        return out


@dataclass(frozen=True)
class ThresholdingConfig:
    """Imagen's dynamic thresholding of the predicted x0 (diffusers' DDIM, DPM-Solver and LCM have it)."""

    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0


@dataclass(frozen=True)
class DDIMConfig(ThresholdingConfig, NoiseScheduleConfig):
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    # Not a diffusers config key (diffusers takes eta per step call); > 0 makes each step draw caller noise.
    eta: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


@dataclass(frozen=True)
class EulerConfig(NoiseScheduleConfig):
    timestep_spacing: str = "linspace"
    final_sigmas_type: str = "zero"

    UNSUPPORTED: ClassVar[Mapping[str, Any]] = {
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "interpolation_type": "linear",
        "timestep_type": "discrete",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "final_sigmas_type", ("zero", "sigma_min"))


@dataclass(frozen=True)
class DPMSolverConfig(ThresholdingConfig, NoiseScheduleConfig):
    timestep_spacing: str = "linspace"
    solver_order: int = 2
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    euler_at_final: bool = False
    final_sigmas_type: str = "zero"
    lambda_min_clipped: float = -math.inf
    variance_type: str | None = None

    UNSUPPORTED: ClassVar[Mapping[str, Any]] = {
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "use_dynamic_shifting": False,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.solver_order not in (1, 2):
            raise ValueError(f"solver_order={self.solver_order!r}: the numpy DPM-Solver++ implements orders 1 and 2")
        if self.algorithm_type == "deis":  # diffusers silently runs DEIS configs as dpmsolver++; so do we
            object.__setattr__(self, "algorithm_type", "dpmsolver++")
        if self.algorithm_type != "dpmsolver++":
            raise ValueError(
                f"algorithm_type={self.algorithm_type!r}: only 'dpmsolver++' is implemented (no SDE or data-noise "
                "variants)"
            )
        if self.solver_type in ("logrho", "bh1", "bh2"):  # diffusers maps UniPC/DEIS solver types to midpoint
            object.__setattr__(self, "solver_type", "midpoint")
        _check_choice(self, "solver_type", ("midpoint", "heun"))
        _check_choice(self, "final_sigmas_type", ("zero", "sigma_min"))
        _check_choice(self, "variance_type", (None, "learned", "learned_range"))


@dataclass(frozen=True)
class PNDMConfig(NoiseScheduleConfig):
    skip_prk_steps: bool = False
    set_alpha_to_one: bool = False

    PREDICTION_TYPES: ClassVar[tuple[str, ...]] = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class LCMConfig(ThresholdingConfig, NoiseScheduleConfig):
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    original_inference_steps: int = 50
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    timestep_scaling: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.original_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"original_inference_steps={self.original_inference_steps} must lie in "
                f"[1, num_train_timesteps={self.num_train_timesteps}]"
            )


def _check_choice(config: Any, field: str, choices: tuple) -> None:
    value = getattr(config, field)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{field}={value!r}; choose one of {list(choices)}")


def _is_noop(value: Any, default: Any) -> bool:
    # Saved configs write disabled options as false or null interchangeably.
    if isinstance(default, bool):
        return not value
    return value is None or value == default
