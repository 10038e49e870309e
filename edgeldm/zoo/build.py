"""Assemble a pipeline from a preset's embedded configs with seeded random weights."""

from __future__ import annotations

import logging
from pathlib import Path

from .._lazy import require
from ..components import (
    build_model_from_config,
    build_scheduler_from_config,
    component_class,
    component_spec,
    read_json,
    skipped_components,
)
from ..families import FAMILIES, check_family
from .clip_bpe import clip_tokenizer
from .random_init import empty_weights, fill_seeded_

logger = logging.getLogger("edgeldm")


def build_components(config_dir: Path, *, seed: int = 0, device: str = "cpu", dtype=None,
                     tokenizers: dict | None = None, only: tuple[str, ...] | None = None) -> dict:
    """Components of the pipeline described by ``config_dir`` (a diffusers layout of configs).

    Weighted components get seeded random weights, or stay on the meta device (``device="meta"``: shapes
    only, what ``edgeldm info`` needs). Each tokenizer is the real CLIP one built from its folder's
    ``tokenizer_config.json`` unless ``tokenizers`` passes it in (by component name). ``only`` builds just
    the named components (an SDXL UNet alone is 10 GB: a benchmark of it should not also hold the rest).
    """
    index = read_json(config_dir / "model_index.json")
    family = check_family(config_dir, index["_class_name"], tuple(FAMILIES))
    components = {}
    for name in family.components:
        if only is not None and name not in only:
            continue
        library, class_name = component_spec(index, name)
        folder = config_dir / name
        if name in family.weighted:
            with empty_weights():
                model = build_model_from_config(library, class_name, folder)
            if device != "meta":
                # seeds are drawn per parameter name: a second text encoder (SDXL) names its own, so that it
                # does not repeat the first one's values; the SD components keep the names they always had
                namespace = "" if name in ("text_encoder", "unet", "vae") else f"{name}."
                fill_seeded_(model, seed, desc=f"{name}: seeded weights", dtype=dtype, namespace=namespace)
            components[name] = model.eval()
        elif name in family.tokenizers:
            given = (tokenizers or {}).get(name)
            components[name] = given or clip_tokenizer(read_json(folder / "tokenizer_config.json"))
        else:
            components[name] = build_scheduler_from_config(library, class_name, folder)
    return components


def build_preset_pipeline(config_dir: Path, *, seed: int = 0, device: str = "cpu", dtype=None):
    require("torch")
    index = read_json(config_dir / "model_index.json")
    pipeline_cls = component_class("diffusers", index["_class_name"])
    components = build_components(config_dir, seed=seed, device=device, dtype=dtype)
    logger.debug("built preset %s (seed %d, device %s)", config_dir.name, seed, device)
    return pipeline_cls(**components, **skipped_components(pipeline_cls))
