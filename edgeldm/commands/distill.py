"""``edgeldm distill``: latent consistency distillation into a 1-4-step student."""

from __future__ import annotations

from . import command
from .common import RAW, add_stage_arguments, call_stage


@command("distill")
def add_parser(sub) -> None:
    from ..stages.distill import DistillOptions

    p = sub.add_parser(
        "distill", help="latent consistency distillation: a 1-4-step student of any model (pruned ones too)",
        description="Distil MODEL (the teacher) into a latent consistency model (LCM). --mode lcm trains a copy of "
                    "the UNet plus a guidance-scale embedding, so the guidance scale is an input and sampling needs "
                    "one UNet call per step; --mode lcm-lora trains only a LoRA adapter (peft) and samples without "
                    "guidance. Training data are prompts: the teacher generates the latents (tiny's own captions "
                    "when MODEL derives from tiny, else the shipped prompt set or --prompts). The output is a "
                    "diffusers folder with an LCMScheduler that load_pipeline, `edgeldm export` and the runtimes' "
                    "LCM sampler take. Runs under HF accelerate (`accelerate launch -m edgeldm distill ...` for "
                    "several GPUs), checkpoints into OUTPUT.work/ and resumes from there; validation images of 1, "
                    "2 and 4 steps go to OUTPUT.work/validation/.",
        epilog="examples:\n  edgeldm distill tiny -o tiny-lcm\n"
               "  edgeldm distill pruned -o pruned-lcm --teacher tiny   # the unpruned model teaches\n"
               "  edgeldm distill finetuned -o lcm-lora --mode lcm-lora --steps 1000\n"
               "  edgeldm export tiny-lcm -o tiny-lcm-bundle && "
               "edgeldm run tiny-lcm-bundle --steps 4 --prompt \"a small red circle in the top left\" -o x.png",
        formatter_class=RAW,
    )
    add_stage_arguments(p, DistillOptions, "distilled model folder to create", func=run, data_cache=True)


def run(args) -> int:
    from ..stages.distill import DistillOptions, distill

    result = call_stage(distill, DistillOptions, args, "model", allow_pickle=args.allow_pickle,
                        data_cache=args.data_cache)
    if result.output is None:  # a helper process of accelerate launch
        return 0
    summary = result.details
    last = summary["validation"][-1] if summary["validation"] else {}
    print(f"distilled {args.model} ({args.mode}, {args.steps} steps, {summary['seconds']:.0f} s); "
          f"1-step latent PSNR vs the teacher's ODE {last.get('latent_psnr_1step_db', float('nan')):.1f} dB; "
          f"wrote {args.output}")
    return 0
