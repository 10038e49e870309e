"""The model zoo: named models that need no download.

Two kinds of entry, one registry:

* **presets** — real architectures (``sd15``, ``sd21-base``, ``bk-sdm-small``, ``bk-sdm-tiny``) and a
  test-sized one (``tiny-random``) whose configs are embedded under ``configs/``; weights are seeded
  random (speed and memory do not depend on weight values).
* **checkpoints** — trained diffusers folders shipped inside the package, loaded by the very same
  code that loads a user's own folder.

This module is torch-free; building a model imports torch lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import CheckpointNotFoundError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    kind: str  # "preset" (configs + seeded random weights) or "checkpoint" (shipped trained weights)
    folder: Path  # configs for a preset, the diffusers folder for a checkpoint


ZOO: dict[str, ZooEntry] = {}


def register_zoo_entry(entry: ZooEntry) -> ZooEntry:
    if entry.name in ZOO:
        raise ValueError(f"zoo entry {entry.name!r} is registered twice")
    if entry.kind not in ("preset", "checkpoint"):
        raise ValueError(f"zoo entry {entry.name!r}: unknown kind {entry.kind!r}")
    ZOO[entry.name] = entry
    return entry


def _configs(name: str) -> Path:
    return Path(str(resources.files("edgeldm.zoo").joinpath("configs", name)))


for _name, _description in {
    "sd15": "Stable Diffusion v1.5 architecture (UNet 859.5 M, CLIP ViT-L/14 text encoder), seeded random weights",
    "sd21-base": "Stable Diffusion 2.1-base architecture (OpenCLIP ViT-H text encoder), seeded random weights",
    "bk-sdm-small": "BK-SDM-Small architecture (SD v1.5 UNet, one block pair less per stage, no mid-block), random",
    "bk-sdm-tiny": "BK-SDM-Tiny architecture (BK-SDM-Small without the innermost stage), seeded random weights",
    "tiny-random": "test-sized SD architecture (diffusers' dummy components, real CLIP vocabulary), random",
}.items():
    register_zoo_entry(ZooEntry(_name, _description, "preset", _configs(_name)))


# The embedded default model, trained by `python -m edgeldm.zoo.train_tiny` (log and command in tiny/TRAINING.md)
register_zoo_entry(ZooEntry(
    "tiny",
    "the embedded default: SD-architecture text-to-image LDM trained by edgeldm on synthetic captioned scenes "
    "(64 px; CLIP BPE tokenizer, UNet2DConditionModel, AutoencoderKL f=8)",
    "checkpoint",
    Path(str(resources.files("edgeldm.zoo").joinpath("tiny"))),
))


def get_zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise CheckpointNotFoundError(
            f"{name!r} is neither an existing folder nor a zoo model",
            hint=f"zoo models: {', '.join(sorted(ZOO))}",
        ) from None


def build_preset(name: str, *, seed: int = 0, device: str = "cpu", dtype=None):
    """A ``StableDiffusionPipeline`` for preset ``name``; ``device="meta"`` builds shapes only."""
    from .build import build_preset_pipeline

    entry = get_zoo_entry(name)
    if entry.kind != "preset":
        raise ValueError(f"{name!r} is a shipped checkpoint, not a preset: load it with edgeldm.load_pipeline")
    return build_preset_pipeline(entry.folder, seed=seed, device=device, dtype=dtype)


__all__ = ["ZOO", "ZooEntry", "register_zoo_entry", "get_zoo_entry", "build_preset"]


def save_zoo_model(name: str, output, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write zoo model ``name`` as a diffusers folder (safetensors) at ``output``, atomically."""
    import logging

    from ..atomic import atomic_output_dir, check_output
    from ..loading import load_pipeline
    from ..saving import save_pipeline

    get_zoo_entry(name)
    check_output(output, folder=True, overwrite=overwrite)
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        pipe = load_pipeline(name, seed=seed)
        logging.getLogger("edgeldm").info("writing %s", output)
        save_pipeline(pipe, tmp)
    return Path(output)
