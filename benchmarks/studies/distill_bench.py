"""Latent-consistency figures, measured side by side (issue: latent consistency distillation).

    python -m edgeldm.benchmarks.studies.distill_bench quality STUDENT [--teacher tiny] [--prompts 200]
    python -m edgeldm.benchmarks.studies.distill_bench latency STUDENT_BUNDLE TEACHER_BUNDLE [--repeat 5] [--threads 2]
    python -m edgeldm.benchmarks.studies.distill_bench lcm-bundle PRESET OUT [--size 256] [--tiny-vae]
    python -m edgeldm.benchmarks.studies.distill_bench parity STUDENT_BUNDLE STUDENT [--prompts 8]
    python -m edgeldm.benchmarks.studies.distill_bench step-cost MODEL [--teacher T] [--draws 16] [--steps 150] [--pairs 2]

``quality``: ``edgeldm eval`` metrics (exact prompt accuracy, Fréchet distance) of the student at 1, 2, 4
and 8 steps with its LCM scheduler, against the teacher at 25 steps with guidance 7.5; the ratios to the
teacher's joint accuracy are the issue's goals (4 steps >= 0.95, 2 steps >= 0.90).

``latency``: end-to-end image latency through the runtime (ONNX Runtime fp32): the 4-step student
(guidance as an embedding, one UNet call per step) against the 25-step guided teacher (two UNet
evaluations per step, batched), alternately A B A B … in one process; the ratio is the figure.

``lcm-bundle``: an architecture preset (``sd15``) with the student's guidance embedding added — untrained,
random weights, for latency only: a real checkpoint's LCM has exactly this graph — exported to ONNX, so
``latency`` can time a 4-step SD-size student against the preset's 25-step guided bundle, where the UNet
(not the VAE, as on ``tiny``) dominates an image. ``--tiny-vae`` swaps the VAE for the ``AutoencoderTiny``
that ``edgeldm distill-vae`` trains (random weights too), the cost left once the UNet calls are few.

``parity``: the runtime's LCM sampler on the exported student against diffusers' ``LCMScheduler``
pipeline on the same folder, replaying torch's generator for every noise draw (PSNR per image).

``step-cost``: seconds per training step of ``edgeldm distill`` with the teacher run live (LCM's recipe)
against ``--teacher-draws K`` (its guided steps precomputed and reused), alternately live, table, live,
table … — each a real ``distill`` run of ``--steps`` steps on 64 teacher latents, timed from step 50 on
(past warm-up) by the run's own loss history; the table's build time is reported apart.
"""

from __future__ import annotations

import argparse

import numpy as np

PROMPT = "a small red circle in the top left on a white background"


def quality(student: str, teacher: str, prompts: int, student_steps=(1, 2, 4, 8), guidance: float = 7.5) -> dict:
    import torch

    from ...loading import load_pipeline
    from ..evaluate import EvalConfig, evaluate_pipeline

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
    from ...runtimes.text2image import Text2Image
    from ..timing import alternate, summarize

    student = Text2Image(student_bundle, backend="onnx", threads=threads)
    teacher = Text2Image(teacher_bundle, backend="onnx", threads=threads)
    a, b = alternate(lambda: student(PROMPT, steps=student_steps),
                     lambda: teacher(PROMPT, steps=teacher_steps, guidance=guidance), repeat=repeat)
    speedups = [t / s for s, t in zip(a, b)]
    return {"backend": "onnx", "threads": threads, "student": {"steps": student_steps, **summarize(a).to_dict()},
            "teacher": {"steps": teacher_steps, "guidance": guidance, **summarize(b).to_dict()},
            "speedup_per_pair": speedups, "speedup_median": float(np.median(speedups))}


