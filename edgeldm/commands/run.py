"""``edgeldm run``: an image from a bundle through the torch-free runtime."""

from __future__ import annotations

import logging

from . import command
from .common import RAW, add_image_arguments, check_positive, image_output

logger = logging.getLogger("edgeldm")


@command("run")
def add_parser(sub) -> None:
    from ..arguments import INFERENCE_PRECISION_HELP, STRENGTH, THREADS
    from ..runtimes.backends import BACKENDS
    from ..runtimes.noise import NOISE_GENERATORS
    from ..runtimes.samplers import SAMPLERS
    from ..runtimes.samplers.registry import _load_builtin_samplers

    p = sub.add_parser(
        "run", help="generate an image from a bundle with the torch-free runtime",
        description="Text-to-image, or image-to-image with --image (inpainting with --mask too), over an exported "
                    "bundle through ONNX Runtime "
                    "or OpenVINO: numpy samplers, the bundle's tokenizer, one backend; no torch, no diffusers. "
                    "Verifies the bundle's file digests.",
        epilog='examples:\n  edgeldm run bundles/tiny --prompt "a small red circle in the top left on a white '
               'background" --backend openvino -o x.png\n'
               '  edgeldm run bundles/tiny --image x.png --strength 0.6 --prompt "a small blue circle in the top '
               'left on a white background" -o y.png   # a bundle exported with --vae-encoder\n'
               '  edgeldm run bundles/tiny --image x.png --mask m.png --prompt "a small green triangle in the '
               'bottom right on a white background" -o z.png',
        formatter_class=RAW,
    )
    _load_builtin_samplers()
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `edgeldm export`")
    add_image_arguments(p, own="the bundle's")
    image = p.add_argument_group("image-to-image and inpainting")
    image.add_argument("--image", default=None, metavar="IN.png",
                       help="start from this image instead of noise (needs a bundle exported with --vae-encoder); "
                            "the output keeps its size")
    image.add_argument("--mask", default=None, metavar="MASK.png",
                       help="with --image: inpaint where the mask is white, keep the image where it is black (same "
                            "size as the image); an inpainting bundle (9-channel UNet) needs it")
    image.add_argument("--strength", type=STRENGTH, default=None,
                       help="with --image: how much of the schedule runs, in (0, 1]; low keeps the input, 1 ignores "
                            "it (default 0.8; 1.0 with --mask)")
    image.add_argument("--no-resize", dest="resize", action="store_false",
                       help="with --image: refuse an image whose sides are not multiples of the model's size "
                            "multiple, instead of shrinking it with a warning")
    p.add_argument("--backend", default="onnx", choices=sorted(BACKENDS),
                   help="onnx, openvino, ort_mobile (ONNX Runtime Mobile's .ort graphs), coreml (predicts on macOS only), or torch (the source model through "
                        "diffusers' modules, for reference; needs the compress extra) (default onnx)")
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS),
                   help="the numpy sampler to use (default: the bundle's scheduler)")
    p.add_argument("--threads", type=THREADS, default=None,
                   help="backend CPU threads (default: the backend's choice)")
    p.add_argument("--device", default=None,
                   help="where the backend runs: an ONNX Runtime execution provider (e.g. CUDAExecutionProvider), "
                        "an OpenVINO device (CPU, GPU, NPU, AUTO) or Core ML compute units (default: the CPU)")
    p.add_argument("--inference-precision", default=None, metavar="PRECISION", help=INFERENCE_PRECISION_HELP)
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="BUNDLE: skip the SHA-256 check of the bundle's files against its manifest (paths must "
                        "still stay inside the bundle)")
    p.add_argument("--noise", default="philox", choices=sorted(NOISE_GENERATORS),
                   help="the seeded noise generator: philox (default; the same image from --seed in any language "
                        "— docs/bundle-format.md#noise) or numpy (numpy's PCG64: images made before bundle format 3)")
    add_memory_arguments(p)
    p.set_defaults(func=run)


def add_memory_arguments(p) -> None:
    from ..arguments import LOW_MEMORY_HELP, VAE_TILE_HELP

    group = p.add_argument_group("memory")
    group.add_argument("--low-memory", action="store_true", help=LOW_MEMORY_HELP)
    group.add_argument("--vae-tile", type=int, default=None, metavar="N", help=VAE_TILE_HELP)


def run(args) -> int:
    from ..atomic import atomic_write_bytes, image_bytes
    from ..errors import EdgeLDMError
    from ..runtimes.backends import device_options, precision_options
    from ..runtimes.images import open_image
    from ..runtimes.text2image import Text2Image

    check_positive(steps=args.steps, height=args.height, width=args.width, threads=args.threads)
    if args.image is None:
        for flag, given in (("--mask", args.mask is not None), ("--strength", args.strength is not None),
                            ("--no-resize", not args.resize)):
            if given:
                raise EdgeLDMError(f"{flag} needs --image", hint="pass the input image with --image IN.png")
    out = image_output(args.output, args.overwrite, inputs=(args.bundle, args.image, args.mask))
    # a bad file fails before the bundle is opened
    image = open_image(args.image) if args.image else None
    mask = open_image(args.mask, "mask") if args.mask else None
    options = {"threads": args.threads} if args.threads else {}
    options.update(device_options(args.backend, args.device))
    options.update(precision_options(args.backend, args.inference_precision))
    t2i = Text2Image(args.bundle, backend=args.backend, verify=args.verify, sampler=args.sampler,
                     low_memory=args.low_memory, vae_tile=args.vae_tile, **options)
    result = t2i(args.prompt, negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.guidance,
                seed=args.seed, height=args.height, width=args.width, image=image, mask=mask, strength=args.strength,
                resize=args.resize, noise=args.noise)
    atomic_write_bytes(out, image_bytes(result, out.suffix))
    logger.info("wrote %s (%s, %s)", out, args.backend, type(t2i.sampler).__name__)
    if args.backend == "openvino" and args.inference_precision is None and (args.device or "CPU") == "CPU":
        from ..runtimes.backends.devices import openvino_cpu_computes_bf16

        if openvino_cpu_computes_bf16():
            logger.info("hint: this CPU computes bf16 natively; --inference-precision bf16 made the sd15 laptop "
                        "bundle's image 1.29x faster at ~49 dB of the f32 one (docs/export-and-run.md)")
    return 0
