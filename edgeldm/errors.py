"""One exception hierarchy for everything edgeldm reports to a user.

Every error carries a message that says what is wrong and, where there is one,
what to do about it. The CLI prints ``str(error)`` without a traceback and exits
with ``error.exit_code``.
"""

from __future__ import annotations


class EdgeLDMError(Exception):
    """Base class: an actionable problem with the user's input or environment."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class MissingDependencyError(EdgeLDMError, ImportError):
    """An optional dependency (an extra) is needed for this feature but not installed."""


# --- checkpoints -----------------------------------------------------------------------------


class CheckpointError(EdgeLDMError):
    """The model given by the user cannot be loaded."""


class CheckpointNotFoundError(CheckpointError):
    """The path does not exist and the name is not a zoo model."""


class NotADiffusersFolderError(CheckpointError):
    """The folder exists but has no readable ``model_index.json``."""


class UnsupportedPipelineError(CheckpointError):
    """The folder holds a diffusers pipeline that edgeldm does not compress."""


class MissingComponentError(CheckpointError):
    """A component named in ``model_index.json`` (or required by edgeldm) is absent."""


class CorruptWeightsError(CheckpointError):
    """A weights file is truncated, not a safetensors file, or unreadable."""


class WeightShapeMismatchError(CheckpointError):
    """Tensors in the weights do not match the architecture declared by the config."""


class PickledWeightsError(CheckpointError):
    """Only pickled weights (.bin / .ckpt / .pt) were found and the caller did not opt in."""


class LatentsOverflowError(EdgeLDMError):
    """Sampling produced inf / NaN latents (an absurd guidance scale, or an fp16 graph out of range)."""

    def __init__(self, guidance: float, steps: int):
        super().__init__(f"the sampler's latents overflowed (inf / NaN) at guidance {guidance:g}, {steps} steps",
                         hint="lower the guidance scale; an fp16 graph may also overflow where fp32 does not")


# --- outputs ---------------------------------------------------------------------------------


class OutputExistsError(EdgeLDMError):
    """The output path exists and ``--overwrite`` was not given."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI runners, ``timeout`` and service managers send), raised like Ctrl-C so that the same
    cleanup runs: temporary outputs removed, worker processes stopped."""
