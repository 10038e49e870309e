"""``edgeldm prune``: score the UNet's operators, pick the cheapest to lose, save a reloadable pruned model."""

from __future__ import annotations

import datetime
import fnmatch
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..version import __version__
from ..errors import EdgeLDMError
from ..inventory import count_macs, unet_example_inputs
from .digest import weights_digest
from .ldpruner import Candidate, ScoreCache, ScoreConfig, default_config_for, enumerate_candidates, \
    score_candidates
from .score_config import DEFAULT_TARGET_MACS, RESCORE_EVERY
from .plan import PLAN_FILE, Operation, PruningPlan, read_plan
from .selection import Budget, budget_met, select

logger = logging.getLogger("edgeldm")


@dataclass(frozen=True)
class PruneConfig:
    budget: Budget = field(default_factory=lambda: Budget(target_macs=DEFAULT_TARGET_MACS))
    strategy: str = "ldpruner"  # or an ablation baseline: random, magnitude, bk-sdm
    score: ScoreConfig = field(default_factory=ScoreConfig)
    iterative: bool = False  # re-score the remaining operators after every `rescore_every` removals
    rescore_every: int = RESCORE_EVERY
    prompts_file: str | None = None
    seed: int = 0
    narrow_keep: float | None = None  # inner-channel fraction a `narrow` candidate keeps; None: no narrowing
    protect: tuple[str, ...] = ()  # glob patterns of modules never modified (nor any operator containing one)
    rank_by: str = "budget"  # ldpruner ranks by score per unit saved: of the budget (MACs / params) or latency


@contextmanager
def applied(unet, ops: list[Candidate]):
    """The UNet with ``ops`` applied, restored on exit (innermost undo first)."""
    undos = []
    try:
        for c in ops:
            undos.append(c.apply(unet))
        yield unet
    finally:
        for undo in reversed(undos):
            undo()


def _size(pipe, config: ScoreConfig) -> tuple[int, int]:
    c = default_config_for(pipe, config)
    return c.height, c.width


class UNetCost:
    """Kept fraction of the UNet's MACs or parameters with some operators applied: :meth:`kept` counts the
    modified UNet (the definition), :meth:`summed` adds up the operators' counted savings (what selection uses)."""

    def __init__(self, pipe, height: int, width: int):
        self.unet = pipe.unet
        self.inputs = unet_example_inputs(self.unet, height, width, vae_scale_factor=pipe.vae_scale_factor)
        self.macs0 = count_macs(self.unet, self.inputs).total
        self.params0 = sum(p.numel() for p in self.unet.parameters())

    def macs(self, ops=()) -> int:
        with applied(self.unet, list(ops)):
            return count_macs(self.unet, self.inputs).total

    def params(self, ops=()) -> int:
        with applied(self.unet, list(ops)):
            return sum(p.numel() for p in self.unet.parameters())

    def kept(self, ops, by: str) -> float:
        return self.params(ops) / self.params0 if by == "params" else self.macs(ops) / self.macs0

    def summed(self, ops, by: str) -> float:
        """:meth:`kept` from the candidates' own savings, without counting: exact for operators that do not
        overlap (a stand-in keeps its output's shape, so their savings add up; tested) — and free, where a
        count of an SD-size UNet is traced (~1.5 s on 2 cores) and selection asks after every pick."""
        total = self.params0 if by == "params" else self.macs0
        return 1.0 - sum(c.params_saved if by == "params" else c.macs_saved for c in ops) / total


