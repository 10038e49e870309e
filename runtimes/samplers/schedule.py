"""The training noise schedule (betas -> alphas_cumprod) and the timestep spacings every sampler shares.

The tables are built in float32, like diffusers builds them, because that is the table the model was trained
against (``add_noise`` reads the float32 ``alphas_cumprod``); the samplers then do their per-step arithmetic in
float64. Float32 ``linspace`` is the one place we cannot be bit-exact with torch (its vectorised kernel rounds
differently on different CPUs); numpy's correctly rounded values differ from it by at most one ulp of a beta.
"""

from __future__ import annotations

import math

import numpy as np

from .config import NoiseScheduleConfig


def betas_for_alpha_bar(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """The "squaredcos_cap_v2" (improved-DDPM cosine) schedule, float32 like diffusers'."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return np.asarray(betas, dtype=np.float32)


def make_betas(config: NoiseScheduleConfig) -> np.ndarray:
    n = config.num_train_timesteps
    if config.trained_betas is not None:
        betas = np.asarray(config.trained_betas, dtype=np.float32)
    elif config.beta_schedule == "linear":
        betas = np.linspace(config.beta_start, config.beta_end, n).astype(np.float32)
    elif config.beta_schedule == "scaled_linear":
        # Stable Diffusion's schedule: linear in sqrt(beta); the square is taken in float32 as diffusers does.
        betas = np.linspace(config.beta_start**0.5, config.beta_end**0.5, n).astype(np.float32) ** 2
    elif config.beta_schedule == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(n)
    else:  # the config validates this; kept for a config built by hand with object.__setattr__
        raise ValueError(f"unknown beta_schedule {config.beta_schedule!r}")
    if config.rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas


def cumprod_like_torch(alphas: np.ndarray) -> np.ndarray:
    # torch's CPU cumprod accumulates float32 in float64 and rounds each output; this matches it bit for bit.
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Rescale betas to zero terminal SNR (arXiv 2305.08891, Algorithm 1), in float32 like diffusers."""
    alphas_bar_sqrt = np.sqrt(cumprod_like_torch(np.float32(1.0) - betas))
    first, last = alphas_bar_sqrt[0], alphas_bar_sqrt[-1]
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt**2
    alphas = np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return (np.float32(1.0) - alphas).astype(np.float32)


def make_alphas_cumprod(config: NoiseScheduleConfig, *, zero_snr_floor: bool = False) -> np.ndarray:
    """alphas_cumprod as a read-only float32 table of length num_train_timesteps.

    ``zero_snr_floor``: Euler and DPM-Solver divide by sqrt(alphas_cumprod), so with a zero terminal SNR diffusers
    replaces the final 0 by 2**-24; DDIM, PNDM and LCM keep the exact 0.
    """
    table = cumprod_like_torch(np.float32(1.0) - make_betas(config))
    if config.rescale_betas_zero_snr and zero_snr_floor:
        table[-1] = 2.0**-24
    table.flags.writeable = False
    return table


def spaced_timesteps(
    spacing: str, num_train_timesteps: int, num_inference_steps: int, steps_offset: int, *, round_linspace: bool = True
) -> np.ndarray:
    """Descending timesteps (float64 holding diffusers' values) for DDIM, PNDM and Euler.

    The expressions are diffusers' own on purpose: e.g. "trailing" uses a float arange whose length depends on
    rounding, and parity means inheriting that too. Euler does not round "linspace" (fractional timesteps).
    """
    n_train, n = num_train_timesteps, num_inference_steps
    if spacing == "linspace":
        timesteps = np.linspace(0, n_train - 1, n)
        if round_linspace:
            timesteps = timesteps.round()
        return timesteps[::-1].copy()
    if spacing == "leading":
        step_ratio = n_train // n
        return (np.arange(0, n) * step_ratio).round()[::-1].astype(np.float64) + steps_offset
    if spacing == "trailing":
        step_ratio = n_train / n
        return np.round(np.arange(n_train, 0, -step_ratio)) - 1
    raise ValueError(f"timestep_spacing={spacing!r}; choose one of 'leading', 'trailing', 'linspace'")


def check_num_inference_steps(num_inference_steps: int, num_train_timesteps: int) -> int:
    if isinstance(num_inference_steps, bool) or int(num_inference_steps) != num_inference_steps:
        raise ValueError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
    n = int(num_inference_steps)
    if not 1 <= n <= num_train_timesteps:
        raise ValueError(f"num_inference_steps={n} must lie in [1, num_train_timesteps={num_train_timesteps}]")
    return n


def consistency_timesteps(num_train_timesteps: int, original_steps: int, num_inference_steps: int,
                          strength: float = 1.0) -> np.ndarray:
    """The timesteps of a consistency-distilled sampler (LCM, TCD): ``num_inference_steps`` evenly picked entries of
    the ``original_steps`` schedule it was distilled on, of which ``strength`` < 1 (image-to-image) keeps the least
    noisy part, as diffusers' ``LCMScheduler`` / ``TCDScheduler.set_timesteps`` compute them."""
    n = check_num_inference_steps(num_inference_steps, num_train_timesteps)
    if n > original_steps:
        raise ValueError(
            f"num_inference_steps={n} cannot exceed original_inference_steps={original_steps}: the timesteps are a "
            "subset of the schedule the model was distilled on"
        )
    k = num_train_timesteps // original_steps
    kept = int(original_steps * strength)
    if kept // n < 1:
        raise ValueError(f"strength {strength} keeps {kept} of the {original_steps} distillation timesteps, "
                         f"fewer than the {n} steps asked for")
    origin = (np.arange(1, kept + 1) * k - 1)[::-1]
    picks = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return origin[picks].astype(np.int64)
