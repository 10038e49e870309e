"""``edgeldm convert``: a single-file checkpoint written as a standard diffusers folder."""

from __future__ import annotations

from . import command
from .common import RAW, add_stage_arguments, call_stage


@command("convert")
def add_parser(sub) -> None:
    from ..stages.convert import ConvertOptions

    p = sub.add_parser(
        "convert", help="write a single-file checkpoint (original SD layout) as a diffusers folder",
        description="Read SOURCE - a .safetensors file in the original Stable Diffusion layout (the A1111 / ComfyUI "
                    "format; .ckpt with --allow-pickle), a diffusers folder or a zoo name - and write it as a "
                    "standard diffusers folder with safetensors weights. Every other command also takes the single "
                    "file directly and converts on the fly; convert keeps the folder. The architecture is matched "
                    "from the weights' names and shapes against edgeldm's embedded configs (offline).",
        epilog="examples:\n  edgeldm convert my-model.safetensors -o my-model\n"
               "  edgeldm convert sd2-768.safetensors -o sd2-768 --prediction-type v_prediction",
        formatter_class=RAW,
    )
    add_stage_arguments(p, ConvertOptions, "diffusers folder to create", func=run, source="source",
                        metavar="SOURCE", source_help="a single-file checkpoint, a diffusers folder or a zoo name")


def run(args) -> int:
    from ..stages.convert import ConvertOptions, convert

    result = call_stage(convert, ConvertOptions, args, "source", allow_pickle=args.allow_pickle)
    print(f"wrote {result.output} ({result.details['prediction_type']} prediction)")
    return 0
