"""Progress bars for anything slower than a second.

Bars go to stderr, are hidden when stderr is not a terminal, and follow the ``edgeldm`` logger's level,
so ``--quiet`` (WARNING) silences them without a global switch of our own.
"""

from __future__ import annotations

import logging
from typing import Iterable, TypeVar

T = TypeVar("T")
logger = logging.getLogger("edgeldm")


def progress_enabled() -> bool:
    return logger.isEnabledFor(logging.INFO)


def progress_bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A ``tqdm`` bar (``disable=None`` hides it off a terminal) that respects ``--quiet``."""
    from tqdm.auto import tqdm

    disable = None if progress_enabled() else True
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True, **kwargs)
