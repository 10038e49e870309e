"""Calibration prompt sets: text files, one prompt per line (``#`` comments), and ``tiny``'s own captions.

Pruning scores, finetuning and (later) quantization calibrate on prompts, not images. A model derived
from ``tiny`` calibrates on captions of its training distribution; any other model on the shipped
general set (``data/prompts-general.txt``) or the user's ``--prompts FILE``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import EdgeLDMError

GENERAL_PROMPTS = "prompts-general.txt"


def read_prompt_file(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise EdgeLDMError(f"prompt file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise EdgeLDMError(f"prompt file {path} is not UTF-8 text: {exc}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise EdgeLDMError(f"prompt file {path} has no prompts (one per line; # starts a comment)")
    return prompts


def general_prompts() -> list[str]:
    return read_prompt_file(Path(str(resources.files("edgeldm.calibration").joinpath("data", GENERAL_PROMPTS))))


def calibration_prompts(model: str, n: int, *, prompts_file: str | Path | None = None, seed: int = 0) -> list[str]:
    """``n`` prompts (cycled if the set is smaller): the file's, ``tiny``'s captions, or the general set."""
    if n < 1:
        raise EdgeLDMError(f"need at least one calibration prompt, got {n}")
    if prompts_file is not None:
        pool = read_prompt_file(prompts_file)
    else:
        from ..lineage import derives_from_scenes

        if derives_from_scenes(str(model)):
            from .scenes import eval_prompts

            # the train split: calibration must not peek at the held-out scenes that eval scores
            return [c for c, _ in eval_prompts(n, seed=seed + 7, split="train")]
        pool = general_prompts()
    return [pool[i % len(pool)] for i in range(n)]
