"""``edgeldm finetune``: recover a pruned model by knowledge distillation from its unpruned teacher."""

from __future__ import annotations

from . import command
from .common import RAW, add_stage_arguments, call_stage


@command("finetune")
def add_parser(sub) -> None:
    from ..stages.finetune import FinetuneOptions

    p = sub.add_parser(
        "finetune", help="recover a pruned model by knowledge distillation from its unpruned teacher",
        description="BK-SDM-style recovery: the pruned UNet learns the denoising task, the teacher's output, and "
                    "the teacher's features at every down and up stage, on latents the teacher generates for "
                    "calibration prompts (plus tiny's training scenes when the model derives from tiny) - no image "
                    "data set needed. Runs under HF accelerate (`accelerate launch -m edgeldm finetune ...` for "
                    "several GPUs), checkpoints into OUTPUT.work/ and resumes from there.",
        epilog="examples:\n  edgeldm finetune pruned --teacher tiny -o finetuned --steps 1500\n"
               "  edgeldm finetune pruned --teacher tiny -o finetuned --steps 1000 --guided-kd-weight 1   "
               "# + guided-output KD",
        formatter_class=RAW,
    )
    add_stage_arguments(p, FinetuneOptions, "finetuned model folder to create", func=run, source="pruned",
                        metavar="PRUNED", source_help="a model written by `edgeldm prune` (or any diffusers folder)",
                        required=("teacher",), data_cache=True)


def run(args) -> int:
    from ..stages.finetune import FinetuneOptions, finetune

    result = call_stage(finetune, FinetuneOptions, args, "pruned", allow_pickle=args.allow_pickle,
                        data_cache=args.data_cache)
    if result.output is None:  # a helper process of accelerate launch
        return 0
    history = result.details["history"]
    last = history[-1] if history else {}
    print(f"finetuned {args.pruned} for {args.steps} steps ({result.details['seconds']:.0f} s, final loss "
          f"{last.get('loss', float('nan')):.4f}); wrote {args.output}")
    return 0
