"""Contact sheets: generated images beside their prompts, for eyes and for reports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def contact_sheet(images: np.ndarray, captions: list[str], path: str | Path, *, columns: int = 4,
                  scale: int = 2, correct: list[bool] | None = None) -> Path:
    """Write a PNG grid: each tile an image (upscaled ``scale``x, nearest) with its prompt beside it.

    ``correct`` (optional, one per image) frames a tile green when every attribute was right, red otherwise.
    """
    from PIL import Image, ImageDraw, ImageFont

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    n = len(images)
    h, w = images.shape[1] * scale, images.shape[2] * scale
    text_w, pad = 190, 6
    tile_w, tile_h = w + text_w + 2 * pad, h + 2 * pad
    rows = max(1, -(-n // columns))
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (img, cap) in enumerate(zip(images, captions)):
        x0, y0 = (i % columns) * tile_w, (i // columns) * tile_h
        if correct is not None:
            draw.rectangle([x0 + 1, y0 + 1, x0 + w + 2 * pad - 2, y0 + tile_h - 2],
                           outline=(30, 160, 60) if correct[i] else (210, 40, 40), width=3)
        sheet.paste(Image.fromarray(img).resize((w, h), Image.NEAREST), (x0 + pad, y0 + pad))
        lines = textwrap.wrap(cap, width=30)[: max(1, h // 12)]
        draw.multiline_text((x0 + w + 2 * pad, y0 + pad), "\n".join(lines), fill=(20, 20, 20), font=font, spacing=2)
    from ..atomic import atomic_write_bytes, image_bytes

    return atomic_write_bytes(path, image_bytes(sheet, Path(path).suffix or ".png"))  # the suffix's format
