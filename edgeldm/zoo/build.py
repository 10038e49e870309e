"""Assemble a pipeline from a preset's embedded configs with seeded random weights."""

from __future__ import annotations

import logging
from pathlib import Path

from .._lazy import require
from ..components import (
    REQUIRED_COMPONENTS,
    WEIGHTED_COMPONENTS,
    build_model_from_config,
    build_scheduler_from_config,
    component_class,
    component_spec,
    read_json,
)
from .clip_bpe import clip_tokenizer
from .random_init import empty_weights, fill_seeded_

logger = logging.getLogger("edgeldm")


def build_components(config_dir: Path, *, seed: int = 0, device: str = "cpu", dtype=None,
                     tokenizer=None) -> dict:
    """Components of the pipeline described by ``config_dir`` (a diffusers layout of configs).

    Weighted components get seeded random weights, or stay on the meta device (``device="meta"``: shapes
    only, what ``edgeldm info`` needs). The tokenizer is the real CLIP one built from the folder's
    ``tokenizer_config.json`` unless one is passed in.
    """
    index = read_json(config_dir / "model_index.json")
    components = {}
    for name in REQUIRED_COMPONENTS:
        library, class_name = component_spec(index, name)
        folder = config_dir / name
        if name in WEIGHTED_COMPONENTS:
            with empty_weights():
                model = build_model_from_config(library, class_name, folder)
            if device != "meta":
                fill_seeded_(model, seed, desc=f"{name}: seeded weights", dtype=dtype)
            components[name] = model.eval()
        elif name == "tokenizer":
            components[name] = tokenizer or clip_tokenizer(read_json(folder / "tokenizer_config.json"))
        else:
            components[name] = build_scheduler_from_config(library, class_name, folder)
    return components


def build_preset_pipeline(config_dir: Path, *, seed: int = 0, device: str = "cpu", dtype=None):
    require("torch")
    index = read_json(config_dir / "model_index.json")
    pipeline_cls = component_class("diffusers", index["_class_name"])
    components = build_components(config_dir, seed=seed, device=device, dtype=dtype)
    logger.debug("built preset %s (seed %d, device %s)", config_dir.name, seed, device)
    return pipeline_cls(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
