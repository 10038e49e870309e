"""``edgeldm run``: an image from a bundle through the torch-free runtime."""

from __future__ import annotations

import logging

from . import command
from .common import RAW, add_image_arguments, check_positive, image_output

logger = logging.getLogger("edgeldm")


@command("run")
def add_parser(sub) -> None:
    from ..arguments import THREADS
    from ..runtimes.backends import BACKENDS
    from ..runtimes.samplers import SAMPLERS
    from ..runtimes.samplers.registry import _load_builtin_samplers

    p = sub.add_parser(
        "run", help="generate an image from a bundle with the torch-free runtime",
        description="Text-to-image over an exported bundle through ONNX Runtime or OpenVINO: numpy samplers, the "
                    "bundle's tokenizer, one backend; no torch, no diffusers. Verifies the bundle's file digests.",
        epilog='example:\n  edgeldm run bundles/tiny --prompt "a small red circle in the top left on a white '
               'background" --backend openvino -o x.png',
        formatter_class=RAW,
    )
    _load_builtin_samplers()
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `edgeldm export`")
    add_image_arguments(p, own="the bundle's")
    p.add_argument("--backend", default="onnx", choices=sorted(BACKENDS),
                   help="onnx, openvino, coreml (predicts on macOS only), or torch (the source model through "
                        "diffusers' modules, for reference; needs the compress extra) (default onnx)")
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS),
                   help="the numpy sampler to use (default: the bundle's scheduler)")
    p.add_argument("--threads", type=THREADS, default=None,
                   help="backend CPU threads (default: the backend's choice)")
    p.add_argument("--device", default=None,
                   help="where the backend runs: an ONNX Runtime execution provider (e.g. CUDAExecutionProvider), "
                        "an OpenVINO device (CPU, GPU, NPU, AUTO) or Core ML compute units (default: the CPU)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="BUNDLE: skip the SHA-256 check of the bundle's files against its manifest (paths must "
                        "still stay inside the bundle)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import atomic_write_bytes, image_bytes
    from ..runtimes.backends import device_options
    from ..runtimes.text2image import Text2Image

    check_positive(steps=args.steps, height=args.height, width=args.width, threads=args.threads)
    out = image_output(args.output, args.overwrite, inputs=(args.bundle,))
    options = {"threads": args.threads} if args.threads else {}
    options.update(device_options(args.backend, args.device))
    t2i = Text2Image(args.bundle, backend=args.backend, verify=args.verify, sampler=args.sampler, **options)
    image = t2i(args.prompt, negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.guidance,
                seed=args.seed, height=args.height, width=args.width)
    atomic_write_bytes(out, image_bytes(image, out.suffix))
    logger.info("wrote %s (%s, %s)", out, args.backend, type(t2i.sampler).__name__)
    return 0
