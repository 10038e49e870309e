"""Latent-consistency figures, measured side by side (issue: latent consistency distillation).

    python -m edgeldm.benchmarks.distill_bench quality STUDENT [--teacher tiny] [--prompts 200]
    python -m edgeldm.benchmarks.distill_bench latency STUDENT_BUNDLE TEACHER_BUNDLE [--repeat 5] [--threads 2]
    python -m edgeldm.benchmarks.distill_bench lcm-bundle PRESET OUT [--size 256]
    python -m edgeldm.benchmarks.distill_bench parity STUDENT_BUNDLE STUDENT [--prompts 8]

``quality``: ``edgeldm eval`` metrics (exact prompt accuracy, Fréchet distance) of the student at 1, 2, 4
and 8 steps with its LCM scheduler, against the teacher at 25 steps with guidance 7.5; the ratios to the
teacher's joint accuracy are the issue's goals (4 steps >= 0.95, 2 steps >= 0.90).

``latency``: end-to-end image latency through the runtime (ONNX Runtime fp32): the 4-step student
(guidance as an embedding, one UNet call per step) against the 25-step guided teacher (two UNet
evaluations per step, batched), alternately A B A B … in one process; the ratio is the figure.

``lcm-bundle``: an architecture preset (``sd15``) with the student's guidance embedding added — untrained,
random weights, for latency only: a real checkpoint's LCM has exactly this graph — exported to ONNX, so
``latency`` can time a 4-step SD-size student against the preset's 25-step guided bundle, where the UNet
(not the VAE, as on ``tiny``) dominates an image.

``parity``: the runtime's LCM sampler on the exported student against diffusers' ``LCMScheduler``
pipeline on the same folder, replaying torch's generator for every noise draw (PSNR per image).
"""

from __future__ import annotations

import argparse

import numpy as np

PROMPT = "a small red circle in the top left on a white background"


def quality(student: str, teacher: str, prompts: int, student_steps=(1, 2, 4, 8), guidance: float = 7.5) -> dict:
    import torch

    from ..loading import load_pipeline
    from .evaluate import EvalConfig, evaluate_pipeline

    torch.set_num_threads(2)

    def metrics(pipe, steps: int) -> dict:
        m = evaluate_pipeline(pipe, EvalConfig(prompts=prompts, steps=steps, guidance=guidance)).metrics
        return {"accuracy": m["accuracy"], "fd": m["fd"], "seconds": m["generation_seconds"]}

    out = {"prompts": prompts, "guidance": guidance, "teacher": {"model": teacher, "steps": 25,
                                                                 **metrics(load_pipeline(teacher), 25)}}
    pipe = load_pipeline(student)
    ref = out["teacher"]["accuracy"]["joint"]
    out["student"] = {"model": student, "scheduler": type(pipe.scheduler).__name__, "runs": {}}
    for steps in student_steps:
        row = metrics(pipe, steps)
        row["joint_vs_teacher"] = row["accuracy"]["joint"] / ref if ref else float("nan")
        out["student"]["runs"][str(steps)] = row
        print(f"student {steps} steps: joint {row['accuracy']['joint']:.3f} ({row['joint_vs_teacher']:.3f} of the "
              f"teacher's {ref:.3f})  FD {row['fd']:.1f}", flush=True)
    return out


def latency(student_bundle: str, teacher_bundle: str, repeat: int, threads: int, student_steps: int = 4,
            teacher_steps: int = 25, guidance: float = 7.5) -> dict:
    from ..runtimes.text2image import Text2Image
    from .timing import alternate, summarize

    student = Text2Image(student_bundle, backend="onnx", threads=threads)
    teacher = Text2Image(teacher_bundle, backend="onnx", threads=threads)
    a, b = alternate(lambda: student(PROMPT, steps=student_steps),
                     lambda: teacher(PROMPT, steps=teacher_steps, guidance=guidance), repeat=repeat)
    speedups = [t / s for s, t in zip(a, b)]
    return {"backend": "onnx", "threads": threads, "student": {"steps": student_steps, **summarize(a).to_dict()},
            "teacher": {"steps": teacher_steps, "guidance": guidance, **summarize(b).to_dict()},
            "speedup_per_pair": speedups, "speedup_median": float(np.median(speedups))}


