"""edgeldm.runtimes.samplers — torch-free numpy samplers that match diffusers' schedulers step for step.

Usage (one sampler object may serve many concurrent generations; all per-generation data is in ``state``)::

    sampler = sampler_from_scheduler_config(json.load(open("bundle/scheduler/scheduler_config.json")))
    plan = sampler.plan(4)
    state = sampler.initial_state(plan)
    latents = initial_noise * plan.init_noise_sigma
    for t in plan.timesteps:
        model_output = unet(sampler.scale_model_input(latents, plan, state), t, ...)
        noise = rng.standard_normal(latents.shape) if sampler.requires_noise(plan, state) else None
        latents, denoised, state = sampler.step(model_output, latents, plan, state, noise=noise)

numpy only: never import torch or diffusers here (``edgeldm.runtimes`` must import without them).
"""

from .base import Sampler, SamplerPlan, SamplerState, StepResult
from .config import DDIMConfig, DPMSolverConfig, EulerConfig, LCMConfig, NoiseScheduleConfig, PNDMConfig
from .ddim import DDIMPlan, DDIMSampler
from .dpm_solver import DPMSolverMultistepSampler, DPMSolverPlan, DPMSolverState
from .euler import EulerPlan, EulerSampler
from .lcm import LCMPlan, LCMSampler
from .pndm import PNDMPlan, PNDMSampler, PNDMState
from .registry import DIFFUSERS_SCHEDULER_NAMES, SAMPLERS, register_sampler, sampler_from_scheduler_config

__all__ = [
    "DIFFUSERS_SCHEDULER_NAMES",
    "SAMPLERS",
    "DDIMConfig",
    "DDIMPlan",
    "DDIMSampler",
    "DPMSolverConfig",
    "DPMSolverMultistepSampler",
    "DPMSolverPlan",
    "DPMSolverState",
    "EulerConfig",
    "EulerPlan",
    "EulerSampler",
    "LCMConfig",
    "LCMPlan",
    "LCMSampler",
    "NoiseScheduleConfig",
    "PNDMConfig",
    "PNDMPlan",
    "PNDMSampler",
    "PNDMState",
    "Sampler",
    "SamplerPlan",
    "SamplerState",
    "StepResult",
    "register_sampler",
    "sampler_from_scheduler_config",
]
