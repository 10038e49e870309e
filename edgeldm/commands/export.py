"""``edgeldm export``: a model to a bundle of ONNX / OpenVINO / Core ML graphs with a manifest."""

from __future__ import annotations

from . import command
from .common import RAW, add_stage_arguments, call_stage


@command("export")
def add_parser(sub) -> None:
    from ..stages.export import ExportOptions

    p = sub.add_parser(
        "export", help="export a model to a bundle of ONNX / OpenVINO graphs with a manifest",
        description="Export the text encoder, UNet and VAE decoder of MODEL into one bundle folder (optimum's "
                    "layout, so optimum's pipelines load it too) with edgeldm.json: file digests, I/O specs, "
                    "scheduler, defaults, and every graph's validation against torch (max abs diff, cosine, PSNR). "
                    "Graphs are validated on shapes other than the export shapes; a failure writes nothing.",
        epilog="examples:\n  edgeldm export tiny -o bundles/tiny\n"
               "  edgeldm export ./sd15 -o bundles/sd15-npu --backend onnx --static --height 512 --width 512\n"
               "  edgeldm export ./sd15 -o bundles/sd15-ane --backend coreml --static --precision fp16 "
               "--coreml-attention split_einsum   # UNet in <= 1 GB chunks",
        formatter_class=RAW,
    )
    add_stage_arguments(p, ExportOptions, "bundle folder to create", func=run)


def run(args) -> int:
    from ..stages.export import ExportOptions, export

    call_stage(export, ExportOptions, args, "model", allow_pickle=args.allow_pickle)
    return 0
