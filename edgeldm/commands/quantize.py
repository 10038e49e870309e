"""``edgeldm quantize``: a bundle quantized for one backend, calibrated on its own sampler trajectory."""

from __future__ import annotations

from . import command
from .common import RAW, add_output_argument, call_stage


@command("quantize")
def add_parser(sub) -> None:
    from ..compressor.quantize import list_schemes
    from ..options import add_arguments
    from ..stages.quantize import QuantizeOptions

    schemes = "\n".join(f"  {s.backend:9s}{s.name:14s}{s.summary}" for s in list_schemes())
    p = sub.add_parser(
        "quantize", help="quantize a bundle for one backend, calibrated on its own sampler trajectory",
        description="Quantize the graphs of an exported BUNDLE for one backend. Calibration inputs are captured "
                    "by running the bundle's own sampler (its default steps and guidance: the 4 LCM timesteps "
                    "for a distilled model) over calibration prompts; a quarter of them is held out to validate "
                    "each quantized graph against its fp32 graph (output PSNR, gated by --min-psnr) and the "
                    "images of both bundles are compared on fixed prompts. Every number goes into the new "
                    "bundle's manifest. The output holds only this backend's graphs.",
        epilog="schemes:\n" + schemes + "\n\nexamples:\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-int8 --backend openvino --scheme hybrid\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-qdq --backend onnx --scheme qdq-static "
               "--components unet\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-small --backend onnx "
               "--scheme text_encoder=int4-weights,unet=int8-weights,vae_decoder=int8-weights",
        formatter_class=RAW,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a bundle written by `edgeldm export`")
    add_output_argument(p, "quantized bundle folder to create")
    add_arguments(p, QuantizeOptions, required=("backend", "scheme"))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..stages.quantize import QuantizeOptions, quantize

    manifest = call_stage(quantize, QuantizeOptions, args, "bundle").details
    q = manifest["quantization"]
    for comp in q["components"]:
        entry = manifest["components"][comp]["backends"][args.backend]["quantization"]
        parity = entry["parity"]
        kept = f", kept float: {', '.join(entry['exclude'])}" if entry["exclude"] else ""
        value = f"{parity['psnr_db']:.1f} dB" if "psnr_db" in parity else parity.get("skipped", "n/a")
        floor = f" (floor {entry['min_psnr_db']:g} dB)" if "min_psnr_db" in entry else ""
        print(f"{comp:13s} {args.backend} {entry['scheme']}: output PSNR vs fp32 {value}{floor}{kept}")
    image = q["image_parity"]
    if "psnr_db_mean" in image:
        print(f"images vs the fp32 bundle: PSNR mean {image['psnr_db_mean']:.1f} dB, min {image['psnr_db_min']:.1f} dB")
    print(f"wrote {args.output}")
    return 0
