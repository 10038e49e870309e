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
