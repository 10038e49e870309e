"""Which operators go: greedy selection to a budget, by LD-Pruner score or by an ablation baseline.

Strategies (one registry, so the ablation runs them through the same code):

* ``ldpruner`` — lowest score per unit of cost saved first (the paper's score, cost-normalised); the cost
  is the budget's unit (MACs or parameters) or, ranked by ``latency``, the UNet-step time the candidate
  was measured to save — MACs do not turn into time one for one (attention, memory-bound layers);
* ``random`` — a seeded random order;
* ``magnitude`` — lowest mean |weight| of the operator's parameters first (a weight-magnitude baseline);
* ``bk-sdm`` — BK-SDM's fixed removal expressed in these modifications: the second (ResNet,
  transformer) pair of every down stage, the second pair of every up stage (its ResNet reduced to the
  1x1 shortcut, since up-block ResNets change channels), and the mid-block. No budget: it removes
  what it removes, which makes it the reference MAC budget of the ablation.

The budget is exact: after each pick the patched UNet's MACs (or parameters) are counted again, since
nested operators and stand-ins make savings non-additive.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # the selection is arithmetic on scores: torch-free, so the CLI lists the strategies cheaply
    from .ldpruner import Candidate

STRATEGIES: dict[str, Callable] = {}
#: what ldpruner divides a score by: the budget's unit (MACs or parameters) or the measured latency saved
RANK_BY = ("budget", "latency")


def overlaps(a: str, b: str) -> bool:
    """One operator contains the other (or they are the same)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def protected_modules(unet, protect: tuple[str, ...]) -> list[str]:
    """Names of the UNet's modules that match one of the ``protect`` glob patterns."""
    return [n for n, _ in unet.named_modules() if n and any(fnmatch.fnmatchcase(n, p) for p in protect)]


def register_strategy(name: str):
    def deco(fn):
        if name in STRATEGIES:
            raise ValueError(f"selection strategy {name!r} registered twice")
        STRATEGIES[name] = fn
        return fn

    return deco


@dataclass(frozen=True)
class Budget:
    target_macs: float | None = None  # fraction of UNet MACs to keep
    target_params: float | None = None  # fraction of UNet parameters to keep
    remove: int | None = None  # number of operators

    def __post_init__(self):
        given = [x for x in (self.target_macs, self.target_params, self.remove) if x is not None]
        if len(given) > 1:
            raise ValueError("give one budget: target_macs, target_params or remove")
        for frac in (self.target_macs, self.target_params):
            if frac is not None and not 0.0 < frac < 1.0:
                raise ValueError(f"a target fraction must be in (0, 1), got {frac}")
        if self.remove is not None and self.remove < 1:
            raise ValueError(f"remove must be at least 1, got {self.remove}")


def _saved(c: Candidate, cost: str) -> float:
    if cost == "latency":
        if c.latency_saved_s is None:
            raise ValueError(f"{c.op} has no measured latency: ranking by latency needs latency_repeat > 0")
        return c.latency_saved_s
    return c.params_saved if cost == "params" else c.macs_saved


@register_strategy("ldpruner")
def _by_score(candidates: list[Candidate], unet, *, cost: str = "macs", seed: int = 0) -> list[Candidate]:
    # candidates that save nothing (measured: nothing beyond timing noise) never go
    useful = [c for c in candidates if _saved(c, cost) > 0]
    return sorted(useful, key=lambda c: (c.score if c.score is not None else np.inf) / _saved(c, cost))


@register_strategy("random")
def _random(candidates, unet, *, cost: str = "macs", seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(candidates))
    return [candidates[i] for i in order]


@register_strategy("magnitude")
def _magnitude(candidates, unet, *, cost: str = "macs", seed: int = 0):
    def mean_abs(c: Candidate) -> float:
        params = [p.detach().abs().mean().item() for p in unet.get_submodule(c.op).parameters() if p.ndim > 1]
        return float(np.mean(params)) if params else np.inf

    return sorted(candidates, key=mean_abs)


BK_SDM_PATTERNS = (r"down_blocks\.\d+\.(resnets|attentions)\.1", r"up_blocks\.\d+\.(resnets|attentions)\.1",
                   r"mid_block")


@register_strategy("bk-sdm")
def _bk_sdm(candidates, unet, *, cost: str = "macs", seed: int = 0):
    wanted = [c for c in candidates if c.modification != "narrow" and any(re.fullmatch(p, c.op) for p in BK_SDM_PATTERNS)]
    return sorted(wanted, key=lambda c: c.op)


def budget_met(budget: Budget, picked: list[Candidate], measure: Callable[[list[Candidate]], float] | None) -> bool:
    if budget.remove is not None:
        return len(picked) >= budget.remove
    target = budget.target_params if budget.target_params is not None else budget.target_macs
    if target is None:
        return False  # no budget: the strategy's whole list (bk-sdm)
    return measure is not None and measure(picked) <= target


def select(candidates: list[Candidate], unet, budget: Budget, *, strategy: str = "ldpruner", seed: int = 0,
           measure: Callable[[list[Candidate]], float] | None = None, already: list[Candidate] = (),
           max_new: int | None = None, protect: tuple[str, ...] = (), rank_by: str = "budget") -> list[Candidate]:
    """Pick candidates in the strategy's order until the budget is met (or ``max_new`` picks).

    ``measure(selected) -> kept fraction`` (of MACs or parameters, as the budget says) counts the UNet
    with the selection applied; ``already`` are earlier picks (iterative pruning) that new ones must not
    overlap, and count toward the budget. ``protect``: glob patterns of module names never modified.
    ``rank_by``: what the score is divided by — ``budget`` (the budget's unit) or ``latency`` (measured).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if protect:  # no candidate may touch a protected module: be it, sit inside it, or contain it (removing a
        # transformer block would remove its protected cross-attention too)
        kept = protected_modules(unet, protect)
        candidates = [c for c in candidates if not any(overlaps(c.op, k) for k in kept)]
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}, got {rank_by!r}")
    cost = "latency" if rank_by == "latency" else "params" if budget.target_params is not None else "macs"
    order = STRATEGIES[strategy](candidates, unet, cost=cost, seed=seed)
    picked: list[Candidate] = list(already)
    new: list[Candidate] = []
    for cand in order:
        if budget_met(budget, picked, measure) or (max_new is not None and len(new) >= max_new):
            break
        if any(overlaps(cand.op, p.op) for p in picked):
            continue
        picked.append(cand)
        new.append(cand)
    return new