def score_model(pipe, source: str, config: PruneConfig, *, cache_dir: Path | None = None,
                already: list[Candidate] = ()) -> list[Candidate]:
    """Every candidate with its MACs / parameters saved, LD-Pruner score and measured latency saved."""
    from ..calibration.prompts import calibration_prompts

    height, width = _size(pipe, config.score)
    with applied(pipe.unet, list(already)):
        cands = enumerate_candidates(pipe.unet, height=height, width=width, vae_scale_factor=pipe.vae_scale_factor,
                                     exclude=[c.op for c in already], narrow_keep=config.narrow_keep)
        if config.strategy != "ldpruner":
            return cands  # the baselines order without scores
        prompts = calibration_prompts(source, config.score.samples, prompts_file=config.prompts_file,
                                      seed=config.seed)
        context = {"source": str(source), "score": asdict(config.score), "prompts": prompts,
                   "already": [c.key for c in already]}
        if cache_dir is not None:  # the weights, not just the path: a folder changed in place scores afresh
            context["weights"] = weights_digest(pipe.unet, pipe.text_encoder)
        logger.info("scoring %d candidate modifications on %d calibration prompts (%s latents, %d steps)",
                    len(cands), len(prompts), config.score.variant, config.score.steps)
        return score_candidates(pipe, cands, prompts, config.score,
                                cache=ScoreCache(cache_dir, context))


def prune_pipeline(pipe, source: str, config: PruneConfig, *, cache_dir: Path | None = None) \
        -> tuple[PruningPlan, list[Candidate]]:
    """Select operators to the budget (re-scoring between batches with ``iterative``); apply them to ``pipe``."""
    budget = config.budget
    modules = [n for n, _ in pipe.unet.named_modules() if n]
    unmatched = [pat for pat in config.protect if not any(fnmatch.fnmatchcase(n, pat) for n in modules)]
    if unmatched:  # a typo would silently protect nothing
        raise EdgeLDMError(f"--protect {unmatched[0]!r} matches no module of the UNet",
                           hint="module names look like up_blocks.1.attentions.0.transformer_blocks.0.attn2; "
                                "`edgeldm info MODEL` lists the operators")
    if config.rank_by == "latency" and not config.score.latency_repeat:
        raise EdgeLDMError("ranking by latency needs the per-candidate latency measurement",
                           hint="give --latency-repeat 5 (or more), not 0")
    if budget.remove is not None:
        _check_removable(pipe.unet, budget.remove, config.protect)
    by = "params" if budget.target_params is not None else "macs"
    height, width = _size(pipe, config.score)
    cost = UNetCost(pipe, height, width)
    # an already pruned input (gradual pruning): its plan replays first, so the new plan still rebuilds from
    # config.json, and the budget counts against the unpruned architecture, the chain's first input
    prior = read_plan(Path(source) / "unet") if Path(source).is_absolute() and Path(source).is_dir() else None
    arch_macs, arch_params = _architecture_count(pipe.unet, cost.inputs) if prior else (cost.macs0, cost.params0)
    budget = _of_input(budget, cost.macs0 / arch_macs, cost.params0 / arch_params)
    measure = lambda sel: cost.summed(sel, by)  # noqa: E731
    picked: list[Candidate] = []
    scored: list[Candidate] = []
    while True:
        cands = score_model(pipe, source, config, cache_dir=cache_dir, already=picked)
        scored = scored or cands  # the first (un-pruned) scoring is the one reported
        new = select(cands, pipe.unet, budget, strategy=config.strategy, seed=config.seed, measure=measure,
                     already=picked, max_new=config.rescore_every if config.iterative else None,
                     protect=config.protect, rank_by=config.rank_by)
        picked += new
        if not new or not config.iterative or budget_met(budget, picked, measure):
            break
    if not picked:
        raise EdgeLDMError("nothing to prune: no candidate operator saves anything under this budget")
    if budget.remove is not None and len(picked) < budget.remove:
        logger.warning("removed %d operators of the %d asked: the others save nothing or overlap a pick",
                       len(picked), budget.remove)
    for c in picked:
        c.apply(pipe.unet)
    macs1, params1 = count_macs(pipe.unet, cost.inputs).total, sum(p.numel() for p in pipe.unet.parameters())
    target = config.budget.target_params if by == "params" else config.budget.target_macs
    kept = params1 / arch_params if by == "params" else macs1 / arch_macs  # the pruned UNet's own count
    if target is not None and kept > target + 1e-9:
        logger.warning("could only reach %.3f of the UNet %s (target %.3f): every candidate is used", kept, by, target)
    report = {
        "macs": {"original": cost.macs0, "pruned": macs1, "kept": macs1 / cost.macs0, "height": height,
                 "width": width},
        "params": {"original": cost.params0, "pruned": params1, "kept": params1 / cost.params0},
        "budget": asdict(config.budget), "strategy": config.strategy, "rank_by": config.rank_by,
        "iterative": config.iterative,
        "protect": list(config.protect),
        "score": asdict(config.score), "prompts_file": config.prompts_file,
        "removed": [c.to_dict() for c in picked],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgeldm_version": __version__,
    }
    if prior is not None:  # "original" / "kept" above count against the input
        report["previous"] = prior.report  # the input's own pruning (and finetune) record
        report["budget_of_input"] = asdict(budget)
        report["macs"].update(architecture=arch_macs, kept_of_architecture=macs1 / arch_macs)
        report["params"].update(architecture=arch_params, kept_of_architecture=params1 / arch_params)
    new_ops = [Operation(c.op, c.type, c.modification, c.params) for c in picked]
    plan = PruningPlan(base=str(source), operations=(list(prior.operations) if prior else []) + new_ops,
                       report=report)
    return plan, scored


