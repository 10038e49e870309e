"""Low-memory mode (``Text2Image(low_memory=True)``, ``edgeldm run --low-memory``): one component's weights
resident at a time.

A phone app dies of its peak resident memory, not its average: holding the text encoder, the UNet and the VAE at
once adds their weights, and a backend's memory arena keeps the largest activations of every graph it ran. Here
each session opens on its first call and is released when its phase of the pipeline ends (prompt encoding,
denoising, decoding), the backend's low-memory options apply (``Backend.low_memory_options``: ONNX Runtime's
arena off), and the C heap is trimmed after a release so the freed pages go back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from typing import Callable


class LazySession:
    """A backend session opened on first use and closed by :meth:`release`; callable like the session."""

    def __init__(self, component: str, opener: Callable[[], object]):
        self.component = component
        self._opener = opener
        self._session = None

    @property
    def session(self):
        """The backend session, opened now if it is not."""
        if self._session is None:
            self._session = self._opener()
        return self._session

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def __call__(self, **inputs):
        return self.session(**inputs)

    def release(self) -> None:
        if self._session is not None:
            self._session = None
            gc.collect()  # the session may sit in a reference cycle (bound methods, wrapped outputs)
            trim_heap()

    def __repr__(self) -> str:
        return f"LazySession({self.component!r}, {'open' if self.is_open else 'closed'})"


def trim_heap() -> None:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``): without it a released session's memory
    stays resident in the allocator's arenas and the next component adds to the peak. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        pass
