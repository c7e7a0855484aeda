"""Reading and writing images safely.

:func:`read_image` accepts JPEG, PNG, TIFF, WebP and BMP in modes L, LA, RGB, RGBA, P,
CMYK, I;16, I and F; applies the EXIF orientation; refuses images over ``max_pixels``
(decompression bombs) before decoding them; keeps alpha; and reports whether the input
had color. Every failure raises :class:`ImageReadError` whose message names the file and
the reason. :func:`write_image` never overwrites without ``force`` and writes atomically
(temp file in the same folder, then ``os.replace``), so no half-written output remains.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .color import luminance_hwc

__all__ = ["ImageReadError", "LoadedImage", "read_image", "write_image", "atomic_path", "write_text_atomic", "DEFAULT_MAX_PIXELS", "open_image",
           "is_tinct_output", "output_source", "input_identity", "OUTPUT_MARK"]

#: Larger images are refused unless the limit is raised (``--max-pixels``): 250 MP is a
#: 20000x12500 scan, far beyond cameras, and needs about 4 GB to process.
DEFAULT_MAX_PIXELS = 250_000_000

# chroma (max channel difference, 8-bit units) above which an input counts as a color photo
_COLOR_TOLERANCE = 3.0 / 255.0


class ImageReadError(Exception):
    """A file that cannot be used as an input image; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class LoadedImage:
    """A decoded input.

    Attributes:
        gray: float32 [H, W] luminance in [0, 1] (``0.2989R + 0.5870G + 0.1140B`` for color input)
        alpha: uint8 [H, W] alpha channel, or None
        was_color: True when the input had visible chroma (it is colorized from its luminance)
        path: source path, or None for in-memory images
        mode: the original PIL mode
        frames: frames or pages in the file (animated GIF, multi-page TIFF); only the first is used
    """

    gray: np.ndarray
    alpha: np.ndarray | None
    was_color: bool
    path: str | None
    mode: str
    frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.gray.shape[1], self.gray.shape[0]


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file with EXIF orientation applied; raises ImageReadError."""
    path = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if not path.exists():
        if path.is_symlink():
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ImageReadError(path, "symbolic link loop (the link points back to itself)") from None
            raise ImageReadError(path, f"broken symbolic link (its target {os.readlink(path)!r} does not exist)")
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, before decoding
            try:
                im = Image.open(path)
                w, h = im.size
                if w * h > limit:
                    im.close()
                    raise ImageReadError(
                        path, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                        "(possible decompression bomb; raise it with --max-pixels / max_pixels=)"
                    )
                im.load()
                frames = getattr(im, "n_frames", 1)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        im = ImageOps.exif_transpose(im) or im
        im.info["n_frames"] = frames  # the first frame is decoded; the count survives the transposition
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image, or a format tinct cannot read") from None
    except OSError as exc:
        text = str(exc)
        reason = "truncated or corrupt image data" if "truncated" in text or "broken" in text else f"cannot decode ({text})"
        raise ImageReadError(path, reason) from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(path, f"cannot decode ({exc})") from None
    return im


def _high_bit_depth_to_float(im: Image.Image) -> np.ndarray:
    """Single-channel I;16 / I / F image -> float32 [H, W] in [0, 1]."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        scale = 65535.0
    elif im.mode == "F":
        peak = float(np.nanmax(arr)) if arr.size else 1.0
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
    else:  # "I": 32-bit integers, in practice 8- or 16-bit data
        peak = float(arr.max()) if arr.size else 0.0
        scale = 255.0 if peak <= 255.0 else 65535.0
    return np.nan_to_num(np.clip(arr / scale, 0.0, 1.0)).astype(np.float32)


