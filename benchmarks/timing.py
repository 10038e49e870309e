"""The one timing primitive: perf_counter, explicit warm-up, N repeats, median / p90 / min / max."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median: float
    p90: float
    min: float
    max: float
    repeat: int
    warmup: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples: list[float], warmup: int = 0) -> Timing:
    if not samples:
        raise ValueError("no timing samples")
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, max(0, int(round(0.9 * (len(ordered) - 1)))))]
    return Timing(statistics.median(ordered), p90, ordered[0], ordered[-1], len(samples), warmup)


def measure(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> Timing:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"repeat must be >= 1 and warmup >= 0, got {repeat}, {warmup}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples, warmup)


def synchronizer(device) -> Callable[[], None]:
    """What a clock reading must wait for after torch work on ``device``.

    CUDA (and MPS) queue kernels and return at once, so a timing taken without waiting for the queue
    measures how fast Python launches work, not the work; on the CPU this is a no-op.
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.synchronize
    if kind == "mps":
        return torch.mps.synchronize
    return lambda: None


def alternate(fn_a: Callable[[], object], fn_b: Callable[[], object], *, repeat: int = 5,
              warmup: int = 1) -> tuple[list[float], list[float]]:
    """Time A and B alternately (A B A B …) so machine noise hits both alike; returns both sample lists."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    for _ in range(repeat):
        for fn, out in ((fn_a, a), (fn_b, b)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return a, b


#: the largest high-water mark this process had before a ResidentPeak window reset it (Linux)
_PEAK_BEFORE_RESETS = 0


def peak_rss_bytes() -> int:
    """Peak resident memory of this process as the OS counts it, over its whole life.

    Linux: ``VmHWM`` of ``/proc/self/status`` (the high-water mark of this process image; ``getrusage``'s
    ``ru_maxrss`` would carry over the parent's peak through fork + exec), and the marks it had before
    :class:`ResidentPeak` windows reset it. Elsewhere ``getrusage`` (bytes on macOS).
    """
    import resource
    import sys

    mark = _high_water_mark()
    if mark is not None:
        return max(mark, _PEAK_BEFORE_RESETS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _high_water_mark() -> int | None:
    """``VmHWM`` in bytes (Linux), or None."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ResidentPeak:
    """The resident peak over a window of code: Linux resets the process's high-water mark (``5`` written to
    ``/proc/self/clear_refs``, Linux >= 4.0) at :meth:`start_window` and reads it at :meth:`window_peak`, so a
    component's figure is the resident memory its own call reached (weights held by the others included: what
    the device must have free at that moment). Where the mark cannot be reset, windows report None."""

    def __init__(self):
        self.available = _high_water_mark() is not None and self._reset()

    @staticmethod
    def _reset() -> bool:
        global _PEAK_BEFORE_RESETS
        mark = _high_water_mark()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            return False
        _PEAK_BEFORE_RESETS = max(_PEAK_BEFORE_RESETS, mark or 0)  # the process figure keeps what came before
        return True

    def start_window(self) -> None:
        if self.available:
            self._reset()

    def window_peak(self) -> int | None:
        return _high_water_mark() if self.available else None