def step_cost(model: str, teacher: str | None, draws: int, steps: int, pairs: int) -> dict:
    import tempfile
    from pathlib import Path

    from ...compressor.distill import DistillConfig, distill
    from ...loading import load_pipeline

    if steps < 100:
        raise SystemExit("--steps must be >= 100: the timing starts at step 50, where the loss log begins")
    student = load_pipeline(model)
    teacher_pipe = student if teacher is None else load_pipeline(teacher)
    runs: dict[str, list[float]] = {"live": [], "table": []}
    table_seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            for name, k in (("live", 0), ("table", draws)):
                config = DistillConfig(steps=steps, teacher_samples=64, teacher_draws=k, validate_every=0,
                                       checkpoint_every=steps)
                _, summary = distill(teacher_pipe, model, config, work=Path(tmp) / f"{name}{i}",
                                     student_unet=None if teacher is None else student.unet, teacher_name=teacher)
                logged = {h["step"]: h["seconds"] for h in summary["history"]}
                runs[name].append((logged[steps] - logged[50]) / (steps - 50))
                if k:
                    table_seconds.append(summary["teacher_steps_seconds"])
    ratios = [a / b for a, b in zip(runs["live"], runs["table"])]
    return {"model": model, "teacher": teacher or model, "draws": draws, "timed_steps": steps - 50,
            "live_s_per_step": runs["live"], "table_s_per_step": runs["table"],
            "table_build_s_per_64_latents": table_seconds, "speedup_per_pair": ratios,
            "speedup_median": float(np.median(ratios))}


def lcm_bundle(preset: str, out: str, size: int, tiny_vae: bool = False) -> dict:
    import tempfile

    import torch

    from ...compressor.distill import DistillConfig, add_guidance_embedding, student_pipeline
    from ...exporters.bundle import ExportConfig, export_bundle
    from ...zoo import build_preset

    pipe = build_preset(preset)
    config = DistillConfig()
    add_guidance_embedding(pipe.unet, config.guidance_embedding_dim)
    student = student_pipeline(pipe, pipe.unet, config)
    if tiny_vae:  # what `edgeldm distill-vae` writes, untrained: the graph and its cost are the trained one's
        from ...compressor.vae_distill import tiny_autoencoder
        from ...compressor.vae_distill_config import VaeDistillConfig

        torch.manual_seed(0)
        student.register_modules(vae=tiny_autoencoder(pipe.vae.config, VaeDistillConfig()).eval())
    with tempfile.TemporaryDirectory(prefix="edgeldm-lcm-preset-") as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        del pipe, student
        manifest = export_bundle(tmp, out, ExportConfig(backends=("onnx",), height=size, width=size))
    return {"preset": preset, "bundle": out, "size": size, "tiny_vae": tiny_vae, "defaults": manifest["defaults"]}


def parity(student_bundle: str, student: str, prompts: int, steps: int = 4) -> dict:
    import torch

    from ...calibration.prompts import calibration_prompts
    from ...loading import load_pipeline
    from ...runtimes.text2image import Text2Image
    from ..quality import psnr

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
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.studies.distill_bench", description=__doc__,
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
    lb.add_argument("--tiny-vae", action="store_true",
                    help="with an AutoencoderTiny (TAESD's architecture, what `edgeldm distill-vae` writes) as VAE")
    par = sub.add_parser("parity", help="runtime LCM sampler vs diffusers' LCMScheduler pipeline")
    par.add_argument("student_bundle")
    par.add_argument("student")
    par.add_argument("--prompts", type=int, default=8)
    sc = sub.add_parser("step-cost", help="distill seconds per step: teacher live vs --teacher-draws table")
    sc.add_argument("model")
    sc.add_argument("--teacher", default=None, help="another teacher, e.g. the unpruned model of a pruned MODEL")
    sc.add_argument("--draws", type=int, default=16)
    sc.add_argument("--steps", type=int, default=150)
    sc.add_argument("--pairs", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.figure == "quality":
        out = quality(args.student, args.teacher, args.prompts)
    elif args.figure == "latency":
        out = latency(args.student_bundle, args.teacher_bundle, args.repeat, args.threads)
    elif args.figure == "lcm-bundle":
        out = lcm_bundle(args.preset, args.out, args.size, args.tiny_vae)
    elif args.figure == "step-cost":
        out = step_cost(args.model, args.teacher, args.draws, args.steps, args.pairs)
    else:
        out = parity(args.student_bundle, args.student, args.prompts)
    from ..fingerprint import emit_result

    emit_result(out, "distill_bench", argv, backend="torch" if args.figure in ("quality", "step-cost") else "onnx",
                threads=getattr(args, "threads", None), json_path=args.json)
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