def to_loaded_image(im: Image.Image, path: str | None = None) -> LoadedImage:
    """Convert a decoded PIL image of any supported mode to gray luminance + alpha."""
    mode = im.mode
    alpha = None
    frames = int(im.info.get("n_frames") or getattr(im, "n_frames", 1) or 1)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return LoadedImage(_high_bit_depth_to_float(im), None, False, path, mode, frames)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode == "LA" or mode == "La":
        alpha = np.asarray(im.getchannel("A")).copy()
        im = im.convert("L")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    if im.mode == "RGBA":
        alpha = np.asarray(im.getchannel("A")).copy()
        im = im.convert("RGB")
    if im.mode == "L":
        gray = np.asarray(im, dtype=np.float32) / 255.0
        return LoadedImage(gray, alpha, False, path, mode, frames)
    rgb = np.asarray(im, dtype=np.float32) / 255.0
    gray = luminance_hwc(rgb)
    chroma = np.maximum(np.abs(rgb[..., 0] - rgb[..., 1]), np.abs(rgb[..., 1] - rgb[..., 2]))
    # a color photo: more than 1% of pixels show chroma (JPEG noise on gray scans stays below)
    was_color = bool((chroma > _COLOR_TOLERANCE).mean() > 0.01)
    return LoadedImage(np.clip(gray, 0.0, 1.0), alpha, was_color, path, mode, frames)


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file as gray luminance [H, W] in [0, 1] plus optional alpha."""
    im = open_image(path, max_pixels)
    try:
        return to_loaded_image(im, str(path))
    except (OSError, ValueError) as exc:
        raise ImageReadError(path, f"cannot convert image mode {im.mode} ({exc})") from None


#: written into every PNG (``Software`` text) and JPEG (comment) tinct writes, so that a folder
#: colorized into itself never takes the outputs of an earlier run as new inputs
OUTPUT_MARK = "tinct"


def is_tinct_output(path: str | os.PathLike) -> bool:
    """True when ``path`` is an image tinct wrote (reads the header only)."""
    return _output_header(path)[0]


def output_source(path: str | os.PathLike) -> str | None:
    """The :func:`input_identity` recorded in a tinct output, or None (no output, another
    program's file, or an output of a tinct that did not record it)."""
    return _output_header(path)[1]


def _output_header(path: str | os.PathLike) -> tuple[bool, str | None]:
    try:
        with Image.open(path) as im:
            if im.info.get("Software") == OUTPUT_MARK:
                return True, im.info.get(_SOURCE_KEY) or None
            comment = im.info.get("comment")
            if isinstance(comment, bytes) and (comment == OUTPUT_MARK.encode() or comment.startswith(OUTPUT_MARK.encode() + b" ")):
                source = comment.decode("ascii", "replace").partition(f" {_SOURCE_KEY}=")[2]
                return True, source or None
    except Exception:  # noqa: BLE001 - unreadable files are reported when they are read as inputs
        pass
    return False, None


# the PNG text key (and JPEG comment field) holding the input's identity
_SOURCE_KEY = "tinct-input"


def input_identity(path: str | os.PathLike) -> str | None:
    """A short identity of an input file, recorded in its outputs so that a later run knows
    which input an existing output belongs to: SHA-256 of the file size and its first 64 KiB
    (it survives moving or renaming the folder; None when the file cannot be read)."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(str(os.fstat(f.fileno()).st_size).encode() + b"\0" + f.read(1 << 16))
    except OSError:
        return None
    return digest.hexdigest()[:32]


def write_image(image: Image.Image, path: str | os.PathLike, force: bool = False, quality: int = 95,
                source: str | None = None) -> Path:
    """Write ``image`` atomically; the format follows the suffix (.png, .jpg/.jpeg, .webp, .tif).
    PNG and JPEG outputs carry :data:`OUTPUT_MARK` and, when given, ``source`` (the input's
    :func:`input_identity`, read back by :func:`output_source`).

    Raises FileExistsError when ``path`` exists and ``force`` is False. JPEG has no alpha:
    an RGBA image is written as RGB there.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path}: exists (use --force / force=True to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unsupported output format {suffix!r}")
    options: dict = {}
    if fmt == "JPEG":
        if image.mode == "RGBA":
            image = image.convert("RGB")
        comment = OUTPUT_MARK + (f" {_SOURCE_KEY}={source}" if source else "")
        options = {"quality": quality, "subsampling": 0, "comment": comment.encode()}
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", OUTPUT_MARK)
        if source:
            info.add_text(_SOURCE_KEY, source)
        options = {"compress_level": 3, "pnginfo": info}
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
        image.save(f, format=fmt, **options)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """The one way tinct writes a file: yields a temporary path beside ``path``
    (``.NAME.tmp-PID`` + ``suffix``, for writers that insist on an extension) to write to;
    when the block ends without error the file is (optionally fsync'ed and) moved onto
    ``path`` with ``os.replace``, else it is removed. No reader ever sees a half-written file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically (:func:`atomic_path`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
