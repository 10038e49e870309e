"""Sampler names accepted on the command line -> diffusers scheduler classes (the torch reference path)."""

from __future__ import annotations

from ._lazy import require
from .errors import EdgeLDMError

SCHEDULERS: dict[str, tuple[str, dict]] = {}


def register_scheduler(name: str, class_name: str, **overrides) -> None:
    if name in SCHEDULERS or not name.islower():
        raise ValueError(f"scheduler name {name!r} is taken or not lower-case")
    SCHEDULERS[name] = (class_name, overrides)


register_scheduler("ddim", "DDIMScheduler")
register_scheduler("pndm", "PNDMScheduler", skip_prk_steps=True)
register_scheduler("euler", "EulerDiscreteScheduler")
register_scheduler("euler-a", "EulerAncestralDiscreteScheduler")
register_scheduler("dpm++2m", "DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", solver_order=2)
register_scheduler("lcm", "LCMScheduler")
register_scheduler("tcd", "TCDScheduler")

#: TCD's gamma, which diffusers takes per call (``pipe(..., eta=)``; the pipelines' default 0.0 would make TCD
#: deterministic): the scheduler's own step default, as the numpy sampler's ``TCDConfig.eta``
TCD_GAMMA = 0.3


def call_kwargs(pipe) -> dict:
    """What a pipeline call needs for its scheduler beyond the usual arguments (TCD's gamma)."""
    import inspect

    if type(pipe.scheduler).__name__ == "TCDScheduler" and "eta" in inspect.signature(pipe.__call__).parameters:
        return {"eta": TCD_GAMMA}
    return {}


def swap_scheduler(pipe, name: str):
    """Replace ``pipe.scheduler`` by scheduler ``name`` built from the same noise-schedule config."""
    if name not in SCHEDULERS:
        raise EdgeLDMError(f"unknown scheduler {name!r}", hint=f"choose one of {', '.join(SCHEDULERS)}")
    class_name, overrides = SCHEDULERS[name]
    cls = getattr(require("diffusers"), class_name)
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    return pipe
