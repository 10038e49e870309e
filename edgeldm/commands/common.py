"""Arguments and checks several commands share."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..arguments import argparse_type, check_guidance, check_seed, check_text
from ..errors import EdgeLDMError
from ..options import check_positive_values as check_positive  # noqa: F401  (commands' own values)
from ..stages.common import check_output

GUIDANCE = argparse_type(check_guidance, "guidance")
SEED = argparse_type(check_seed, "seed")
TEXT = argparse_type(check_text, "prompt")
NEGATIVE_TEXT = argparse_type(check_text, "negative prompt")
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
