"""What every stage function shares: the result object, output checks, sizes on disk, the main-process test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: the folders that hold weights, in a model and in a bundle (tokenizer, scheduler and configs are not counted)
WEIGHT_FOLDERS = ("text_encoder", "unet", "vae", "vae_decoder", "vae_encoder")

#: the help of the training stages' --teacher-steps
TEACHER_STEPS_HELP = ("sampler steps of each teacher latent (fewer: cheaper data, e.g. for a smoke run of a large model "
                      "on a CPU)")


@dataclass(frozen=True)
class StageResult:
    """What a stage made and measured.

    ``metrics`` are the figures a recipe gate reads (``joint_accuracy``, ``size_bytes``, ...); ``details`` the
    full record (a bundle's manifest, a pruning plan, an evaluation's per-image data).
    """

    stage: str
    output: Path | None
    metrics: dict
    details: dict = field(default_factory=dict, repr=False)
    extra: dict = field(default_factory=dict, repr=False)  # stage-specific objects (images, samples)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={short(v)}" for k, v in self.metrics.items())
        where = f" -> {self.output}" if self.output is not None else ""
        return f"<{self.stage}{where}: {shown}>"


def short(value) -> str:
    """A metric as printed: floats to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def check_output(path, overwrite: bool, *, folder: bool = True, inputs: tuple = ()) -> None:
    """Before any work: outputs are never replaced silently, a folder never by a file (nor the reverse), never
    put inside an input, and an output that cannot be written fails now, not after the work (atomic writers
    check again at the rename)."""
    from ..atomic import check_output as _check

    _check(path, folder=folder, overwrite=overwrite, protect=existing(*inputs))


def existing(*paths) -> tuple:
    """The inputs that are folders or files on disk (a zoo name is not): what an output may not overwrite."""
    return tuple(p for p in paths if p is not None and Path(p).exists())


def same_model(a: str, b: str) -> bool:
    """Whether two MODEL arguments name the same model: one zoo name, or one folder by two spellings."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def is_main_process() -> bool:
    """False in the helper processes of ``accelerate launch``: they train or score, the main one writes."""
    from accelerate import PartialState

    return PartialState().is_main_process


def weights_bytes(path: str | Path) -> int:
    """Bytes of the weights (or graphs) a model folder or bundle ships: its component folders only.

    The tokenizer and configs are the same text either way, so they are left out of size ratios. A bundle's
    components hold every backend it was exported for: compare single-backend bundles.
    """
    from ..benchmarks.targets import folder_bytes

    folders = [f for f in Path(path).iterdir() if f.is_dir()] if Path(path).is_dir() else []
    # every text encoder a family has (SDXL's text_encoder_2, its largest), not only the first
    return sum(folder_bytes(f) for f in folders if f.name in WEIGHT_FOLDERS or f.name.startswith("text_encoder"))


def remove_work(out: Path) -> None:
    """``OUT.work`` holds a training run's resumable state; it is spent once the output is written."""
    import shutil

    shutil.rmtree(f"{out}.work", ignore_errors=True)