def _check_removable(unet, remove: int, protect: tuple[str, ...]) -> None:
    """``--remove N`` beyond what can go together is refused before scoring (minutes at SD scale): at most
    one pick per innermost operator, since picks may not overlap, and none touching a protected module."""
    from ..inventory import operator_inventory
    from .selection import overlaps, protected_modules

    kept = protected_modules(unet, protect)
    ops = [op.name for op in operator_inventory(unet) if not any(overlaps(op.name, k) for k in kept)]
    innermost = [a for a in ops if not any(b.startswith(a + ".") for b in ops)]
    if remove > len(innermost):
        raise EdgeLDMError(f"--remove {remove} asks for more operators than can go together: this UNet has "
                           f"{len(innermost)} that do not contain one another ({len(ops)} candidates"
                           f"{', protected ones left out' if protect else ''})",
                           hint=f"give --remove {len(innermost)} or fewer, or a budget (--target-macs 0.65)")


def _architecture_count(unet, inputs: dict) -> tuple[int, int]:
    """MACs and parameters of the unpruned architecture (``unet.config``), counted on the meta device."""
    from diffusers import UNet2DConditionModel

    from ..zoo.random_init import empty_weights

    with empty_weights():
        base = UNet2DConditionModel.from_config(unet.config)
    return count_macs(base.eval(), inputs).total, sum(p.numel() for p in base.parameters())


def _of_input(budget: Budget, macs_share: float, params_share: float) -> Budget:
    """A budget in fractions of the unpruned architecture, as fractions of an input that keeps ``*_share`` of it."""
    for name, target, share in (("macs", budget.target_macs, macs_share), ("params", budget.target_params,
                                                                          params_share)):
        if target is None or share >= 1.0 - 1e-9:
            continue
        if target >= share:
            raise EdgeLDMError(f"the model keeps {share:.1%} of its unpruned architecture's UNet {name} already: "
                               f"--target-{name} {target} asks for no more pruning",
                               hint=f"--target-{name} is a fraction of the unpruned architecture; give one under "
                                    f"{share:.3f}")
        return Budget(**{f"target_{name}": target / share})
    return budget


def save_pruned(pipe, plan: PruningPlan, out: str | Path, *, overwrite: bool = False,
                protect: tuple = (), stage: str = "prune") -> Path:
    """A standard diffusers folder (safetensors) + ``unet/edgeldm_pruning.json``; written atomically."""
    import json

    from ..atomic import atomic_output_dir
    from ..lineage import write_lineage
    from ..saving import save_pipeline

    with atomic_output_dir(out, overwrite=overwrite, protect=protect) as tmp:
        save_pipeline(pipe, tmp)
        (tmp / "unet" / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        write_lineage(tmp, plan.base, stage)
    return Path(out)
