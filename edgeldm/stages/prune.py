"""``edgeldm.prune``: LD-Pruner on a model's UNet, written as a diffusers folder with a replayable plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from ..arguments import GUIDANCE, SEED
from ..compressor.score_config import DEFAULT_TARGET_MACS, RESCORE_EVERY, ScoreConfig
from ..compressor.scores import SCORES
from ..compressor.selection import RANK_BY, STRATEGIES
from ..errors import EdgeLDMError
from ..options import check_exclusive, check_positive, option, resolve
from .common import StageResult, check_output, existing, is_main_process, remove_work

#: the model families LD-Pruner takes (SDXL: its transformer blocks are operators of their own)
FAMILIES = ("sd", "sdxl")

logger = logging.getLogger("edgeldm")


@dataclass(frozen=True)
class PruneOptions:
    target_macs: float | None = option(
        None, f"fraction of the UNet's MACs to keep, e.g. {DEFAULT_TARGET_MACS} (the default when no budget is "
              "given); of the unpruned architecture, also when MODEL is pruned already (gradual pruning: prune 0.7 "
              "-> finetune -> prune 0.65)", group="budget")
    target_params: float | None = option(
        None, "fraction of the UNet's parameters to keep (of the unpruned architecture too)", group="budget")
    remove: int | None = option(None, "number of operators to remove", group="budget")
    strategy: str = option("ldpruner", "ldpruner (the score), or an ablation baseline: random order, lowest weight "
                                       "magnitude, BK-SDM's fixed removal", choices=lambda: list(STRATEGIES))
    rank_by: str = option("budget", "ldpruner ranks candidates by score per unit saved: of the budget (MACs or "
                                    "parameters) or of the UNet-step latency measured per candidate (needs "
                                    "--latency-repeat > 0; candidates measured to save no time never go)",
                          choices=RANK_BY)
    prompts: str | None = option(None, "calibration prompts, one per line (default: tiny's captions for "
                                       "tiny-derived models, else the shipped general set)", metavar="FILE")
    samples: int = option(ScoreConfig.samples, "calibration prompts x seeds per latent set")
    steps: int = option(ScoreConfig.steps, "sampler steps per calibration latent")
    guidance: float = option(ScoreConfig.guidance, "guidance scale of the calibration runs, >= 0", parse=GUIDANCE)
    variant: str = option(ScoreConfig.variant, "what the score compares: " + "; ".join(
        f"{v.name}: {v.summary}" for v in SCORES.values()) + " (paired sees prompt-conditional damage such as "
        "colour binding)", choices=lambda: list(SCORES))
    score_size: int | None = option(
        None, "image side the calibration latents are generated at (default: the model's); e.g. 256 scores an "
              "SD 1.5 UNet 4x cheaper on a CPU. The budget is counted at this size too", metavar="PX")
    latency_repeat: int = option(ScoreConfig.latency_repeat,
                                 "UNet-step timings per candidate for the latency-saved column; 0 skips")
    narrow_keep: float | None = option(
        None, "also consider narrowing ResNet blocks and feed-forwards to keep fraction F of their inner channels "
              "(Torch-Pruning dependency groups), e.g. 0.5; off by default: on tiny it recovered worse than "
              "whole-operator removal at the same MACs (docs/prune.md)", metavar="F")
    protect: tuple[str, ...] = option(
        (), "never modify modules matching GLOB, nor an operator containing one (repeatable), e.g. '*.attn2' keeps "
            "every cross-attention and so every transformer block whole", repeat=True, metavar="GLOB")
    iterative: bool = option(False, "re-score the remaining operators after every --rescore-every removals")
    rescore_every: int = option(RESCORE_EVERY, "removals between re-scorings")
    seed: int = option(0, "seed of the calibration latents / random strategy", parse=SEED)
    device: str | None = option(None, "torch device that scores and prunes, e.g. cuda, cuda:1, cpu (default: the "
                                      "process's accelerate device - a GPU when there is one, each process its own "
                                      "under accelerate launch)")

    def config(self):
        """The pruner's own configuration (``compressor.prune.PruneConfig``)."""
        from ..compressor.prune import PruneConfig
        from ..compressor.selection import Budget

        check_exclusive(self)
        check_positive(self, "samples", "steps", "rescore_every", "score_size")
        if self.narrow_keep is not None and not 0.0 < self.narrow_keep < 1.0:
            raise EdgeLDMError(f"--narrow-keep must be in (0, 1), got {self.narrow_keep}")
        try:
            budget = Budget(target_macs=self.target_macs, target_params=self.target_params, remove=self.remove)
            if budget == Budget() and self.strategy != "bk-sdm":
                budget = Budget(target_macs=DEFAULT_TARGET_MACS)
        except ValueError as exc:
            raise EdgeLDMError(str(exc)) from None
        return PruneConfig(budget=budget, strategy=self.strategy, iterative=self.iterative,
                           rescore_every=self.rescore_every, prompts_file=self.prompts, seed=self.seed,
                           narrow_keep=self.narrow_keep, protect=tuple(self.protect), rank_by=self.rank_by,
                           score=ScoreConfig(samples=self.samples, steps=self.steps, guidance=self.guidance,
                                             variant=self.variant, seed=self.seed, height=self.score_size,
                                             width=self.score_size, latency_repeat=self.latency_repeat))