def lcm_bundle(preset: str, out: str, size: int) -> dict:
    import tempfile

    from ..compressor.distill import DistillConfig, add_guidance_embedding, student_pipeline
    from ..exporters.bundle import ExportConfig, export_bundle
    from ..zoo import build_preset

    pipe = build_preset(preset)
    config = DistillConfig()
    add_guidance_embedding(pipe.unet, config.guidance_embedding_dim)
    with tempfile.TemporaryDirectory(prefix="edgeldm-lcm-preset-") as tmp:
        student_pipeline(pipe, pipe.unet, config).save_pretrained(tmp, safe_serialization=True)
        del pipe
        manifest = export_bundle(tmp, out, ExportConfig(backends=("onnx",), height=size, width=size))
    return {"preset": preset, "bundle": out, "size": size, "defaults": manifest["defaults"]}


def parity(student_bundle: str, student: str, prompts: int, steps: int = 4) -> dict:
    import torch

    from ..calibration.prompts import calibration_prompts
    from ..loading import load_pipeline
    from ..runtimes.text2image import Text2Image
    from .quality import psnr

    t2i = Text2Image(student_bundle, backend="onnx")
    pipe = load_pipeline(student)
    guidance = t2i.defaults["guidance"]
    texts = calibration_prompts(student, prompts, seed=5)
    ours, ref = [], []
    for i, text in enumerate(texts):
        g = torch.Generator().manual_seed(i)
        ours.append(t2i.decode(t2i.latents(text, steps=steps, guidance=guidance,
                                           noise=lambda shape: torch.randn(tuple(shape), generator=g).numpy())))
        img = pipe(text, num_inference_steps=steps, guidance_scale=guidance,
                   generator=torch.Generator().manual_seed(i), output_type="np").images[0]
        ref.append(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8))
    values = psnr(np.stack(ours), np.stack(ref))
    return {"steps": steps, "guidance": guidance, "psnr_db": [float(v) for v in values],
            "psnr_min_db": float(np.min(values))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.distill_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    q = sub.add_parser("quality", help="student at 1/2/4/8 steps vs teacher at 25 steps (tiny metrics)")
    q.add_argument("student")
    q.add_argument("--teacher", default="tiny")
    q.add_argument("--prompts", type=int, default=200)
    lat = sub.add_parser("latency", help="4-step student vs 25-step guided teacher, ONNX Runtime, end to end")
    lat.add_argument("student_bundle")
    lat.add_argument("teacher_bundle")
    lat.add_argument("--repeat", type=int, default=5)
    lat.add_argument("--threads", type=int, default=2)
    lb = sub.add_parser("lcm-bundle", help="an LCM-shaped preset (random weights) exported to ONNX, for latency")
    lb.add_argument("preset")
    lb.add_argument("out")
    lb.add_argument("--size", type=int, default=256)
    par = sub.add_parser("parity", help="runtime LCM sampler vs diffusers' LCMScheduler pipeline")
    par.add_argument("student_bundle")
    par.add_argument("student")
    par.add_argument("--prompts", type=int, default=8)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.figure == "quality":
        out = quality(args.student, args.teacher, args.prompts)
    elif args.figure == "latency":
        out = latency(args.student_bundle, args.teacher_bundle, args.repeat, args.threads)
    elif args.figure == "lcm-bundle":
        out = lcm_bundle(args.preset, args.out, args.size)
    else:
        out = parity(args.student_bundle, args.student, args.prompts)
    from .fingerprint import emit_result

    emit_result(out, "distill_bench", argv, backend="torch" if args.figure == "quality" else "onnx",
                threads=getattr(args, "threads", None), json_path=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
