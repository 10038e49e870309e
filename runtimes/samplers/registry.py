"""The one sampler registry, filled by ``@register_sampler``, and the bridge from diffusers scheduler configs."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, TypeVar

SAMPLERS: dict[str, type] = {}
# diffusers scheduler class name -> our sampler name, for reading a bundle's scheduler_config.json.
DIFFUSERS_SCHEDULER_NAMES: dict[str, str] = {}

_NAME = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")
T = TypeVar("T", bound=type)


def register_sampler(name: str, *, diffusers_class: str | None = None) -> Callable[[T], T]:
    """Class decorator: register a ``Sampler`` subclass under ``name`` (lower-case, not yet taken).

    ``diffusers_class`` is the diffusers scheduler the sampler reproduces, so that a ``scheduler_config.json``
    whose ``_class_name`` is that class picks this sampler.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"sampler name {name!r} is invalid: use lower-case letters, digits and '+', '.', '_', '-' "
            "(e.g. 'dpm++2m')"
        )
    if name in SAMPLERS:
        raise ValueError(f"sampler name {name!r} is already registered by {SAMPLERS[name].__qualname__}")
    if diffusers_class is not None and diffusers_class in DIFFUSERS_SCHEDULER_NAMES:
        raise ValueError(
            f"diffusers class {diffusers_class!r} is already mapped to sampler "
            f"{DIFFUSERS_SCHEDULER_NAMES[diffusers_class]!r}"
        )

    def decorate(cls: T) -> T:
        cls.name = name
        cls.diffusers_class_name = diffusers_class
        SAMPLERS[name] = cls
        if diffusers_class is not None:
            DIFFUSERS_SCHEDULER_NAMES[diffusers_class] = name
        return cls

    return decorate


def sampler_from_scheduler_config(config: Mapping[str, Any], name: str | None = None):
    """Build a sampler from a diffusers ``scheduler_config.json`` dict.

    ``name`` (one of ``SAMPLERS``) overrides the config's ``_class_name``, e.g. to run an SD checkpoint whose
    config says PNDMScheduler with "dpm++2m": the noise schedule keys carry over, sampler-specific ones are
    ignored, just like diffusers' ``Scheduler.from_config(other.config)``.
    """
    _load_builtin_samplers()
    if name is None:
        class_name = config.get("_class_name")
        if class_name not in DIFFUSERS_SCHEDULER_NAMES:
            supported = ", ".join(sorted(DIFFUSERS_SCHEDULER_NAMES))
            raise ValueError(
                f"scheduler _class_name {class_name!r} has no numpy sampler; supported: {supported} "
                f"(or pass name= one of {sorted(SAMPLERS)})"
            )
        name = DIFFUSERS_SCHEDULER_NAMES[class_name]
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; registered: {sorted(SAMPLERS)}")
    return SAMPLERS[name].from_scheduler_config(config)


def sampler_from_manifest(manifest: Mapping[str, Any], name: str | None = None):
    """The sampler of a bundle manifest's ``scheduler`` entry (its config, the class named beside it), or of
    ``name``; ``ValueError`` as :func:`sampler_from_scheduler_config`."""
    config = dict(manifest["scheduler"]["config"])
    config.setdefault("_class_name", manifest["scheduler"]["class"])
    return sampler_from_scheduler_config(config, name)


#: modules of this package that hold no sampler
_NOT_SAMPLERS = frozenset({"base", "config", "registry", "schedule"})


def _load_builtin_samplers() -> None:
    """Import every sampler module of this package: each registers itself (``@register_sampler``), so a new
    sampler is its own file (its config dataclass included, on ``config.NoiseScheduleConfig``) and its golden
    test; nothing here or in ``__init__`` lists it."""
    import pkgutil
    from importlib import import_module

    for info in pkgutil.iter_modules(_package_path()):
        if info.name not in _NOT_SAMPLERS and not info.name.startswith("_"):
            import_module(f"{__package__}.{info.name}")


def _package_path() -> list[str]:
    import sys

    return list(sys.modules[__package__].__path__)
