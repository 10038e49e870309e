"""Where a model came from: the lineage every edgeldm stage records in its output folder.

A stage that writes a model (prune, finetune, distill) puts ``edgeldm_source.json`` (``{"base": ...,
"stage": ...}``) in it; a bundle's ``edgeldm.json`` names its source model. Following them back answers
"does this derive from ``tiny``?" — which decides whether the exact quality metrics apply, and which
calibration prompts fit.
"""

from __future__ import annotations

import json
from pathlib import Path

LINEAGE_FILE = "edgeldm_source.json"


def write_lineage(folder: Path, base: str, stage: str, **extra) -> None:
    (Path(folder) / LINEAGE_FILE).write_text(json.dumps({"base": str(base), "stage": stage, **extra}, indent=2) + "\n")


def read_lineage(source: str | Path) -> dict | None:
    """The lineage record of a model folder, or None (zoo names, folders without one, unreadable files)."""
    f = Path(source) / LINEAGE_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


#: how a model samples unless it or the user says otherwise: 25 guided steps, or 4 for an LCM UNet
STANDARD_SAMPLING = {"steps": 25, "guidance": 7.5}
LCM_SAMPLING = {"steps": 4, "guidance": 8.0}


def sampling_defaults(source: str | Path | None, guidance_embedding: bool) -> dict:
    """Steps and guidance a model samples with unless told otherwise.

    A model written by ``edgeldm distill`` records its own (``sampling`` in its lineage file: 4 steps; an
    LCM-LoRA student samples without guidance); otherwise LCM UNets (``guidance_embedding``) get 4 steps at
    guidance 8, others 25 at 7.5.
    """
    if source is not None:
        recorded = (read_lineage(source) or {}).get("sampling")
        if isinstance(recorded, dict) and {"steps", "guidance"} <= set(recorded):
            return {"steps": int(recorded["steps"]), "guidance": float(recorded["guidance"]),
                    "guidance_embedding": guidance_embedding}
    return {**(LCM_SAMPLING if guidance_embedding else STANDARD_SAMPLING), "guidance_embedding": guidance_embedding}


def default_sampling_of(path: str | Path) -> dict:
    """Steps and guidance an artifact (bundle, model folder or zoo name) samples with by default, without
    loading it."""
    import json

    from .manifest import load_manifest

    if (Path(path) / "edgeldm.json").is_file():
        return dict(load_manifest(Path(path))["defaults"])
    try:  # a UNet with a guidance embedding is an LCM even without edgeldm's lineage file
        embedded = bool(json.loads((Path(path) / "unet" / "config.json").read_text()).get("time_cond_proj_dim"))
    except (OSError, ValueError):
        embedded = False  # a zoo name: none of them is an LCM
    return sampling_defaults(path, embedded)


def lineage_base(source: str | Path) -> str:
    """The model a zoo name / folder / bundle source is, or was made from (itself if no record)."""
    if str(source) in _zoo_names():
        return str(source)
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def _zoo_names() -> set[str]:
    from .zoo import ZOO

    return set(ZOO)


def lineage_chain(source: str | Path, limit: int = 8):
    """``source``, then what it was made from, back to the root, as recorded: a bundle's ``source.model``, a
    model folder's ``edgeldm_source.json`` ``base`` (written by the compression stages and ``convert``)."""
    import json

    current = str(source)
    for _ in range(limit + 1):
        yield current
        path = Path(current)
        if not path.is_dir():
            return
        for name, key in (("edgeldm.json", ("source", "model")), (LINEAGE_FILE, ("base",))):
            f = path / name
            if f.is_file():
                try:
                    value = json.loads(f.read_text())
                    for k in key:
                        value = value[k]
                except (ValueError, KeyError, TypeError):
                    continue
                current = str(value)
                break
        else:
            return


def adapters_of(source: str | Path) -> dict:
    """The adapters (LoRA files, a replacement VAE) baked into a model along its lineage (``edgeldm convert``)."""
    for step in lineage_chain(source):
        adapters = (read_lineage(step) or {}).get("adapters")
        if isinstance(adapters, dict):
            return adapters
    return {}


def derives_from_scenes(source: str) -> bool:
    """Was this model made from a zoo model trained on edgeldm's scenes (``tiny``, ``tiny-xl``), directly or
    through a bundle / a compression stage? Its prompts are then scene captions and its images can be scored.

    Follows a bundle's ``source.model`` and an ``edgeldm_source.json`` (``{"base": ...}``, written by the
    compression stages) back to the root (:func:`lineage_chain`).
    """
    from .zoo import ZOO

    scene_models = [e for e in ZOO.values() if e.trained_on_scenes]
    folders = {Path(e.folder).resolve() for e in scene_models}
    names = {e.name for e in scene_models}
    return any(step in names or (Path(step).exists() and Path(step).resolve() in folders)
               for step in lineage_chain(source))