def _load(model, options: PruneOptions, allow_pickle: bool):
    from accelerate import PartialState

    from ..devices import torch_device
    from ..loading import load_pipeline

    device = torch_device(options.device, PartialState().device)
    pipe = load_pipeline(str(model), allow_pickle=allow_pickle, families=FAMILIES)
    if options.score_size:
        from ..components import size_multiple

        multiple = size_multiple(pipe.vae.config, pipe.unet.config)
        if options.score_size % multiple:
            raise EdgeLDMError(f"--score-size {options.score_size} is not a multiple of {multiple}",
                               hint=f"this model's image sides are multiples of {multiple} (VAE factor x UNet "
                                    "downsamplings)")
    return pipe.to(device)


def score_operators(model: str | Path, options: PruneOptions | None = None, *, allow_pickle: bool = False,
                    cache_dir: str | Path | None = None, **kwargs) -> StageResult:
    """Score every pruning candidate of ``model``'s UNet (LD-Pruner) and prune nothing.

    ``details["candidates"]`` lists them, lowest score (cheapest to remove) first.
    """
    from ..compressor.prune import score_model
    from ..lineage import lineage_base

    options = resolve(PruneOptions, options, kwargs)
    config = replace(options.config(), strategy="ldpruner")
    source = lineage_base(str(model))
    pipe = _load(model, options, allow_pickle)
    cands = score_model(pipe, source, config, cache_dir=Path(cache_dir) if cache_dir else None)
    report = {"model": source, "score": config.score.__dict__,
              "candidates": sorted((c.to_dict() for c in cands), key=lambda c: c["score"])}
    return StageResult("score", None, {"candidates": len(report["candidates"])}, report)


def prune(model: str | Path, output: str | Path, options: PruneOptions | None = None, *, overwrite: bool = False,
          allow_pickle: bool = False, cache_dir: str | Path | None = None, **kwargs) -> StageResult:
    """Prune ``model``'s UNet to the options' budget and write the pruned model to ``output``.

    Scores are cached in ``cache_dir`` (default ``OUTPUT.work/scores``, removed once the model is written): an
    interrupted run resumes from it.
    Under ``accelerate launch`` the processes share the scoring and the main one writes; the others return a
    result without an output.
    """
    from ..compressor.prune import prune_pipeline, save_pruned
    from ..lineage import lineage_base

    options = resolve(PruneOptions, options, kwargs)
    config = options.config()
    check_output(output, overwrite, inputs=(str(model),))
    cache = Path(cache_dir) if cache_dir else Path(f"{output}.work") / "scores"
    pipe = _load(model, options, allow_pickle)
    plan, _ = prune_pipeline(pipe, lineage_base(str(model)), config, cache_dir=cache)
    if not is_main_process():  # the other processes only helped score
        return StageResult("prune", None, {})
    save_pruned(pipe, plan, output, overwrite=overwrite, protect=existing(str(model)))
    if cache_dir is None:  # the default cache only served to resume this run; a given one is the caller's
        remove_work(Path(output))
    inherited = len(plan.operations) - len(plan.report["removed"])  # an already pruned input's operations first
    for o in plan.operations[inherited:]:
        logger.info("  %-8s %s", o.modification, o.op)
    return StageResult("prune", Path(output), pruned_metrics(output), plan.to_dict(), {"inherited": inherited})


def pruned_metrics(model) -> dict:
    """What a prune gate reads: size, and MACs / parameters kept of the unpruned architecture."""
    from ..compressor.plan import read_plan
    from .common import weights_bytes

    plan = read_plan(Path(model) / "unet")
    macs, params = plan.report["macs"], plan.report["params"]  # against the unpruned architecture, if chained
    return {"size_bytes": weights_bytes(model), "macs_kept": macs.get("kept_of_architecture", macs["kept"]),
            "params_kept": params.get("kept_of_architecture", params["kept"]), "operators": len(plan.operations)}
