"""Pruning figures, measured side by side (issue: LD-Pruner).

    python -m edgeldm.benchmarks.studies.prune_bench latency [--target-macs 0.65] [--size 256] [--repeat 5] [--threads 2]
                                                     [--rank-by budget|latency --samples 2 --score-steps 2]
    python -m edgeldm.benchmarks.studies.prune_bench latency --backend torch --device cuda [--dtype float16] [--size 512]
    python -m edgeldm.benchmarks.studies.prune_bench latency --model sdxl --like ssd-1b --size 512 [--repeat 3]
    python -m edgeldm.benchmarks.studies.prune_bench score-cost MODEL [--device cuda] [--candidates 4] [--samples 32]
    python -m edgeldm.benchmarks.studies.prune_bench ablation [--finetune-steps 800] [--out DIR]

``latency``: the ``sd15`` preset UNet (or ``--model``'s) and the same UNet pruned to ``--target-macs`` (or to
the MACs of the preset ``--like`` names: SDXL pruned to SSD-1B's budget), both exported to ONNX and timed alternately (A B A B …) in ONNX Runtime fp32, one guided step (batch 2) at ``--size`` px.
The preset's weights are random, so its LD-Pruner scores would mean nothing: the operators are picked
by weight magnitude here — the latency of a pruned architecture depends on what is removed, not on why —
unless ``--rank-by`` asks for LD-Pruner's selection: with ``latency`` its score is divided by the UNet-step
time each candidate was measured to save, which is exactly what changes what is removed.

With ``--backend torch`` the two UNets run in torch on ``--device`` (a GPU's figure) instead, in
``--dtype``, each timed call waiting for the device's queue.

``score-cost``: what LD-Pruner's scoring of MODEL costs at ``edgeldm prune``'s defaults on a device. The
calibration latents of the unmodified model, then ``--candidates`` of its candidates spread over the
operator inventory, are scored by the real ``score_candidates``; seconds per candidate times the number of
candidates (plus the reference) is the estimate for the whole run (``--candidates 0`` scores them all and
reports the measured total beside it).

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


def _step_feeds(unet_config, latent: int, seed: int = 0) -> dict:
    """One guided step's inputs (batch 2) as numpy arrays, SDXL's added conditions included."""
    from ...exporters.dummy_inputs import example_inputs
    from ...io_spec import unet_io

    io = unet_io(unet_config, latent_height=latent, latent_width=latent)
    feeds = example_inputs(io, {"batch_size": 2}, seed=seed)
    feeds["timestep"] = np.asarray(500.0, dtype=np.float32)
    return feeds


def _torch_step_timer(original, pruned, device: str, dtype: str, latent: int):
    """Two UNets on a torch device: a callable per model running one guided step (batch 2), synchronised."""
    import torch

    from ...exporters.torch_modules import UNetModule
    from ..timing import synchronizer

    dt = getattr(torch, dtype)
    feeds = [torch.from_numpy(v).to(device, dt) for v in _step_feeds(original.config, latent).values()]
    sync = synchronizer(device)

    def runner(unet):
        module = UNetModule(unet.to(device, dt).eval())

        def step():
            with torch.inference_mode():
                module(*feeds)
            sync()
        return step

    return runner(original), runner(pruned)


def macs_ratio(model: str, like: str, size: int) -> float:
    """MACs per UNet step of preset ``like`` over those of preset ``model`` at ``size`` px, as ``edgeldm info``
    counts them (shapes only)."""
    from ...info import describe_model

    def macs(name):
        return describe_model(name, height=size, width=size)["unet"]["macs_per_step"]

    return macs(like) / macs(model)


def latency(target_macs: float, size: int, repeat: int, threads: int, *, rank_by: str | None = None,
            samples: int = 2, score_steps: int = 2, latency_repeat: int = 3, cache: str | None = None,
            backend: str = "onnx", device: str = "cpu", dtype: str = "float32", model: str = "sd15") -> dict:
    import torch

    from ...compressor.ldpruner import ScoreConfig
    from ...compressor.prune import PruneConfig, prune_pipeline
    from ...compressor.selection import Budget
    from ...exporters.onnx_export import export_onnx
    from ...exporters.torch_modules import UNetModule
    from ...io_spec import unet_io
    from ...runtimes.backends import open_session
    from ...zoo import build_preset
    from ..fingerprint import device_fingerprint
    from ..timing import alternate, summarize

    torch.set_num_threads(threads)
    pipe = build_preset(model)
    latent = size // pipe.vae_scale_factor
    io = unet_io(pipe.unet.config, latent_height=latent, latent_width=latent)
    out: dict = {"model": model, "size": size, "threads": threads, "target_macs": target_macs, "backend": backend,
                 "device": device, "dtype": dtype if backend == "torch" else "float32"}
    with tempfile.TemporaryDirectory(prefix="edgeldm-prune-bench-") as tmp:
        tmp = Path(tmp)
        if backend == "torch":
            original = copy.deepcopy(pipe.unet)
        else:
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
        plan, _ = prune_pipeline(pipe, model, config, cache_dir=Path(cache) if cache else None)
        out["selection_seconds"] = time.perf_counter() - t0
        out["macs"], out["params"] = plan.report["macs"], plan.report["params"]
        out["removed"] = [f"{o.modification} {o.op}" for o in plan.operations]
        if backend == "torch":
            run_original, run_pruned = _torch_step_timer(original, pipe.unet, device, dtype, latent)
        else:
            export_onnx(UNetModule(pipe.unet).eval(), io, tmp / "pruned")
            feeds = _step_feeds(pipe.unet.config, latent)
            del pipe
            sessions = {k: open_session("onnx", tmp / k / "model.onnx", io, threads=threads)
                        for k in ("original", "pruned")}
            run_original = lambda: sessions["original"](**feeds)  # noqa: E731
            run_pruned = lambda: sessions["pruned"](**feeds)  # noqa: E731
        a, b = alternate(run_original, run_pruned, repeat=repeat, warmup=3 if backend == "torch" else 1)
        ratios = [y / x for x, y in zip(a, b)]
        out.update(original=summarize(a).to_dict(), pruned=summarize(b).to_dict(), ratio_per_pair=ratios,
                   ratio_median=float(np.median(ratios)),
                   fingerprint=device_fingerprint(backend=backend, device=device, threads=threads))
    return out


def score_cost(model: str, *, device: str, candidates: int, samples: int, steps: int, latency_repeat: int,
               size: int | None = None) -> dict:
    import torch

    from ...calibration.prompts import calibration_prompts
    from ...compressor.ldpruner import LatentStatistics, ScoreConfig, default_config_for, enumerate_candidates, \
        score_candidates
    from ...devices import torch_device
    from ...loading import load_pipeline
    from ..fingerprint import device_fingerprint
    from ..timing import synchronizer

    device = torch_device(device)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    pipe = load_pipeline(model).to(device)
    load_s = time.perf_counter() - t0
    config = default_config_for(pipe, ScoreConfig(samples=samples, steps=steps, latency_repeat=latency_repeat,
                                                  height=size, width=size))
    t0 = time.perf_counter()
    cands = enumerate_candidates(pipe.unet, height=config.height, width=config.width,
                                 vae_scale_factor=pipe.vae_scale_factor, narrow_keep=None)  # prune's default
    enumerate_s = time.perf_counter() - t0  # counting every candidate's MACs: part of a real run
    # spread over the inventory (ResNets, transformer parts, the mid-block cost differently to run)
    picked = cands if candidates <= 0 else [cands[round(i * (len(cands) - 1) / max(candidates - 1, 1))]
                                            for i in range(min(candidates, len(cands)))]
    prompts = calibration_prompts(model, samples, seed=0)
    sync = synchronizer(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    LatentStatistics(pipe, prompts[:1], config).statistics()  # warm-up: kernels, allocator, cuDNN's choices
    sync()
    t0 = time.perf_counter()
    LatentStatistics(pipe, prompts, config).statistics()
    sync()
    reference_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_candidates(pipe, picked, prompts, config)  # computes its own reference first
    sync()
    per_candidate = (time.perf_counter() - t0 - reference_s) / len(picked)
    out = {"model": model, "device_name": str(device), "candidates": len(cands), "timed": len(picked),
           "timed_ops": [f"{c.modification} {c.op}" for c in picked],
           "samples": samples, "steps": steps, "latency_repeat": latency_repeat, "size": config.height,
           "load_seconds": load_s, "enumerate_seconds": enumerate_s, "reference_seconds": reference_s,
           "seconds_per_candidate": per_candidate,
           "estimated_total_seconds": enumerate_s + reference_s + per_candidate * len(cands),
           "device": device_fingerprint(backend="torch", device=str(device), threads=torch.get_num_threads())}
    if candidates <= 0:
        out["measured_total_seconds"] = enumerate_s + reference_s + per_candidate * len(picked)
    if cuda:
        out["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
    return out


def ablation(out_dir: Path, finetune_steps: int, prompts: int) -> dict:
    import torch

    from ...benchmarks.evaluate import EvalConfig, evaluate_pipeline
    from ...compressor.finetune import FinetuneConfig, finetune
    from ...compressor.prune import PruneConfig, prune_pipeline
    from ...compressor.selection import Budget
    from ...loading import load_pipeline

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


def recovery(target_macs: float, samples: int, score_steps: int, finetune_steps: int, teacher_samples: int,
             guided_kd_weight: float, seeds: list[int], prompts: int, cache: str | None) -> dict:
    """tiny: LD-Pruner to ``target_macs``, then finetune (one run per seed); joint accuracy and FD of the
    original and of each recovered student on the same held-out prompts, and their ratio."""
    import torch

    from ...benchmarks.evaluate import EvalConfig, evaluate_pipeline
    from ...compressor.finetune import FinetuneConfig, finetune
    from ...compressor.prune import PruneConfig, prune_pipeline
    from ...compressor.score_config import ScoreConfig
    from ...compressor.selection import Budget
    from ...loading import load_pipeline

    torch.set_num_threads(2)
    teacher = load_pipeline("tiny")
    evaluate = lambda pipe: evaluate_pipeline(pipe, EvalConfig(prompts=prompts)).metrics  # noqa: E731
    original = evaluate(teacher)
    out = {"original": {"joint": original["accuracy"]["joint"], "fd": original["fd"]}, "runs": {}}
    # the selection does not depend on the finetune's seed (scoring has its own fixed seeds): prune once
    pruned = copy.deepcopy(teacher)
    config = PruneConfig(budget=Budget(target_macs=target_macs), score=ScoreConfig(samples=samples, steps=score_steps))
    plan, _ = prune_pipeline(pruned, "tiny", config, cache_dir=Path(cache) if cache else None)
    out["macs_kept"] = plan.report["macs"]["kept"]
    for seed in seeds:
        pipe = copy.deepcopy(pruned)
        with tempfile.TemporaryDirectory() as work:
            summary = finetune(pipe, teacher, "tiny", FinetuneConfig(
                steps=finetune_steps, teacher_samples=teacher_samples, guided_kd_weight=guided_kd_weight, seed=seed),
                work=Path(work))
        m = evaluate(pipe)
        out["runs"][seed] = {"joint": m["accuracy"]["joint"], "fd": m["fd"], "finetune_seconds": summary["seconds"],
                             "joint_of_original": m["accuracy"]["joint"] / max(original["accuracy"]["joint"], 1e-9),
                             "fd_of_original": m["fd"] / original["fd"]}
        r = out["runs"][seed]
        print(f"seed {seed}: MACs kept {out['macs_kept']:.3f}, joint {r['joint']:.3f} = {r['joint_of_original']:.3f}x "
              f"the original's {original['accuracy']['joint']:.3f}, FD {r['fd']:.1f} = {r['fd_of_original']:.3f}x",
              flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.studies.prune_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    lat = sub.add_parser("latency", help="a preset's UNet step (default sd15), pruned / original, ONNX Runtime fp32")
    lat.add_argument("--model", default="sd15", help="architecture preset to prune (sd15, sdxl, ...)")
    lat.add_argument("--target-macs", type=float, default=0.65)
    lat.add_argument("--like", default=None, metavar="PRESET",
                     help="instead of --target-macs, the MACs per step of this preset over --model's at --size "
                          "(e.g. --model sdxl --like ssd-1b: LD-Pruner at SSD-1B's budget)")
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
    lat.add_argument("--backend", choices=("onnx", "torch"), default="onnx",
                     help="onnx: ONNX Runtime on the CPU (default); torch: the UNets in torch on --device")
    lat.add_argument("--device", default="cpu", help="torch device with --backend torch, e.g. cuda")
    lat.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                     help="weights and activations with --backend torch")
    sc = sub.add_parser("score-cost", help="LD-Pruner scoring cost of MODEL on a device, from a few candidates")
    sc.add_argument("model", help="zoo name (tiny, sd15, ...) or diffusers folder")
    sc.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    sc.add_argument("--candidates", type=int, default=4, help="candidates timed; 0 scores them all")
    sc.add_argument("--samples", type=int, default=32, help="calibration latents (edgeldm prune's default)")
    sc.add_argument("--steps", type=int, default=10, help="sampler steps per latent (edgeldm prune's default)")
    sc.add_argument("--latency-repeat", type=int, default=5, help="UNet-step timings per candidate (prune's default)")
    sc.add_argument("--size", type=int, default=None, help="image size (default: the model's)")
    abl = sub.add_parser("ablation", help="tiny: selection strategies at BK-SDM's MAC budget, before/after finetune")
    abl.add_argument("--finetune-steps", type=int, default=800)
    abl.add_argument("--prompts", type=int, default=200)
    abl.add_argument("--out", default="prune-ablation")
    rec = sub.add_parser("recovery", help="tiny: pruned + finetuned joint accuracy and FD against the original's")
    rec.add_argument("--target-macs", type=float, default=0.65)
    rec.add_argument("--samples", type=int, default=16, help="LD-Pruner calibration latents (the demo's 16)")
    rec.add_argument("--score-steps", type=int, default=8, help="sampler steps per calibration latent (the demo's 8)")
    rec.add_argument("--finetune-steps", type=int, default=1000)
    rec.add_argument("--teacher-samples", type=int, default=512)
    rec.add_argument("--guided-kd-weight", type=float, default=1.0, help="0: plain BK-SDM KD")
    rec.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one finetune per seed")
    rec.add_argument("--prompts", type=int, default=1000, help="held-out prompts evaluated")
    rec.add_argument("--cache", default=None, metavar="DIR", help="LD-Pruner score cache")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)

    from ...loading import ensure_offline

    ensure_offline()
    if args.figure == "latency":
        if args.like:
            args.target_macs = macs_ratio(args.model, args.like, args.size)
            print(f"{args.like} has {args.target_macs:.3f}x the MACs per step of {args.model} at {args.size} px")
        res = latency(args.target_macs, args.size, args.repeat, args.threads, rank_by=args.rank_by,
                      samples=args.samples, score_steps=args.score_steps, latency_repeat=args.latency_repeat,
                      cache=args.cache, backend=args.backend, device=args.device, dtype=args.dtype,
                      model=args.model)
        if args.like:
            res["like"] = args.like
        where = (f"torch {args.dtype} on {args.device}" if args.backend == "torch"
                 else f"ONNX Runtime fp32, {args.threads} threads")
        print(f"{args.model} UNet at {args.size} px, {where}: MACs kept "
              f"{res['macs']['kept']:.3f}, step pruned / original {res['ratio_median']:.3f} (median of "
              f"{len(res['ratio_per_pair'])} pairs; {res['pruned']['median']:.3f} s vs {res['original']['median']:.3f} s)")
    elif args.figure == "score-cost":
        res = score_cost(args.model, device=args.device, candidates=args.candidates, samples=args.samples,
                         steps=args.steps, latency_repeat=args.latency_repeat, size=args.size)
        measured = (f"; measured {res['measured_total_seconds']:.1f} s" if "measured_total_seconds" in res else "")
        print(f"{args.model} on {args.device} at {res['size']} px, {args.samples} latents x {args.steps} steps: "
              f"candidates counted in {res['enumerate_seconds']:.1f} s, reference {res['reference_seconds']:.1f} s, "
              f"{res['seconds_per_candidate']:.1f} s per candidate "
              f"({res['timed']} timed) x {res['candidates']} candidates -> {res['estimated_total_seconds'] / 60:.1f} "
              f"min estimated{measured}")
    elif args.figure == "recovery":
        res = recovery(args.target_macs, args.samples, args.score_steps, args.finetune_steps, args.teacher_samples,
                       args.guided_kd_weight, args.seeds, args.prompts, args.cache)
    else:
        res = ablation(Path(args.out), args.finetune_steps, args.prompts)
    res["command"] = "python -m edgeldm.benchmarks.studies.prune_bench " + " ".join(argv or sys.argv[1:])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
