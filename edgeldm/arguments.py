"""Checks of the values a user hands to a command or a library call: one rule each, one message each.

The library calls them (``Text2Image``, ``generate``) so that a Python caller gets the same clear
:class:`~edgeldm.errors.EdgeLDMError` as the command line, where :func:`argparse_type` turns each into an
argparse ``type=`` so that a bad flag fails while the arguments are parsed, before any work starts.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from .errors import EdgeLDMError

#: seeds are unsigned 64-bit integers: what numpy's and torch's generators take (and ComfyUI's range)
MAX_SEED = 2**64 - 1


class InvalidArgumentError(EdgeLDMError):
    """A value given by the user is out of range or malformed."""


def _whole(value, name: str) -> int:
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}") from None
    if isinstance(value, float) and value != as_int:
        raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}")
    return as_int


def _finite_nonnegative(value, name: str, what: str, note: str = "") -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be {what}, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be a finite {what.removeprefix('a ')} >= 0{note}, got {value}")
    return value


def check_guidance(value: float | str, name: str = "guidance") -> float:
    """A finite scale >= 0. Values up to 1 mean no classifier-free guidance (diffusers' rule: guidance applies
    above 1), so 0 and 1 both turn it off."""
    return _finite_nonnegative(value, name, "a number", " (0 or 1: no guidance)")


def check_seed(value: int | str, name: str = "seed") -> int:
    as_int = _whole(value, name)
    if not 0 <= as_int <= MAX_SEED:
        raise InvalidArgumentError(f"{name} must lie in [0, 2^64 - 1], got {as_int}")
    return as_int


def check_positive_int(value: int | str, name: str) -> int:
    as_int = _whole(value, name)
    if as_int < 1:
        raise InvalidArgumentError(f"{name} must be positive, got {as_int}")
    return as_int


def check_threads(value: int | str, name: str = "threads") -> int:
    """1 to 4x the machine's cores: more only costs memory (a typo of 100000 once made 7 700 threads)."""
    import os

    threads = check_positive_int(value, name)
    limit = 4 * (os.cpu_count() or 1)
    if threads > limit:
        raise InvalidArgumentError(f"{name} must lie in [1, {limit}] (4x this machine's cores), got {threads}")
    return threads


def check_psnr_floor(value: float | str, name: str = "min-psnr") -> float:
    return _finite_nonnegative(value, name, "a number of dB")


def check_strength(value: float | str, name: str = "strength") -> float:
    """Image-to-image strength in (0, 1]: how much of the schedule runs (1 repaints from pure noise)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise InvalidArgumentError(f"{name} must lie in (0, 1], got {value}",
                                   hint="0.2 keeps the input close, 0.6 keeps its layout, 1.0 ignores it")
    return value


def check_text(value: str, name: str = "prompt") -> str:
    """Text that UTF-8 can encode: command-line bytes that are not UTF-8 arrive as lone surrogates, which the
    tokenizer cannot take."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value.encode("utf-8", "surrogateescape")[exc.start:exc.end]
        raise InvalidArgumentError(f"{name} is not valid UTF-8 text (bytes {bad!r} at character {exc.start})",
                                   hint="pass the prompt as UTF-8") from None
    return value


def check_image_size(height: int, width: int, multiple: int, *, why: str) -> None:
    """Both sides positive multiples of ``multiple``; ``why`` says where the multiple comes from."""
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        lower_h, lower_w = max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)
        raise InvalidArgumentError(f"height and width must be positive multiples of {multiple} for this model "
                                   f"({why}), got {height}x{width}", hint=f"e.g. {lower_h}x{lower_w}")


def argparse_type(check: Callable, name: str) -> Callable[[str], object]:
    """``check`` as an argparse ``type=``: its message becomes argparse's one-line error (exit 2)."""

    def parse(text: str):
        try:
            return check(text, name)
        except EdgeLDMError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    parse.__name__ = name
    return parse


# the argparse types of the shared values, for the options dataclasses (edgeldm/stages) and the commands
GUIDANCE = argparse_type(check_guidance, "guidance")
SEED = argparse_type(check_seed, "seed")
THREADS = argparse_type(check_threads, "threads")
PSNR_FLOOR = argparse_type(check_psnr_floor, "min-psnr")
STRENGTH = argparse_type(check_strength, "strength")
TEXT = argparse_type(check_text, "prompt")
NEGATIVE_TEXT = argparse_type(check_text, "negative prompt")
GUIDANCE_HELP = "classifier-free guidance scale, a finite number >= 0; 0 and 1 both mean no guidance"


#: the help of the memory options, shared by `edgeldm run` (argparse) and `edgeldm bench` (BenchOptions)
LOW_MEMORY_HELP = ("hold one component at a time: each graph opens on first use and is released after its phase "
                   "(prompt, denoising, decoding), ONNX Runtime's memory arena off, the VAE tiled at 32 latent "
                   "pixels (the same image up to the tiling; slower: graphs load for every image)")
INFERENCE_PRECISION_HELP = ("arithmetic precision the backend computes in, where it offers a choice (OpenVINO: "
                            "f32, the default, keeps parity with the exported graph; bf16 is faster on CPUs with "
                            "AVX512_BF16 or AMX at ~50 dB image parity; f16 on GPUs)")

VAE_TILE_HELP = ("decode and encode the VAE in overlapping tiles of N latent pixels a side (N x the VAE factor "
                 "image pixels), blended as diffusers' enable_tiling does: the VAE's memory stays one tile's at any "
                 "size (dynamic bundles; default: untiled, or 32 with --low-memory)")
