"""A corpus of awkward and hostile input files, made on the fly (nothing is committed).

``make_corpus(folder)`` writes one file per case and returns ``{file name: Case}``, where
``Case.ok`` says whether ``tinct colorize`` must colorize it (else it must fail with a one-line
message containing ``Case.reason``), ``Case.size`` is the expected output size (w, h) and
``Case.warning`` a text the run must log about it. The cases: empty, truncated JPEG and PNG,
a non-image, a decompression bomb, extreme aspect ratios (3 x 50000 and 50000 x 3), 1 x 1,
16-bit, float, CMYK, palette with transparency, RGBA, an animated GIF, a multi-page TIFF,
EXIF rotation, a unicode name, and a symbolic link that points to itself.

Run ``python tests/badcorpus.py DIR`` to write the corpus to DIR for trying tinct by hand.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Case:
    ok: bool
    reason: str = ""  # failures: a fragment of the one-line message
    size: tuple[int, int] | None = None  # successes: output (width, height)
    warning: str = ""  # a fragment the run must log about this file
    alpha: bool = False  # successes: the output keeps an alpha channel


def _gray(w: int, h: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    return np.clip(128 + 60 * np.sin(x / 5.0 + seed) * np.cos(y / 7.0) + rng.normal(0, 3, (h, w)), 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG declaring ``width`` x ``height`` 8-bit gray pixels of zeros (400 MP by
    default: about 400 MB once decoded, from a file of a few hundred kB)."""
    row = b"\x00" * (width + 1)  # filter byte + pixels
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 500) for _ in range(height // 500)]
    parts.append(comp.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_corpus(folder: str | os.PathLike) -> dict[str, Case]:
    """Write the corpus into ``folder`` (created); returns the expectations per file name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Case] = {}

    def put(name: str, data: bytes, case: Case) -> None:
        (folder / name).write_bytes(data)
        cases[name] = case

    gray = Image.fromarray(_gray(48, 40))
    put("empty.jpg", b"", Case(False, "file is empty"))
    put("truncated.jpg", _encoded(Image.fromarray(_gray(200, 160, 1)), "JPEG", quality=90)[:700], Case(False, "truncated"))
    put("truncated.png", _encoded(Image.fromarray(_gray(200, 160, 2)), "PNG")[:600], Case(False, "truncated"))
    put("not_an_image.png", b"<html><body>this is a web page saved as .png</body></html>\n", Case(False, "not an image"))
    put("bomb.png", bomb_png(), Case(False, "decompression bomb"))
    put("strip_wide.png", _encoded(Image.fromarray(_gray(50000, 3, 3)), "PNG"), Case(True, size=(50000, 3)))
    put("strip_tall.png", _encoded(Image.fromarray(_gray(3, 50000, 4)), "PNG"), Case(True, size=(3, 50000)))
    put("one_pixel.png", _encoded(Image.new("L", (1, 1), 90), "PNG"), Case(True, size=(1, 1)))
    deep = Image.fromarray(_gray(48, 40).astype(np.uint16) * 257)
    put("deep16.png", _encoded(deep, "PNG"), Case(True, size=(48, 40)))
    put("float.tif", _encoded(Image.fromarray(_gray(48, 40).astype(np.float32) / 255.0), "TIFF"), Case(True, size=(48, 40)))
    put("cmyk.jpg", _encoded(gray.convert("RGB").convert("CMYK"), "JPEG", quality=95), Case(True, size=(48, 40)))
    palette = gray.convert("P")
    palette.info["transparency"] = 0
    put("palette_transparent.png", _encoded(palette, "PNG", transparency=0), Case(True, size=(48, 40), alpha=True))
    rgba = gray.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))))
    put("rgba.png", _encoded(rgba, "PNG"), Case(True, size=(48, 40), alpha=True))
    frames = [Image.fromarray(_gray(48, 40, s)).convert("P") for s in range(3)]
    put("animated.gif", _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        Case(True, size=(48, 40), warning="3 frames"))
    pages = [Image.fromarray(_gray(48, 40, s)) for s in range(3)]
    put("multipage.tif", _encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:]), Case(True, size=(48, 40), warning="3 frames"))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the stored 48 x 40 is displayed 40 x 48
    put("exif_rotated.jpg", _encoded(gray, "JPEG", exif=exif.tobytes()), Case(True, size=(40, 48)))
    put("фото_日本_é.png", _encoded(gray, "PNG"), Case(True, size=(48, 40)))
    os.symlink("link_loop.png", folder / "link_loop.png")
    cases["link_loop.png"] = Case(False, "symbolic link")
    return cases


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/badcorpus.py DIR")
    for name, case in make_corpus(sys.argv[1]).items():
        print(f"{name}: {'colorized' if case.ok else 'refused: ' + case.reason}")
