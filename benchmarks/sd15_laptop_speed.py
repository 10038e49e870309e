"""The headline speed figure (issue #29): the compressed SD-1.5-class image on this CPU against torch and against
optimum-intel's best, per image size, in one command.

    python -m edgeldm.benchmarks.sd15_laptop_speed BUNDLE [--model sd15] [--sizes 512,256] [--repeat 3]
        [--torch-repeat 1] [--threads 2] [--work DIR] [--inference-precision bf16]
        [--json benchmarks/data/sd15_laptop_speed.json]

Three targets; each other one is timed alternately with ours (``edgeldm bench A --vs B``: A B A B …, the figure
is the median of the per-pair ratios, so machine noise hits both sides alike):

* (a) ``diffusers:MODEL`` — torch fp32, 25 steps, guidance 7.5: where a user starts;
* (b) ``optimum-ov:PEER`` — optimum-intel's ``OVLatentConsistencyModelPipeline`` on an LCM-shaped copy of MODEL
  (the guidance embedding an LCM distillation adds; every other weight MODEL's), exported and quantized by
  optimum-intel itself in its hybrid INT8 mode (INT8 weights in MatMul / Embedding layers, the UNet's other
  activations calibrated on its own pipeline's runs), 4 steps: what a user would pick instead — the
  configuration FastSD CPU popularised. Built once into ``WORK/optimum-intel-lcm-hybrid-int8`` and reused;
* (c) BUNDLE — ours (what ``edgeldm compress MODEL --recipe sd15-laptop-openvino`` writes), its own 4 steps.

The arithmetic floor of (c): its image's MACs (text encoder, 4 UNet steps, VAE decoder; counted on the model the
bundle was exported from) over the machine's sustained MAC rate (``benchmarks/floor.py``'s probe, run here). The
fp32 floor uses the best fp32 kernel rate; ``floor_ratio_int8`` puts every MAC at the INT8 MatMul rate, the
bound no mixed graph can beat.

Latency does not depend on weight values: on a random-weight preset (``sd15``) the graphs timed are a real
checkpoint's; say so beside the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
from pathlib import Path

logger = logging.getLogger("edgeldm")

#: the peer's folder under --work
PEER_FOLDER = "optimum-intel-lcm-hybrid-int8"
#: the baseline's sampling: diffusers' text-to-image defaults for SD 1.5
TORCH_STEPS, TORCH_GUIDANCE = 25, 7.5
#: UNet calls optimum-intel calibrates its hybrid mode on (its own pipeline, 4 steps per prompt)
PEER_CALIBRATION_CALLS = 8
#: the issue's goals per 512-px image
GOALS = {"speedup_vs_torch": 40.0, "speedup_vs_optimum_intel": 1.5, "floor_ratio": 2.0}


def build_peer(model: str, out: Path, *, calibration_calls: int = PEER_CALIBRATION_CALLS) -> Path:
    """optimum-intel's hybrid-INT8 LCM pipeline for ``model``, exported and quantized by optimum-intel."""
    import tempfile

    from optimum.intel import OVLatentConsistencyModelPipeline, OVWeightQuantizationConfig

    from ..atomic import atomic_output_dir
    from ..calibration.prompts import calibration_prompts
    from ..compressor.distill import add_guidance_embedding, student_pipeline
    from ..compressor.distill_config import DistillConfig
    from ..loading import load_pipeline

    from diffusers import LatentConsistencyModelPipeline

    pipe = load_pipeline(model)
    config = DistillConfig()
    add_guidance_embedding(pipe.unet, config.guidance_embedding_dim)
    # saved as the pipeline class public LCM checkpoints name (LCM_Dreamshaper_v7): optimum-intel then opens it
    # as its LCM pipeline (guidance an input, one UNet call per step), not as a guided SD pipeline (two)
    components = student_pipeline(pipe, pipe.unet, config).components
    student = LatentConsistencyModelPipeline(**{k: components[k] for k in (
        "vae", "text_encoder", "tokenizer", "unet", "scheduler")}, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    prompts = calibration_prompts(model, max(1, calibration_calls // 4), seed=3)
    with tempfile.TemporaryDirectory(prefix="edgeldm-lcm-peer-") as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        del pipe, student
        gc.collect()
        quantization = OVWeightQuantizationConfig(bits=8, quant_method="hybrid", dataset=prompts,
                                                  num_samples=calibration_calls)
        logger.info("exporting and quantizing the optimum-intel peer (hybrid INT8, %d calibration UNet calls)",
                    calibration_calls)
        peer = OVLatentConsistencyModelPipeline.from_pretrained(tmp, export=True, compile=False,
                                                                quantization_config=quantization)
        with atomic_output_dir(out) as staging:
            peer.save_pretrained(staging)
    return out


def image_floor(macs: dict, rates: dict) -> dict:
    """One image's MACs (``floor.image_macs``) and its floor times at the probe's rates."""
    return {"macs": macs, "floor_s": macs["total"] / rates["best_macs_per_s"],
            "floor_s_int8": macs["total"] / rates["matmul_int8_macs_per_s"]}


def _summary(run: dict) -> dict:
    """The figures of one side of a bench result: medians and single values."""
    from .bench import TIMED_FIGURES, figure_value

    f = run["figures"]
    out = {name: figure_value(f, name) for name in TIMED_FIGURES}
    out.update({k: f[k] for k in ("peak_rss_bytes", "size_bytes", "cold_load_s", "unet_calls_per_image")})
    out["spec"] = run["target"]["spec"]
    return out


def _outside_components(summary: dict) -> float:
    """Seconds of an image not spent in its timed components (scheduler, glue, a cold first call's extra)."""
    inside = (summary["unet_calls_per_image"] * summary["unet_step_s"] + summary["vae_decode_s"]
              + summary["text_encoder_s"])
    return summary["image_s"] - inside


def _speedup(result: dict, figure: str) -> float:
    """How many times faster ours (A) is than the other side (B): the inverse of the median A/B ratio."""
    ratio = result["ratios"][figure]["median"]
    return 1.0 / ratio if ratio and not math.isnan(ratio) else math.nan


def measure_size(bundle: str, model: str, peer: str, size: int, own: dict, *, repeat: int, torch_repeat: int,
                 warmup: int, threads: int | None, rates: dict, floor: dict,
                 inference_precision: str | None = None) -> dict:
    """One image size: ours against optimum-intel and against torch; ``own`` is the bundle's default sampling."""
    from dataclasses import replace

    from .bench import run_bench
    from .floor import floor_ratio
    from .targets import BenchConfig

    ours = BenchConfig(steps=own["steps"], guidance=own["guidance"], height=size, width=size, repeat=repeat,
                       warmup=warmup, threads=threads, backend="openvino", quality_prompts=0,
                       inference_precision=inference_precision)
    runs = {}
    logger.info("%d px: ours vs optimum-intel", size)
    runs["optimum_intel"], _ = run_bench(f"openvino:{bundle}", ours, vs=f"optimum-ov:{peer}")
    logger.info("%d px: ours vs torch", size)
    # our side is warmed up as against optimum-intel (seconds); torch's is not: one 25-step torch image at 512 px
    # takes minutes, and what its warm-up would save (first-call allocations, oneDNN primitive creation) is a
    # rounding error of it, in torch's disfavour. ``outside_components_s`` below bounds it
    beside_torch = replace(ours, repeat=torch_repeat)
    runs["torch"], _ = run_bench(f"openvino:{bundle}", beside_torch, vs=f"diffusers:{model}",
                                 vs_config=replace(beside_torch, steps=TORCH_STEPS, guidance=TORCH_GUIDANCE,
                                                   warmup=0, inference_precision=None))
    mine = _summary(runs["optimum_intel"])
    targets = {"ours": mine, "optimum_intel": _summary(runs["optimum_intel"]["vs"]),
               "torch": _summary(runs["torch"]["vs"]), "ours_beside_torch": _summary(runs["torch"])}
    for summary in targets.values():
        summary["outside_components_s"] = _outside_components(summary)
    return {
        "size": size,
        "targets": targets,
        "speedup_vs_torch": _speedup(runs["torch"], "image_s"),
        "speedup_vs_optimum_intel": _speedup(runs["optimum_intel"], "image_s"),
        "unet_step_speedup_vs_optimum_intel": _speedup(runs["optimum_intel"], "unet_step_s"),
        "vae_decode_speedup_vs_optimum_intel": _speedup(runs["optimum_intel"], "vae_decode_s"),
        "per_pair": {"optimum_intel": runs["optimum_intel"]["ratios"]["image_s"]["per_pair"],
                     "torch": runs["torch"]["ratios"]["image_s"]["per_pair"]},
        "floor": floor,
        "floor_ratio": floor_ratio(mine["image_s"], floor["macs"]["total"], rates["best_macs_per_s"]),
        "floor_ratio_int8": floor_ratio(mine["image_s"], floor["macs"]["total"], rates["matmul_int8_macs_per_s"]),
        "peak_rss_bytes": {"ours": mine["peak_rss_bytes"],
                           "optimum_intel": runs["optimum_intel"]["vs"]["figures"]["peak_rss_bytes"],
                           "torch": runs["torch"]["vs"]["figures"]["peak_rss_bytes"]},
        "size_bytes": {"ours": mine["size_bytes"],
                       "optimum_intel": runs["optimum_intel"]["vs"]["figures"]["size_bytes"],
                       "torch": runs["torch"]["vs"]["figures"]["size_bytes"]},
        "config": {"ours": {"steps": own["steps"], "guidance": own["guidance"],
                            "inference_precision": inference_precision or "f32"},
                   "optimum_intel": {"steps": own["steps"], "guidance": own["guidance"],
                                     "inference_precision": inference_precision or "f32"},
                   "torch": {"steps": TORCH_STEPS, "guidance": TORCH_GUIDANCE},
                   "repeat": repeat, "torch_repeat": torch_repeat, "warmup": warmup, "torch_warmup": 0,
                   "ours_warmup_beside_torch": warmup,
                   "threads": threads},
    }


def goals(per_size: dict) -> dict:
    """The issue's goals at 512 px (None where 512 px was not measured)."""
    row = per_size.get("512")
    if row is None:
        return {}
    out = {name: {"goal": goal, "measured": row[name],
                  "met": row[name] >= goal if name.startswith("speedup") else row[name] <= goal}
           for name, goal in GOALS.items()}
    rss = row["peak_rss_bytes"]
    out["peak_rss_below_optimum_intel"] = {"measured": rss["ours"], "goal": rss["optimum_intel"],
                                           "met": rss["ours"] < rss["optimum_intel"]}
    return out


def run(bundle: str, model: str, sizes: list[int], *, repeat: int, torch_repeat: int, warmup: int,
        threads: int | None, work: Path, floor_source: str | None = None, on_size=None,
        inference_precision: str | None = None) -> dict:
    from ..lineage import default_sampling_of
    from ..manifest import load_manifest
    from .floor import image_macs, throughput

    # the bundle read and its image counted before anything slow (the peer's export, the torch images): a wrong
    # path or a model that cannot be counted fails in seconds
    source = floor_source or load_manifest(Path(bundle))["source"]["model"]
    own = default_sampling_of(bundle)
    # classifier-free guidance runs the UNet on a batch of two, unless the UNet takes guidance as an input (an
    # LCM's guidance embedding: one call of batch one per step); the bundle's own defaults say which
    guided_batch = own["guidance"] > 1 and not own.get("guidance_embedding", False)
    macs = {size: image_macs(source, height=size, width=size, steps=own["steps"], guidance=guided_batch)
            for size in sizes}
    peer = work / PEER_FOLDER
    if not (peer / "model_index.json").is_file():
        build_peer(model, peer)
        gc.collect()
    logger.info("probing the machine's MAC rates")
    rates = throughput(threads or 0)
    floors = {size: image_floor(macs[size], rates) for size in sizes}
    out = {"bundle": bundle, "model": model, "peer": str(peer), "floor_source": source, "rates": rates,
           "sizes": {}, "goals": {},
           "weights": "random-weight preset: latency does not depend on weight values; quality means nothing"}
    for size in sizes:
        out["sizes"][str(size)] = measure_size(bundle, model, str(peer), size, own, repeat=repeat,
                                               torch_repeat=torch_repeat, warmup=warmup, threads=threads,
                                               rates=rates, floor=floors[size],
                                               inference_precision=inference_precision)
        out["goals"] = goals(out["sizes"])
        if on_size:
            on_size(out)  # each size's figures kept as soon as they exist: a later size may fail or be stopped
    return out


def main(argv: list[str] | None = None) -> int:
    from ..backends import get_backend

    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.sd15_laptop_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="our final bundle (OpenVINO graphs), e.g. RUN/bundle of the laptop recipe")
    p.add_argument("--model", default="sd15", help="the uncompressed model: torch's baseline and the peer's source")
    p.add_argument("--sizes", default="512,256", help="comma-separated image sides (default 512,256)")
    p.add_argument("--repeat", type=int, default=3, help="timed images per side against optimum-intel (default 3)")
    p.add_argument("--torch-repeat", type=int, default=1,
                   help="timed images per side against torch (default 1: a 512-px torch image takes minutes)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed images per side first (default 1); torch's side gets none: a 512-px torch "
                        "image takes minutes")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every target (default 2)")
    p.add_argument("--work", default="sd15-laptop-speed.work", help="where the optimum-intel peer is built / reused")
    p.add_argument("--floor-source", default=None,
                   help="model folder whose MACs are the bundle's (default: the bundle manifest's source)")
    p.add_argument("--inference-precision", default=None, choices=get_backend("openvino").inference_precisions,
                   help="what our bundle and optimum-intel's pipeline compute in (OpenVINO; default f32, parity "
                        "with the exported graph; bf16 on CPUs with AVX512_BF16 / AMX, OpenVINO's own default there); "
                        "torch stays fp32")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    def keep(partial: dict) -> None:
        if args.json:
            from ..atomic import atomic_write_text

            atomic_write_text(args.json, json.dumps(partial, indent=1, default=float))

    out = run(args.bundle, args.model, sizes, repeat=args.repeat, torch_repeat=args.torch_repeat,
              warmup=args.warmup, threads=args.threads, work=Path(args.work), floor_source=args.floor_source,
              on_size=keep, inference_precision=args.inference_precision)
    for size, row in out["sizes"].items():
        t = row["targets"]
        print(f"{size} px: ours {t['ours']['image_s']:.2f} s/image | optimum-intel {t['optimum_intel']['image_s']:.2f}"
              f" s ({row['speedup_vs_optimum_intel']:.2f}x) | torch {t['torch']['image_s']:.1f} s "
              f"({row['speedup_vs_torch']:.1f}x) | floor {row['floor']['floor_s']:.2f} s (ratio "
              f"{row['floor_ratio']:.2f}; INT8 {row['floor_ratio_int8']:.2f}) | peak RSS ours "
              f"{row['peak_rss_bytes']['ours'] / 2**30:.2f} GiB, optimum-intel "
              f"{row['peak_rss_bytes']['optimum_intel'] / 2**30:.2f} GiB")
    from .fingerprint import emit_result

    emit_result(out, "sd15_laptop_speed", argv, backend="openvino", threads=args.threads, json_path=args.json)
    return 0


if __name__ == "__main__":
    from ..entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
