"""Model families: what a Stable-Diffusion-family pipeline is made of, one file per family.

A family names its diffusers pipeline classes, its components (how many text encoders and tokenizers) and the
pipelines it refuses with a reason of their own (an SDXL refiner). Everything that walks a model's components —
the checkpoint checker, the zoo builder, the loaders, ``edgeldm info`` — reads them from here, so adding a
family is one file in this package plus its zoo configs, not edits in every module.

Stages say which families they take (``load_pipeline(..., families=...)``); a model of another family is
refused with one line that says which commands do take it. This module is torch-free.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

#: components every family has besides its text encoders and tokenizers
COMMON_COMPONENTS = ("unet", "vae", "scheduler")


@dataclass(frozen=True)
class ModelFamily:
    name: str  # registry key: "sd", "sdxl"
    label: str  # what users call it: "SD 1.x / 2.x", "SDXL"
    pipelines: tuple[str, ...]  # text-to-image pipeline classes (model_index.json's ``_class_name``)
    inpainting_pipelines: tuple[str, ...] = ()  # 9-channel UNets: read by info / convert / export
    text_encoders: tuple[str, ...] = ("text_encoder",)
    tokenizers: tuple[str, ...] = ("tokenizer",)
    #: pipeline class -> why it is refused (a folder of such a class gets that reason, not "unsupported")
    refused: dict = field(default_factory=dict)
    #: the commands that take this family today: the hint of a stage that refuses it
    taken_by: str = ""
    #: the text encoders' hidden layer the UNet reads: -1 their last (SD 1.x / 2.x), -2 the penultimate (SDXL);
    #: another than the last makes their graphs output every layer's hidden states, as optimum exports them
    text_layer: int = -1
    #: the text encoder whose pooled, projected embedding the UNet takes as ``text_embeds`` (SDXL's second)
    pooled_from: str | None = None

    @property
    def components(self) -> tuple[str, ...]:
        """Every component a pipeline of this family needs, in ``model_index.json`` order."""
        return (*self.text_encoders, *self.tokenizers, *COMMON_COMPONENTS)

    @property
    def weighted(self) -> tuple[str, ...]:
        """The components that carry weights (what compression, shape checks and ``info`` walk)."""
        return (*self.text_encoders, "unet", "vae")

    @property
    def all_pipelines(self) -> tuple[str, ...]:
        return self.pipelines + self.inpainting_pipelines


FAMILIES: dict[str, ModelFamily] = {}
#: what a stage takes unless it says otherwise: the family every stage was built for
DEFAULT_FAMILIES = ("sd",)


def register_family(family: ModelFamily) -> ModelFamily:
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    taken = {p for f in FAMILIES.values() for p in (*f.all_pipelines, *f.refused)}
    clash = taken & {*family.all_pipelines, *family.refused}
    if clash:
        raise ValueError(f"model family {family.name!r}: pipeline classes {sorted(clash)} belong to another family")
    FAMILIES[family.name] = family
    return family


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def family_of_pipeline(pipeline_class: str) -> ModelFamily | None:
    """The family whose pipelines (or refused pipelines) include ``pipeline_class``; None if no family knows it."""
    for family in FAMILIES.values():
        if pipeline_class in family.all_pipelines or pipeline_class in family.refused:
            return family
    return None


def family_of(pipe) -> ModelFamily:
    """The family of a loaded diffusers pipeline (by its class name)."""
    family = family_of_pipeline(type(pipe).__name__)
    if family is None:
        from ..errors import UnsupportedPipelineError

        raise UnsupportedPipelineError(f"{type(pipe).__name__} belongs to no model family edgeldm knows")
    return family


def supported_pipelines() -> tuple[str, ...]:
    return tuple(p for f in FAMILIES.values() for p in f.all_pipelines)


def check_family(where, pipeline_class: str, families=DEFAULT_FAMILIES) -> ModelFamily:
    """The family of ``pipeline_class`` if the caller takes it; otherwise one typed error saying why not.

    ``where`` names the model in the message (a path or a zoo name).
    """
    from ..errors import UnsupportedPipelineError

    family = family_of_pipeline(pipeline_class)
    if family is None:
        raise UnsupportedPipelineError(
            f"{where} holds a {pipeline_class}; edgeldm supports {', '.join(supported_pipelines())}",
            hint="SD3, Flux and video pipelines have other components and are not supported yet")
    if pipeline_class in family.refused:
        # the reason says what does load; taken_by (which commands take the family) would not apply to it
        raise UnsupportedPipelineError(f"{where} holds a {pipeline_class}: {family.refused[pipeline_class]}")
    if family.name not in families:
        takes = " or ".join(FAMILIES[name].label for name in families)
        raise UnsupportedPipelineError(f"{where} is an {family.label} model; this command takes {takes} models",
                                       hint=family.taken_by or None)
    return family


_load_all()

__all__ = ["ModelFamily", "FAMILIES", "DEFAULT_FAMILIES", "register_family", "family_of_pipeline", "family_of",
           "supported_pipelines", "check_family"]
