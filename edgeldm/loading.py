"""``load_pipeline``: a zoo name or a user's diffusers folder -> a diffusers pipeline, offline.

Folders are checked first (:mod:`edgeldm.checkpoint`: typed, actionable errors from headers only), then
loaded by diffusers' and transformers' own ``from_pretrained`` with ``local_files_only`` — the same
code path a user's checkpoint and a shipped zoo checkpoint take.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._lazy import require
from .checkpoint import check_checkpoint
from .components import component_class, skipped_components
from .errors import CheckpointError, CheckpointNotFoundError
from .families import DEFAULT_FAMILIES, check_family
from .progress import progress_enabled
from .saving import remember_stored_dtypes
from .zoo import ZOO, build_preset, get_zoo_entry, preset_pipeline_class

logger = logging.getLogger("edgeldm")


def ensure_offline() -> None:
    """No model hub is ever contacted: set before diffusers / transformers read their constants."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def resolve_source(source: str | os.PathLike) -> tuple[str, Path | None]:
    """("folder", path) or ("single-file", path) for an existing path, ("preset", None) or ("checkpoint", path)
    for a zoo name."""
    from .single_file import is_single_file

    path = Path(source).expanduser()
    if path.exists():
        return ("single-file" if is_single_file(path) else "folder"), path
    if isinstance(source, str) and source in ZOO:
        entry = ZOO[source]
        return entry.kind, entry.folder if entry.kind == "checkpoint" else None
    if isinstance(source, str) and os.sep not in source and not source.startswith("."):
        get_zoo_entry(source)  # raises with the list of zoo names
    raise CheckpointNotFoundError(
        f"{path} does not exist",
        hint=f"pass a diffusers folder, a single-file checkpoint or a zoo model ({', '.join(sorted(ZOO))})"
    )


def load_pipeline(source: str | os.PathLike, *, allow_pickle: bool = False, seed: int = 0, dtype=None,
                  inpainting: bool = False, families=DEFAULT_FAMILIES):
    """Load a Stable-Diffusion-family pipeline from a diffusers folder, a single-file checkpoint (original SD
    layout, :mod:`edgeldm.single_file`) or a zoo name.

    ``allow_pickle`` admits ``.bin`` / ``.ckpt`` weights (read with ``torch.load(weights_only=True)``);
    ``seed`` only matters for zoo presets (seeded random weights); ``dtype`` casts on load; ``inpainting``
    admits an inpainting model (``edgeldm convert``; the other stages take text-to-image models); ``families``
    names the model families the caller takes (:mod:`edgeldm.families`; another family's model is refused with
    the commands that do take it).
    """
    ensure_offline()
    kind, path = resolve_source(source)
    if kind == "preset":
        check_family(source, preset_pipeline_class(str(source)), families)
        return build_preset(str(source), seed=seed, dtype=dtype)
    if kind == "single-file":
        from .single_file import load_single_file

        return load_single_file(path, allow_pickle=allow_pickle, dtype=dtype, inpainting=inpainting,
                                families=families)
    return load_pipeline_folder(path, allow_pickle=allow_pickle, dtype=dtype, inpainting=inpainting,
                                families=families)


def _pruning_plan(unet_folder: Path):
    from .compressor.plan import PLAN_FILE, read_plan

    return read_plan(unet_folder) if (unet_folder / PLAN_FILE).is_file() else None


def load_pipeline_folder(path: Path, *, allow_pickle: bool = False, dtype=None, inpainting: bool = False,
                         families=DEFAULT_FAMILIES):
    ensure_offline()
    checked = check_checkpoint(path, allow_pickle=allow_pickle, inpainting=inpainting, families=families)
    require("torch")
    pipeline_cls = component_class("diffusers", checked.pipeline_class)
    if not progress_enabled():  # --quiet: diffusers' own "Loading pipeline components" bar too
        require("diffusers.utils.logging").disable_progress_bar()
    logger.info("loading %s from %s", checked.pipeline_class, path)
    overrides = {}
    plan = _pruning_plan(path / "unet")
    if plan is not None:  # a pruned UNet: base architecture + replayed plan + surviving weights
        from .compressor.plan import load_pruned_unet

        overrides["unet"] = load_pruned_unet(path / "unet", plan, dtype=dtype)
        logger.info("pruned UNet: %d operations replayed from %s", len(plan.operations), path / "unet")
    try:
        pipe = pipeline_cls.from_pretrained(
            str(path),
            **overrides,
            local_files_only=True,
            # True refuses pickles outright; None lets diffusers fall back to .bin (after the user opted in)
            use_safetensors=None if (allow_pickle and checked.uses_pickle) else True,
            torch_dtype=dtype,
            **skipped_components(pipeline_cls),
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"diffusers could not load {path}: {exc}") from exc
    if (path / LORA_FILE).is_file():
        _fuse_lora(pipe, path)
    # so that a stage writing this model back keeps e.g. an fp16 text encoder fp16 (edgeldm.saving)
    remember_stored_dtypes(pipe, {name: files.dtype for name, files in checked.components.items()})
    for name in checked.family.weighted:
        getattr(pipe, name).eval()
    return pipe


#: diffusers' LoRA file name; a folder holding one beside its components (``edgeldm distill --mode lcm-lora``)
#: loads with the adapter fused into the UNet, so export and the runtimes see plain weights
LORA_FILE = "pytorch_lora_weights.safetensors"


def _fuse_lora(pipe, path: Path) -> None:
    from .lora import LoraSpec, fuse_loras

    fuse_loras(pipe, [LoraSpec(path / LORA_FILE)])
