"""Figures rendered with shipped models: :func:`model_sheet`, a contact sheet of photos,
columns input | each model, one row per photo. A method's own figures (CIC's temperature sweep)
live with the method (:class:`tinct.methods.MethodCommand`).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from .io import ImageReadError, read_image
from .methods import LABEL_HEIGHT, labelled_strip
from .pipeline import Colorizer

__all__ = ["labelled_strip", "model_sheet"]


def model_sheet(images: list[str | os.PathLike], models: list[str] | tuple[str, ...] = ("default", "cic"), height: int = 256,
                size: int | None = None, device: str = "auto", pad: int = 4) -> Image.Image:
    """A contact sheet: one row per image, columns input (gray) | each model, labelled on top.

    Each image is colorized at its own size (its luminance, as ``tinct colorize`` does; ``size``
    is the working resolution, default each model's own), then every cell of its row is
    scaled to ``height`` pixels (aspect kept, Lanczos) and centred in a column as wide as the
    widest row. A model column is labelled with the name given, plus the shipped model it
    resolves to when that differs (``default (unet_gan)``).

    Raises ValueError naming the file for an unreadable image.
    """
    if not images:
        raise ValueError("model_sheet needs at least one image")
    if height < 16:
        raise ValueError(f"sheet height {height} is too small (minimum 16)")
    colorizers = [Colorizer(m, device=device, size=size) for m in models]
    labels = ["input"]
    for m, c in zip(models, colorizers):
        shipped = c.info.get("card", {}).get("name")
        labels.append(f"{m} ({shipped})" if shipped and shipped != m else m)
    rows: list[list[Image.Image]] = []
    for path in images:
        try:
            gray = read_image(path).gray  # float32 [H, W] in [0, 1]
        except ImageReadError as exc:
            raise ValueError(str(exc)) from None
        h, w = gray.shape
        cell = (max(round(w * height / h), 1), height)
        gray8 = np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
        outputs = [gray8] + [c.colorize_gray(gray) for c in colorizers]
        rows.append([Image.fromarray(o).resize(cell, Image.LANCZOS) for o in outputs])
    col_w = max(row[0].width for row in rows)
    sheet = Image.new("RGB", (pad + len(labels) * (col_w + pad), LABEL_HEIGHT + len(rows) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        x = pad + c * (col_w + pad)
        draw.text((x + 2, 3), label, fill="black")
        for r, row in enumerate(rows):
            sheet.paste(row[c], (x + (col_w - row[c].width) // 2, LABEL_HEIGHT + r * (height + pad)))
    return sheet
