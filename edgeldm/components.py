"""How to build a component from its config (what each family's pipeline is made of: :mod:`edgeldm.families`).

Shared by the zoo (seeded random weights), the checkpoint checker (meta models to compare shapes
against) and ``edgeldm info``; nothing here reads weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._lazy import require

#: input channels of an inpainting UNet: latents, mask, masked-image latents
INPAINT_CHANNELS = 9
#: listed in many model_index.json files but never needed on the edge; never loaded
SKIPPED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")


def inpainting_refused(path) -> str:
    """The one-line refusal of an inpainting model (file or folder) by a stage that takes text-to-image ones."""
    return (f"{path} is an inpainting model (a {INPAINT_CHANNELS}-channel UNet); `edgeldm info`, `convert` and "
            "`export` take it, the compression stages do not yet")


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def pipeline_class_of(folder: Path) -> str:
    """The pipeline class a diffusers layout's ``model_index.json`` names (configs only, nothing built)."""
    return read_json(Path(folder) / "model_index.json")["_class_name"]


def component_spec(model_index: dict, name: str) -> tuple[str, str] | None:
    """(library, class name) of component ``name`` in a ``model_index.json``, or None if absent/null."""
    spec = model_index.get(name)
    if not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] is None or spec[1] is None:
        return None
    return str(spec[0]), str(spec[1])


def component_class(library: str, class_name: str):
    module = require(library)
    try:
        return getattr(module, class_name)
    except AttributeError:
        from .errors import UnsupportedPipelineError

        raise UnsupportedPipelineError(f"{library} has no class {class_name!r}") from None


def build_model_from_config(library: str, class_name: str, folder: Path):
    """Instantiate a weighted component from the config in ``folder`` (weights left to the caller).

    Call it under :func:`edgeldm.zoo.random_init.empty_weights` (or accelerate's ``init_empty_weights``)
    to get a meta model without paying for the default init.
    """
    cls = component_class(library, class_name)
    if library == "diffusers":
        return cls.from_config(cls.load_config(str(folder)))
    if library == "transformers":
        return cls(cls.config_class.from_pretrained(str(folder)))
    from .errors import UnsupportedPipelineError

    raise UnsupportedPipelineError(f"component class {library}.{class_name} is neither a diffusers nor a transformers model")


#: what edgeldm never loads, said to a pipeline class that has the argument (SD 1.x's safety checker; SDXL has none)
_NOT_LOADED = {**dict.fromkeys(SKIPPED_COMPONENTS), "requires_safety_checker": False}


def skipped_components(pipeline_cls) -> dict:
    """The keyword arguments that leave :data:`SKIPPED_COMPONENTS` out of ``pipeline_cls`` (its ``__init__`` or
    ``from_pretrained``), for the arguments that class has."""
    import inspect

    accepted = inspect.signature(pipeline_cls.__init__).parameters
    return {k: v for k, v in _NOT_LOADED.items() if k in accepted}


def build_scheduler_from_config(library: str, class_name: str, folder: Path):
    cls = component_class(library, class_name)
    return cls.from_config(cls.load_config(str(folder)))


def vae_scale_factor(vae_config) -> int:
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def unet_downsampling(unet_config) -> int:
    """Latent sides must survive the UNet's downsamplings: a multiple of 2^(levels - 1)."""
    return 2 ** (len(unet_config["block_out_channels"]) - 1)


def size_multiple(vae_config, unet_config) -> int:
    """Image sides must be multiples of this: the VAE factor times the UNet's downsamplings."""
    return vae_scale_factor(vae_config) * unet_downsampling(unet_config)
