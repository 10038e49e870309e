"""Benchmark the export + runtime path, printed as ratios measured side by side in one run.

    python -m edgeldm.benchmarks.studies.runtime_bench --model tiny --steps 25 --repeat 5 --threads 2 [--sd15] [--json F]

Figures (issue: exporters, bundle, runtimes):
1. runtime overhead — our time per image over the summed time of the backend session calls it makes;
2. ours vs optimum's ``ORTStableDiffusionPipeline`` and optimum-intel's ``OVStableDiffusionPipeline`` on the
   same bundle, steps, guidance, threads and initial latents, timed alternately (A B A B …);
3. cross-backend parity — PSNR of ONNX Runtime vs OpenVINO vs torch (diffusers) images;
4. export time and bundle size (``tiny``; with ``--sd15`` also the SD v1.5 preset's UNet, external data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..quality import psnr
from ..targets import ComponentTimer, folder_bytes
from ..timing import alternate, summarize

PROMPT = "a small red circle in the top left on a white background"


def runtime_overhead(t2i, *, steps: int, guidance: float, repeat: int) -> dict:
    timer = ComponentTimer()
    original = t2i.sessions
    t2i.sessions = {name: timer.wrap(name, s) for name, s in original.items()}
    try:
        t2i(PROMPT, steps=steps, guidance=guidance, seed=0)  # warm-up
        ratios, totals = [], []
        for i in range(repeat):
            timer.reset()
            t0 = time.perf_counter()
            t2i(PROMPT, steps=steps, guidance=guidance, seed=i)
            total = time.perf_counter() - t0
            totals.append(total)
            ratios.append(total / sum(sum(calls) for calls in timer.calls.values()))
    finally:
        t2i.sessions = original
    return {"backend": t2i.backend, "per_image": summarize(totals).to_dict(),
            "overhead_ratio_median": float(np.median(ratios)), "overhead_ratio_max": float(np.max(ratios))}


def versus_optimum(bundle: Path, backend: str, *, steps: int, guidance: float, repeat: int, threads: int) -> dict:
    import torch

    from ...runtimes.text2image import Text2Image

    if backend == "onnx":
        import onnxruntime as ort
        from optimum.onnxruntime import ORTStableDiffusionPipeline

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        peer = ORTStableDiffusionPipeline.from_pretrained(str(bundle), session_options=opts)
        ours = Text2Image(bundle, backend="onnx", threads=threads)
        peer_name = "optimum ORTStableDiffusionPipeline"
    else:
        from optimum.intel import OVStableDiffusionPipeline

        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        peer = OVStableDiffusionPipeline.from_pretrained(str(bundle), compile=True, ov_config=config)
        ours = Text2Image(bundle, backend="openvino", threads=threads)
        peer_name = "optimum-intel OVStableDiffusionPipeline"
    h, w = ours.image["height"], ours.image["width"]
    noise = np.random.default_rng(0).standard_normal(
        (1, ours.image["latent_channels"], h // ours.image["vae_scale_factor"], w // ours.image["vae_scale_factor"])
    ).astype(np.float32)
    peer.set_progress_bar_config(disable=True)

    def run_ours():
        return ours.decode(ours.latents(PROMPT, steps=steps, guidance=guidance, initial_latents=noise))

    def run_peer():
        return peer(PROMPT, num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(noise),
                    height=h, width=w, output_type="np").images

    a, b = alternate(run_ours, run_peer, repeat=repeat, warmup=1)
    peer_img = np.clip(np.asarray(run_peer()[0]) * 255 + 0.5, 0, 255).astype(np.uint8)
    return {"backend": backend, "peer": peer_name, "ours": summarize(a).to_dict(), "peer_time": summarize(b).to_dict(),
            "ratio_per_pair": [x / y for x, y in zip(a, b)], "ratio_median": float(np.median([x / y for x, y in zip(a, b)])),
            "image_psnr_db": float(psnr(run_ours()[None], peer_img[None])[0])}


def parity(model: str, bundle: Path, *, steps: int, guidance: float) -> dict:
    import torch

    from ...loading import load_pipeline
    from ...runtimes.text2image import Text2Image

    ort_t2i, ov_t2i = Text2Image(bundle, backend="onnx"), Text2Image(bundle, backend="openvino")
    h, w, f = ort_t2i.image["height"], ort_t2i.image["width"], ort_t2i.image["vae_scale_factor"]
    noise = np.random.default_rng(1).standard_normal((1, ort_t2i.image["latent_channels"], h // f, w // f))
    noise = noise.astype(np.float32)
    imgs = {name: t.decode(t.latents(PROMPT, steps=steps, guidance=guidance, initial_latents=noise))
            for name, t in (("onnx", ort_t2i), ("openvino", ov_t2i))}
    pipe = load_pipeline(model)
    out = pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(noise),
               output_type="np").images[0]
    imgs["torch"] = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
    pairs = (("onnx", "openvino"), ("onnx", "torch"), ("openvino", "torch"))
    return {f"{a}_vs_{b}_psnr_db": float(psnr(imgs[a][None], imgs[b][None])[0]) for a, b in pairs}


def export_figures(model: str, out_dir: Path, *, sd15: bool) -> dict:
    from ...exporters.bundle import ExportConfig, export_bundle

    figures = {}
    t0 = time.perf_counter()
    export_bundle(model, out_dir / model, ExportConfig(backends=("onnx", "openvino")))
    figures[model] = {"export_seconds": time.perf_counter() - t0, "bundle_bytes": folder_bytes(out_dir / model)}
    if sd15:
        figures["sd15_unet"] = _export_sd15_unet(out_dir / "sd15-unet")
    return figures


def _export_sd15_unet(folder: Path) -> dict:
    """The SD v1.5 preset UNet alone: > 2 GB, so ONNX goes out with external data."""
    from ...exporters.onnx_export import export_onnx
    from ...exporters.torch_modules import UNetModule
    from ...io_spec import unet_io
    from ...zoo import build_preset

    pipe = build_preset("sd15")
    io = unet_io(pipe.unet.config, latent_height=32, latent_width=32)
    t0 = time.perf_counter()
    files = export_onnx(UNetModule(pipe.unet).eval(), io, folder)
    return {"export_seconds": time.perf_counter() - t0, "files": [f.name for f in files],
            "bytes": folder_bytes(folder)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.studies.runtime_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--sd15", action="store_true", help="also export the sd15 preset UNet (~5 GB RAM, ~1 min)")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)

    from ...loading import ensure_offline
    from ...runtimes.text2image import Text2Image

    ensure_offline()
    results = {"command": "python -m edgeldm.benchmarks.studies.runtime_bench " + " ".join(argv or sys.argv[1:]),
               "threads": args.threads, "steps": args.steps, "guidance": args.guidance}
    with tempfile.TemporaryDirectory(prefix="edgeldm-bench-") as tmp:
        tmp = Path(tmp)
        results["export"] = export_figures(args.model, tmp, sd15=args.sd15)
        bundle = tmp / args.model
        results["parity"] = parity(args.model, bundle, steps=args.steps, guidance=args.guidance)
        results["overhead"] = [runtime_overhead(Text2Image(bundle, backend=b, threads=args.threads), steps=args.steps,
                                                guidance=args.guidance, repeat=args.repeat) for b in ("onnx", "openvino")]
        results["vs_optimum"] = [versus_optimum(bundle, b, steps=args.steps, guidance=args.guidance,
                                                repeat=args.repeat, threads=args.threads) for b in ("onnx", "openvino")]
    print(json.dumps(results, indent=2))
    for o in results["overhead"]:
        print(f"runtime overhead ({o['backend']}): {o['overhead_ratio_median']:.3f}x the backend calls "
              f"(max {o['overhead_ratio_max']:.3f}); {o['per_image']['median']:.3f} s/image")
    for v in results["vs_optimum"]:
        print(f"ours / {v['peer']}: {v['ratio_median']:.3f} (median of {len(v['ratio_per_pair'])} pairs); "
              f"image PSNR {v['image_psnr_db']:.1f} dB")
    for k, v in results["parity"].items():
        print(f"parity {k}: {v:.1f} dB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
