"""``edgeldm generate``: one image from a prompt through diffusers (the torch reference)."""

from __future__ import annotations

import logging

from . import command
from .common import RAW, add_image_arguments, add_model_argument, check_positive, image_output

logger = logging.getLogger("edgeldm")


@command("generate")
def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate one image from a prompt (torch reference path through diffusers)",
        description="Generate an image with the diffusers pipeline of MODEL: the torch reference that exported "
                    "and compressed models are compared against.",
        epilog='example:\n  edgeldm generate tiny --prompt "a large red circle in the top left on a white background" '
               "-o red.png",
        formatter_class=RAW,
    )
    add_model_argument(p)
    add_image_arguments(p)
    from ..schedulers import SCHEDULERS

    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="sampler to use instead of the model's own (default: the model's scheduler)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import atomic_write_bytes, image_bytes
    from ..families import FAMILIES
    from ..generation import generate
    from ..loading import load_pipeline
    from ..schedulers import swap_scheduler

    check_positive(steps=args.steps, height=args.height, width=args.width)
    out = image_output(args.output, args.overwrite, inputs=(args.model,))
    # the torch reference: diffusers' own pipeline does the work, so every family it has a pipeline for runs here
    pipe = load_pipeline(args.model, allow_pickle=args.allow_pickle, families=tuple(FAMILIES))
    if args.scheduler:
        swap_scheduler(pipe, args.scheduler)
    images, _ = generate(pipe, [args.prompt], steps=args.steps, guidance=args.guidance, seeds=[args.seed],
                         height=args.height, width=args.width,
                         negative_prompts=[args.negative_prompt] if args.negative_prompt else None)
    atomic_write_bytes(out, image_bytes(images[0], out.suffix))
    logger.info("wrote %s (%dx%d, %d steps, guidance %g, seed %d, %s)", out, images.shape[2], images.shape[1],
                args.steps, args.guidance, args.seed, type(pipe.scheduler).__name__)
    return 0
