"""Pruning figures, measured side by side (issue: LD-Pruner).

    python -m edgeldm.benchmarks.prune_bench latency [--target-macs 0.65] [--size 256] [--repeat 5] [--threads 2]
                                                     [--rank-by budget|latency --samples 2 --score-steps 2]
    python -m edgeldm.benchmarks.prune_bench ablation [--finetune-steps 800] [--out DIR]

``latency``: the ``sd15`` preset UNet and the same UNet pruned to ``--target-macs``, both exported to
ONNX and timed alternately (A B A B …) in ONNX Runtime fp32, one guided step (batch 2) at ``--size`` px.
The preset's weights are random, so its LD-Pruner scores would mean nothing: the operators are picked
by weight magnitude here — the latency of a pruned architecture depends on what is removed, not on why —
unless ``--rank-by`` asks for LD-Pruner's selection: with ``latency`` its score is divided by the UNet-step
time each candidate was measured to save, which is exactly what changes what is removed.

``ablation``: on ``tiny``, at the MAC budget BK-SDM's fixed removal reaches, each selection strategy
(LD-Pruner score, random, weight magnitude, BK-SDM) prunes, is evaluated, is finetuned with the same
budget and data, and is evaluated again (``edgeldm eval`` metrics, 200 held-out prompts).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def latency(target_macs: float, size: int, repeat: int, threads: int, *, rank_by: str | None = None,
            samples: int = 2, score_steps: int = 2, latency_repeat: int = 3, cache: str | None = None) -> dict:
    import torch

    from ..compressor.ldpruner import ScoreConfig
    from ..compressor.prune import PruneConfig, prune_pipeline
    from ..compressor.selection import Budget
    from ..exporters.onnx_export import export_onnx
    from ..exporters.torch_modules import UNetModule
    from ..io_spec import unet_io
    from ..runtimes.backends import open_session
    from ..zoo import build_preset
    from .timing import alternate, summarize

    torch.set_num_threads(threads)
    pipe = build_preset("sd15")
    latent = size // pipe.vae_scale_factor
    io = unet_io(pipe.unet.config, latent_height=latent, latent_width=latent)
    out: dict = {"size": size, "threads": threads, "target_macs": target_macs}
    with tempfile.TemporaryDirectory(prefix="edgeldm-prune-bench-") as tmp:
        tmp = Path(tmp)
        export_onnx(UNetModule(pipe.unet).eval(), io, tmp / "original")
        t0 = time.perf_counter()
        if rank_by is None:  # weight magnitude: no scoring, no per-candidate timing
            config = PruneConfig(budget=Budget(target_macs=target_macs), strategy="magnitude",
                                 score=ScoreConfig(height=size, width=size, latency_repeat=0))
        else:  # LD-Pruner's selection (scores of random weights: only what it removes matters here)
            config = PruneConfig(budget=Budget(target_macs=target_macs), strategy="ldpruner", rank_by=rank_by,
                                 score=ScoreConfig(height=size, width=size, samples=samples, steps=score_steps,
                                                   latency_repeat=latency_repeat))
            out.update(strategy="ldpruner", rank_by=rank_by, samples=samples, score_steps=score_steps,
                       latency_repeat=latency_repeat)
        plan, _ = prune_pipeline(pipe, "sd15", config, cache_dir=Path(cache) if cache else None)
        out["selection_seconds"] = time.perf_counter() - t0
        out["macs"], out["params"] = plan.report["macs"], plan.report["params"]
        out["removed"] = [f"{o.modification} {o.op}" for o in plan.operations]
        export_onnx(UNetModule(pipe.unet).eval(), io, tmp / "pruned")
        del pipe
        rng = np.random.default_rng(0)
        feeds = {"sample": rng.standard_normal((2, 4, latent, latent)).astype(np.float32),
                 "timestep": np.asarray(500.0, dtype=np.float32),
                 "encoder_hidden_states": rng.standard_normal((2, 77, 768)).astype(np.float32)}
        sessions = {k: open_session("onnx", tmp / k / "model.onnx", io, threads=threads) for k in ("original", "pruned")}
        a, b = alternate(lambda: sessions["original"](**feeds), lambda: sessions["pruned"](**feeds), repeat=repeat)
        ratios = [y / x for x, y in zip(a, b)]
        out.update(original=summarize(a).to_dict(), pruned=summarize(b).to_dict(), ratio_per_pair=ratios,
                   ratio_median=float(np.median(ratios)))
    return out


def ablation(out_dir: Path, finetune_steps: int, prompts: int) -> dict:
    import torch

    from ..benchmarks.evaluate import EvalConfig, evaluate_pipeline
    from ..compressor.finetune import FinetuneConfig, finetune
    from ..compressor.prune import PruneConfig, prune_pipeline
    from ..compressor.selection import Budget
    from ..loading import load_pipeline

    torch.set_num_threads(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = load_pipeline("tiny")
    eval_config = EvalConfig(prompts=prompts)

    def evaluate(pipe) -> dict:
        m = evaluate_pipeline(pipe, eval_config).metrics
        return {"accuracy": m["accuracy"], "fd": m["fd"]}

    saved = out_dir / "ablation.json"
    results: dict = json.loads(saved.read_text()) if saved.is_file() else {}
    if results.get("finetune_steps") != finetune_steps or results.get("prompts") != prompts:
        results = {"original": evaluate(teacher), "finetune_steps": finetune_steps, "prompts": prompts,
                   "strategies": {}}
    budget = Budget(target_macs=results["budget_macs"]) if "budget_macs" in results else None
    data_file = out_dir / "finetune-bk-sdm" / "data.pt" if budget else None
    for strategy in ("bk-sdm", "ldpruner", "random", "magnitude"):
        if strategy in results["strategies"]:  # resume: a finished strategy stays as measured
            continue
        pipe = copy.deepcopy(teacher)
        config = PruneConfig(budget=budget or Budget(), strategy=strategy)
        t0 = time.perf_counter()
        plan, _ = prune_pipeline(pipe, "tiny", config, cache_dir=out_dir / "scores")
        row = {"prune_seconds": round(time.perf_counter() - t0, 1), "macs_kept": plan.report["macs"]["kept"],
               "params_kept": plan.report["params"]["kept"],
               "removed": [f"{o.modification} {o.op}" for o in plan.operations], "before": evaluate(pipe)}
        if budget is None:  # BK-SDM's fixed removal sets the budget the others must meet
            budget = Budget(target_macs=plan.report["macs"]["kept"])
            results["budget_macs"] = budget.target_macs
        work = out_dir / f"finetune-{strategy}"
        if data_file is not None and not (work / "data.pt").exists():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy(data_file, work / "data.pt")  # the same teacher data for every strategy
        summary = finetune(pipe, teacher, "tiny", FinetuneConfig(steps=finetune_steps), work=work)
        data_file = data_file or work / "data.pt"
        row["finetune_seconds"] = summary["seconds"]
        row["after"] = evaluate(pipe)
        results["strategies"][strategy] = row
        (out_dir / "ablation.json").write_text(json.dumps(results, indent=2))
        print(f"{strategy:10s} MACs {row['macs_kept']:.3f}  joint before {row['before']['accuracy']['joint']:.3f}  "
              f"after {row['after']['accuracy']['joint']:.3f}  FD {row['before']['fd']:.1f} -> {row['after']['fd']:.1f}",
              flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.prune_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    lat = sub.add_parser("latency", help="sd15 UNet step, pruned / original, ONNX Runtime fp32")
    lat.add_argument("--target-macs", type=float, default=0.65)
    lat.add_argument("--size", type=int, default=256)
    lat.add_argument("--repeat", type=int, default=5)
    lat.add_argument("--threads", type=int, default=2)
    lat.add_argument("--rank-by", choices=("budget", "latency"), default=None,
                     help="select with LD-Pruner's score ranked per MAC or per measured latency saved (default: "
                          "by weight magnitude, no scoring)")
    lat.add_argument("--samples", type=int, default=2, help="LD-Pruner calibration latents (with --rank-by)")
    lat.add_argument("--score-steps", type=int, default=2, help="sampler steps per calibration latent")
    lat.add_argument("--latency-repeat", type=int, default=3, help="timings per candidate (with --rank-by)")
    lat.add_argument("--cache", default=None, metavar="DIR",
                     help="score cache (with --rank-by): an interrupted run resumes from it. sd15 at 256 px with "
                          "--samples 1 --score-steps 2 --latency-repeat 3 took over 23 minutes on 2 cores")
    abl = sub.add_parser("ablation", help="tiny: selection strategies at BK-SDM's MAC budget, before/after finetune")
    abl.add_argument("--finetune-steps", type=int, default=800)
    abl.add_argument("--prompts", type=int, default=200)
    abl.add_argument("--out", default="prune-ablation")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)

    from ..loading import ensure_offline

    ensure_offline()
    if args.figure == "latency":
        res = latency(args.target_macs, args.size, args.repeat, args.threads, rank_by=args.rank_by,
                      samples=args.samples, score_steps=args.score_steps, latency_repeat=args.latency_repeat,
                      cache=args.cache)
        print(f"sd15 UNet at {args.size} px, ONNX Runtime fp32, {args.threads} threads: MACs kept "
              f"{res['macs']['kept']:.3f}, step pruned / original {res['ratio_median']:.3f} (median of "
              f"{len(res['ratio_per_pair'])} pairs; {res['pruned']['median']:.3f} s vs {res['original']['median']:.3f} s)")
    else:
        res = ablation(Path(args.out), args.finetune_steps, args.prompts)
    res["command"] = "python -m edgeldm.benchmarks.prune_bench " + " ".join(argv or sys.argv[1:])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
