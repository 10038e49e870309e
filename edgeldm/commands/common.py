"""Arguments and checks several commands share."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..arguments import GUIDANCE, GUIDANCE_HELP, NEGATIVE_TEXT, SEED, TEXT
from ..errors import EdgeLDMError
from ..options import check_positive_values as check_positive  # noqa: F401  (commands' own values)
from ..stages.common import check_output

#: image formats -o writes (PIL writes them from an RGB image; others fail only after the work)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
RAW = argparse.RawDescriptionHelpFormatter


def add_model_argument(parser: argparse.ArgumentParser, name: str = "model", metavar: str = "MODEL",
                       help: str | None = None) -> None:
    parser.add_argument(name, metavar=metavar,
                        help=help or "a diffusers pipeline folder (model_index.json + component folders) or a zoo "
                                     "name (see `edgeldm zoo list`)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="accept pickled .bin/.ckpt weights (read with torch.load(weights_only=True)); "
                             "refused by default because unpickling can run code")


def add_output_argument(parser: argparse.ArgumentParser, what: str, *, required: bool = True) -> None:
    parser.add_argument("-o", "--output", required=required, default=None, help=what)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def image_output(path: str, overwrite: bool, *, inputs: tuple = ()) -> Path:
    """The image file ``-o`` names, checked before the work: writable, not inside an input, and a format for
    its suffix."""
    out = Path(path)
    check_output(path, overwrite, folder=False, inputs=inputs)
    suffix = out.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise EdgeLDMError(f"cannot tell the image format of {out} from its suffix {suffix or '(none)'}",
                           hint=f"end the name with one of {', '.join(IMAGE_SUFFIXES)}")
    return out


def print_json(document) -> None:
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def add_image_arguments(p: argparse.ArgumentParser, *, own: str | None = None) -> None:
    """Prompt, sampling and output arguments of the one-image commands (generate, run). ``own`` names where the
    defaults come from when not fixed (``"the bundle's"``); None: 25 steps at guidance 7.5."""
    from ..lineage import STANDARD_SAMPLING

    steps, guidance = (None, None) if own else (STANDARD_SAMPLING["steps"], STANDARD_SAMPLING["guidance"])
    size = own or "the model's native size"
    p.add_argument("--prompt", required=True, type=TEXT, help="text prompt")
    p.add_argument("--negative-prompt", default=None, type=NEGATIVE_TEXT, help="negative prompt (with guidance > 1)")
    p.add_argument("--steps", type=int, default=steps, help=f"denoising steps (default {own or steps})")
    p.add_argument("--guidance", type=GUIDANCE, default=guidance, help=f"{GUIDANCE_HELP} (default {own or guidance})")
    p.add_argument("--seed", type=SEED, default=0, help="random seed, 0 to 2^64 - 1 (default 0)")
    p.add_argument("--height", type=int, default=None, help=f"image height (default {size})")
    p.add_argument("--width", type=int, default=None, help=f"image width (default {size})")
    p.add_argument("-o", "--output", required=True, help="output image; the suffix picks the format (.png, .jpg, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def call_stage(function, options_class, args, source: str, **kwargs):
    """Build a stage's options from the parsed arguments and run it on ``args.<source>`` into ``args.output``."""
    from ..options import from_namespace

    return function(getattr(args, source), args.output, from_namespace(options_class, args), overwrite=args.overwrite,
                    **kwargs)


DATA_CACHE_HELP = ("folder of teacher generations shared between training runs: finetune and distill taught by the "
                   "same teacher with the same prompts, seed, samples, steps and guidance (their defaults) generate "
                   "the teacher's latents once (default: none)")


def add_stage_arguments(p: argparse.ArgumentParser, options_class, output_help: str, *, func, source: str = "model",
                        metavar: str = "MODEL", source_help: str | None = None, required: tuple = (),
                        output_required: bool = True, data_cache: bool = False) -> None:
    """A stage command's arguments: its input (a model, with --allow-pickle), -o / --overwrite, one flag per field
    of its options dataclass, and the handler."""
    add_model_argument(p, source, metavar, source_help)
    add_output_argument(p, output_help, required=output_required)
    from ..options import add_arguments

    add_arguments(p, options_class, required=required)
    if data_cache:
        from pathlib import Path

        p.add_argument("--data-cache", type=Path, default=None, metavar="DIR", help=DATA_CACHE_HELP)
    p.set_defaults(func=func)
