"""Figures of the papers, rendered with shipped models.

- :func:`temperature_sweep`: CIC's Figure 1, one image decoded by the annealed mean at
  T = 1, 0.77, 0.58, 0.38, 0.29, 0.14 and by the mode.
- :func:`prior_samples`: a grid of samples of a class-conditional generative prior.
- :func:`model_sheet`: a contact sheet of photos, columns input | each model, one row per photo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .io import read_image, write_image

__all__ = ["temperature_sweep", "labelled_strip", "prior_samples", "model_sheet", "SWEEP_TEMPERATURES"]

#: the temperatures of CIC's Figure 1; 0 stands for the mode
SWEEP_TEMPERATURES = (1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0.0)

_LABEL_HEIGHT = 18


def labelled_strip(images: list[np.ndarray], labels: list[str], pad: int = 4) -> Image.Image:
    """Place uint8 RGB images [H, W, 3] (same size) side by side, each labelled on top."""
    h, w = images[0].shape[:2]
    strip = Image.new("RGB", (pad + len(images) * (w + pad), _LABEL_HEIGHT + h + pad), "white")
    draw = ImageDraw.Draw(strip)
    for i, (img, label) in enumerate(zip(images, labels)):
        x = pad + i * (w + pad)
        draw.text((x + 2, 3), label, fill="black")
        strip.paste(Image.fromarray(img), (x, _LABEL_HEIGHT))
    return strip


def temperature_sweep(image: str | os.PathLike, out: str | os.PathLike, model: str = "cic", size: int | None = None,
                      device: str = "auto", force: bool = False, max_side: int = 320) -> Path:
    """Render the annealed-mean temperature sweep of a CIC model for one image.

    Columns: the gray input, then T = 1 ... 0.14, then the mode (``SWEEP_TEMPERATURES``).
    The image is shown with its long side at most ``max_side`` pixels.
    """
    from .pipeline import Colorizer

    colorizer = Colorizer(model, device=device, size=size)
    if colorizer.info["method"] != "cic":
        raise ValueError(f"model {model!r} is a {colorizer.info['method']} model; the temperature sweep needs a cic model")
    loaded = read_image(image)
    gray = loaded.gray
    scale = min(1.0, max_side / max(gray.shape))
    if scale < 1.0:
        w, h = max(round(gray.shape[1] * scale), 1), max(round(gray.shape[0] * scale), 1)
        gray = np.asarray(Image.fromarray(gray).resize((w, h), Image.BILINEAR), dtype=np.float32)
    gray8 = np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    columns, labels = [gray8], ["input"]
    for t in SWEEP_TEMPERATURES:
        columns.append(colorizer.colorize_gray(gray, temperature=t))
        labels.append("mode" if t == 0 else f"T = {t:g}")
    return write_image(labelled_strip(columns, labels), out, force=force)


def prior_samples(model: str, class_name_or_index: str | int, n: int = 16, truncation: float | None = None, seed: int = 0,
                  device: str = "cpu", columns: int | None = None) -> Image.Image:
    """A grid of ``n`` samples of one class from a ``prior`` model (shipped name, file or run).

    ``truncation``: redraw z beyond this many standard deviations (default: the model's).
    """
    import math

    import torch

    from .nets.efficientnet import resolve_class
    from .weights import load_model

    method, info = load_model(model, device)
    if info["method"] != "prior":
        raise ValueError(f"model {model!r} is a {info['method']!r} model; `tinct sample` needs a 'prior' model")
    index = resolve_class(class_name_or_index)
    classes = torch.full((n,), index, dtype=torch.long, device=device)
    rgb = method.sample(classes, truncation=truncation, seed=seed).cpu()  # [n, 3, S, S]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    size = rgb.shape[-1]
    grid = Image.new("RGB", (columns * size, rows * size), "white")
    arr = (rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for k in range(n):
        grid.paste(Image.fromarray(arr[k]), ((k % columns) * size, (k // columns) * size))
    return grid


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
    from .io import ImageReadError
    from .pipeline import Colorizer

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
    sheet = Image.new("RGB", (pad + len(labels) * (col_w + pad), _LABEL_HEIGHT + len(rows) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        x = pad + c * (col_w + pad)
        draw.text((x + 2, 3), label, fill="black")
        for r, row in enumerate(rows):
            sheet.paste(row[c], (x + (col_w - row[c].width) // 2, _LABEL_HEIGHT + r * (height + pad)))
    return sheet
