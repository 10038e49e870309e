"""``edgeldm finetune``: recover a pruned model by knowledge distillation from its unpruned teacher."""

from __future__ import annotations

from pathlib import Path

from . import command
from .common import RAW, add_model_argument, add_output_argument, call_stage

DATA_CACHE_HELP = ("folder of teacher generations shared between training runs: finetune and distill taught by the "
                   "same teacher with the same prompts, seed, samples, steps and guidance (their defaults) generate "
                   "the teacher's latents once (default: none)")


@command("finetune")
def add_parser(sub) -> None:
    from ..options import add_arguments
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
    add_model_argument(p, "pruned", "PRUNED", "a model written by `edgeldm prune` (or any diffusers folder)")
    add_output_argument(p, "finetuned model folder to create")
    add_arguments(p, FinetuneOptions, required=("teacher",))
    p.add_argument("--data-cache", type=Path, default=None, metavar="DIR", help=DATA_CACHE_HELP)
    p.set_defaults(func=run)


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
