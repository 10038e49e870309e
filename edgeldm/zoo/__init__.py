"""The model zoo: named models that need no download.

Two kinds of entry, one registry:

* **presets** — real architectures (``sd15``, ``sd21-base``, ``bk-sdm-small``, ``bk-sdm-tiny``, ``sdxl``) and
  test-sized ones (``tiny-random``, ``tiny-random-xl``) whose configs are embedded under ``configs/``; weights are seeded
  random (speed and memory do not depend on weight values).
* **checkpoints** — trained diffusers folders shipped inside the package (``tiny``, ``tiny-xl``), loaded by the
  very same code that loads a user's own folder.

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
    trained_on_scenes: bool = False  # trained on edgeldm's captioned scenes: its images can be scored exactly


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
    "sdxl": "Stable Diffusion XL base 1.0 architecture (UNet 2.57 B; CLIP ViT-L + OpenCLIP ViT-bigG text encoders "
            "with the pooled projection), seeded random weights",
    # SDXL's pruned students: SDXL's text encoders and VAE, their UNets' block layouts as ComfyUI's model
    # detection reads them from the released checkpoints (comfy/model_detection.py); the parameter counts match
    # the papers' (docs/models.md gives the sources)
    "ssd-1b": "Segmind SSD-1B architecture (SDXL UNet with transformer blocks removed: 1.33 B), seeded random",
    "segmind-vega": "Segmind-Vega architecture (SDXL UNet with 1/1/2 transformer blocks: 0.75 B), seeded random",
    "koala-700m": "KOALA-700M architecture (one ResNet per stage, 2/5 transformer blocks, no mid-block: 0.78 B), "
                  "seeded random",
    "koala-1b": "KOALA-1B architecture (one ResNet per stage, 2/6 transformer blocks: 1.16 B), seeded random",
    "tiny-random-xl": "test-sized SDXL architecture (two text encoders of different widths, pooled and time_ids "
                      "conditioning, a deeper transformer stack inside), random",
}.items():
    register_zoo_entry(ZooEntry(_name, _description, "preset", _configs(_name)))


# The trained checkpoints shipped inside the package, each by its trainer `python -m edgeldm.zoo.train_<name>`
# (log and command in <name>/TRAINING.md): the embedded default `tiny`, and its SDXL-architecture twin on the
# same scenes
for _name, _description in {
    "tiny": "the embedded default: SD-architecture text-to-image LDM trained by edgeldm on synthetic captioned "
            "scenes (64 px; CLIP BPE tokenizer, UNet2DConditionModel, AutoencoderKL f=8)",
    "tiny-xl": "SDXL-architecture text-to-image LDM trained by edgeldm on tiny's scenes (64 px; two CLIP text "
               "encoders with the pooled projection, text_time conditioning, a deeper innermost transformer "
               "stack; tiny's VAE)",
}.items():
    register_zoo_entry(ZooEntry(_name, _description, "checkpoint",
                                Path(str(resources.files("edgeldm.zoo").joinpath(_name))), trained_on_scenes=True))


def get_zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise CheckpointNotFoundError(
            f"{name!r} is neither an existing folder nor a zoo model",
            hint=f"zoo models: {', '.join(sorted(ZOO))}",
        ) from None


def preset_pipeline_class(name: str) -> str:
    """The pipeline class a preset's ``model_index.json`` names (read without building anything)."""
    from ..components import pipeline_class_of

    return pipeline_class_of(get_zoo_entry(name).folder)


def build_preset(name: str, *, seed: int = 0, device: str = "cpu", dtype=None):
    """The pipeline of preset ``name`` (its ``model_index.json`` names the class); ``device="meta"`` builds
    shapes only."""
    from .build import build_preset_pipeline

    entry = get_zoo_entry(name)
    if entry.kind != "preset":
        raise ValueError(f"{name!r} is a shipped checkpoint, not a preset: load it with edgeldm.load_pipeline")
    return build_preset_pipeline(entry.folder, seed=seed, device=device, dtype=dtype)


__all__ = ["ZOO", "ZooEntry", "register_zoo_entry", "get_zoo_entry", "build_preset", "preset_pipeline_class"]


def save_zoo_model(name: str, output, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write zoo model ``name`` as a diffusers folder (safetensors) at ``output``, atomically."""
    import logging

    from ..atomic import atomic_output_dir, check_output
    from ..families import FAMILIES
    from ..loading import load_pipeline
    from ..saving import save_pipeline

    get_zoo_entry(name)
    check_output(output, folder=True, overwrite=overwrite)
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        pipe = load_pipeline(name, seed=seed, families=tuple(FAMILIES))
        logging.getLogger("edgeldm").info("writing %s", output)
        save_pipeline(pipe, tmp)
    return Path(output)
