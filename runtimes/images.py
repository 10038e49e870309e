"""Input images of the image-to-image and inpainting modes: read, fitted to the model's size multiple, and turned
into the VAE encoder's input, as diffusers' ``VaeImageProcessor`` does (RGB, [0, 255] -> [-1, 1], NCHW float32).

Pillow only (no torch): the runtime's one image library, already needed to return PIL images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import EdgeLDMError

logger = logging.getLogger("edgeldm")

__all__ = ["fit_image", "mask_array", "open_image", "to_model_input"]


def open_image(source, what: str = "image"):
    """A PIL image from a path, a PIL image or an HWC uint8 array; a file Pillow cannot read is one clear error."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise EdgeLDMError(f"{what} array must be HxW or HxWxC uint8, got {source.dtype} of shape {source.shape}")
        return Image.fromarray(source)
    path = Path(source)
    if not path.is_file():
        raise EdgeLDMError(f"{what} {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise EdgeLDMError(f"{what} {path} is not an image Pillow can read ({exc})",
                           hint="pass a PNG, JPEG or WebP file") from None


def fit_image(image, multiple: int, *, resize: bool = True, what: str = "image", resample=None):
    """``image`` with sides that are multiples of ``multiple``: shrunk to the nearest ones below (Lanczos, with a
    warning), or refused when ``resize`` is false."""
    from PIL import Image

    width, height = image.size
    if width % multiple == 0 and height % multiple == 0:
        return image
    fitted = (max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple))
    if not resize:
        raise EdgeLDMError(f"{what} is {width}x{height}; this model needs sides that are multiples of {multiple}",
                           hint=f"resize it to {fitted[0]}x{fitted[1]}, or drop --no-resize to let edgeldm do it")
    logger.warning("%s resized from %dx%d to %dx%d (sides must be multiples of %d)", what, width, height, *fitted,
                   multiple)
    return image.resize(fitted, resample=Image.LANCZOS if resample is None else resample)


def to_model_input(image) -> np.ndarray:
    """RGB PIL image -> (1, 3, H, W) float32 in [-1, 1], the VAE encoder's input."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    return (array * np.float32(2.0) - np.float32(1.0)).transpose(2, 0, 1)[None].copy()


def mask_array(mask) -> np.ndarray:
    """Mask PIL image -> (1, 1, H, W) float32, 1 where the image is repainted (white), 0 where it is kept:
    grey levels binarised at 0.5, as diffusers' mask processor does."""
    array = np.asarray(mask.convert("L"), dtype=np.float32) / np.float32(255.0)
    return (array >= 0.5).astype(np.float32)[None, None]
