"""``edgeldm info``: components, parameters, UNet MACs and the operator inventory of a model."""

from __future__ import annotations

from . import command
from .common import RAW, add_model_argument, check_positive, print_json


@command("info")
def add_parser(sub) -> None:
    p = sub.add_parser(
        "info", help="components, parameters, UNet MACs and the operator inventory of a model",
        description="Describe a model without loading its weights: per component the class, parameter count, "
                    "dtype and size on disk; for the UNet the MACs of one denoising step at the given image size "
                    "(counted by torch's FlopCounterMode) and every operator pruning can work on.",
        epilog="examples:\n  edgeldm info sd15\n  edgeldm info ./my-sd-checkpoint --json --height 768 --width 768",
        formatter_class=RAW,
    )
    add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (default: the model's native size)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default: the model's native size)")
    p.add_argument("--operators", action="store_true", help="list every operator, not only the summary per type")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..info import describe_model, render_info

    check_positive(height=args.height, width=args.width)
    info = describe_model(args.model, height=args.height, width=args.width, allow_pickle=args.allow_pickle)
    if args.json:
        print_json(info)
    else:
        render_info(info, list_operators=args.operators)
    return 0
