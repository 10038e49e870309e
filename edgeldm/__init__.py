"""edgeldm: shrink Stable-Diffusion-family models for laptops, phones and embedded GPUs.

Importing ``edgeldm`` (or ``edgeldm.runtimes``) never imports torch, diffusers or transformers; the
functions below import them on first use.
"""

from __future__ import annotations

from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptWeightsError,
    EdgeLDMError,
    MissingComponentError,
    MissingDependencyError,
    NotADiffusersFolderError,
    OutputExistsError,
    PickledWeightsError,
    UnsupportedPipelineError,
    WeightShapeMismatchError,
)
from .version import __version__
from . import _compat

_compat.install()


def load_pipeline(source, *, allow_pickle: bool = False, seed: int = 0, dtype=None, families=("sd",)):
    """Load a diffusers folder, a single file or a zoo model as a diffusers pipeline; ``families`` names the model
    families taken (``("sd", "sdxl")`` admits SDXL; see :mod:`edgeldm.loading`)."""
    from .loading import load_pipeline as _load

    return _load(source, allow_pickle=allow_pickle, seed=seed, dtype=dtype, families=families)


def describe_model(source, *, height: int | None = None, width: int | None = None, allow_pickle: bool = False) -> dict:
    """What ``edgeldm info`` prints, as a dict (see :mod:`edgeldm.info`)."""
    from .info import describe_model as _describe

    return _describe(source, height=height, width=width, allow_pickle=allow_pickle)


#: the library API (see docs/python-api.md): stage functions and their options, imported on first use so that
#: ``import edgeldm`` stays light and torch-free
_STAGE_API = ("convert", "ConvertOptions", "prune", "score_operators", "finetune", "distill", "distill_vae", "export", "quantize", "evaluate",
              "bench", "compress", "StageResult", "PruneOptions", "FinetuneOptions", "DistillOptions",
              "DistillVaeOptions", "ExportOptions", "QuantizeOptions", "EvaluateOptions", "BenchOptions")


def __getattr__(name: str):
    if name in _STAGE_API:
        from .stages import api

        return api(name)
    raise AttributeError(f"module 'edgeldm' has no attribute {name!r}")


__all__ = [
    "__version__",
    "load_pipeline",
    "describe_model",
    *_STAGE_API,
    "EdgeLDMError",
    "MissingDependencyError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "NotADiffusersFolderError",
    "UnsupportedPipelineError",
    "MissingComponentError",
    "CorruptWeightsError",
    "WeightShapeMismatchError",
    "PickledWeightsError",
    "OutputExistsError",
]
