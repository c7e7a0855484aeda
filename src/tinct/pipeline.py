"""Colorize any image: gray in, color out, at the input's size.

Data flow: read (:mod:`tinct.io`) -> gray luminance at full resolution -> resized to the
working resolution (short side ``size``) -> the method predicts ab -> ab is upsampled
edge-aware, guided by the full-resolution lightness (a fast guided filter) -> fused with
the original full-resolution L -> sRGB (8-bit), alpha kept.

Two guards keep colors honest: the predicted chroma is bounded by what sRGB can show at
each lightness (:func:`tinct.color.bound_chroma`), and an image without any detail (every
gray value within ``FLAT_RANGE`` of the others: a blank or flat gray frame) is returned as
the neutral gray it is, since nothing in it tells its colors (a model's guess for a blank
input is an arbitrary tint).
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import bound_chroma, gray_to_lightness, lab_to_srgb8
from .data import IMAGE_SUFFIXES
from .device import pick_device
from .nets.efficientnet import resolve_class
from .io import (ImageReadError, LoadedImage, input_identity, is_tinct_output, open_image, output_source, read_image,
                 to_loaded_image, write_image)
from .weights import load_model

log = logging.getLogger(__name__)

__all__ = ["Colorizer", "colorize", "colorize_all", "colorize_files", "BatchSummary", "guided_upsample", "gray_array"]

# rows of the full-resolution image converted at once: bounds memory on huge photos
_CHUNK_PIXELS = 2_000_000
#: largest working resolution (short side) a Colorizer accepts
MAX_WORKING_SIZE = 1024
#: an image whose gray values all lie within this range (2.5 levels of 8 bits) has no detail:
#: it is returned neutral gray instead of the model's tint for a blank input
FLAT_RANGE = 2.5 / 255
#: the working image's long side is at most this many times the working size: a thin strip
#: (3 x 50000 px) is seen whole at a smaller scale instead of growing to millions of pixels
MAX_WORKING_ASPECT = 4


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) the network sees for an input of ``height`` x ``width``: the short side scaled to
    ``size``, unless that makes the long side exceed ``MAX_WORKING_ASPECT * size``, in which case
    the long side is scaled to that bound (so at most ``MAX_WORKING_ASPECT * size**2`` pixels)."""
    scale = min(size / min(height, width), MAX_WORKING_ASPECT * size / max(height, width))
    return max(round(height * scale), 1), max(round(width * scale), 1)


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int = 2, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided-filter coefficients (He et al.) so that ``src ~ a * guide + b`` locally.

    guide [1, 1, h, w] in [0, 1]; src [1, C, h, w]; returns a, b [1, C, h, w].
    """
    mean_g = _box(guide, radius)
    mean_s = _box(src, radius)
    cov = _box(guide * src, radius) - mean_g * mean_s
    var = _box(guide * guide, radius) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_s - a * mean_g
    return _box(a, radius), _box(b, radius)


def guided_upsample(guide_low: torch.Tensor, src_low: torch.Tensor, size: tuple[int, int], radius: int = 2, eps: float = 1e-3):
    """Edge-aware upsampling of ``src_low`` [1, C, h, w] to ``size`` (H, W), guided by lightness.

    Returns a function ``rows(top, bottom, guide_rows)`` producing the upsampled rows
    [1, C, bottom - top, W] from the full-resolution guide rows [1, 1, bottom - top, W]
    (values in [0, 1]), so huge images are processed in strips.
    """
    a, b = guided_coefficients(guide_low, src_low, radius, eps)
    height, width = size

    def rows(top: int, bottom: int, guide_rows: torch.Tensor) -> torch.Tensor:
        # sample the coefficient maps at the centers of the full-resolution rows top..bottom
        grid_y = (torch.arange(top, bottom, dtype=torch.float32) + 0.5) / height * 2 - 1
        grid_x = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
        gy, gx = torch.meshgrid(grid_y, grid_x, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None]  # [1, rows, W, 2]
        coeffs = F.grid_sample(torch.cat([a, b], 1), grid, mode="bilinear", padding_mode="border", align_corners=False)
        c = src_low.shape[1]
        return coeffs[:, :c] * guide_rows + coeffs[:, c:]

    return rows


_LIGHTNESS_LUT = gray_to_lightness(torch.linspace(0, 1, 1 << 16, dtype=torch.float64)).float()


def _lightness_of(gray: torch.Tensor) -> torch.Tensor:
    """Lab L [0, 100] of gray values in [0, 1] through a 16-bit table (full-resolution path)."""
    return _LIGHTNESS_LUT[(gray.clamp(0, 1) * 65535 + 0.5).long()]


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM; what was written is complete


class Colorizer:
    """A loaded model, reusable for many images.

    Args:
        model: shipped model name (``"default"``), or a path to an exported ``.safetensors``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        size: working resolution: the short side, in pixels, of the image the network sees
            (default: the model's own, chosen on validation data); 16 to ``MAX_WORKING_SIZE``.
            Images more than ``MAX_WORKING_ASPECT`` times longer than wide are seen with their
            long side at that multiple of ``size`` (see :func:`working_shape`).
    """

    def __init__(self, model: str = "default", device: str = "auto", size: int | None = None):
        self.device = pick_device(device)
        self.method, self.info = load_model(model, self.device)
        if not self.method.is_colorizer:
            raise ValueError(f"model {model!r} is a {self.info['method']!r} model (a generative prior), not a colorizer; "
                             "try `tinct sample` with it")
        self.method.to(memory_format=torch.channels_last)
        self.model_name = model
        self.size = int(size) if size is not None else int(self.info.get("working_size") or 256)
        if not 16 <= self.size <= MAX_WORKING_SIZE:
            raise ValueError(f"working size {self.size} is out of range (16 to {MAX_WORKING_SIZE} px)")

    def resolve_options(self, options: dict) -> dict:
        """User-level options -> the method's keywords (:attr:`tinct.methods.InferenceOption.keyword`):
        an option of type ``class`` (ImageNet name or index) is passed as the class index, one of
        type ``image`` (a color image file) as sRGB [1, 3, h, w] in [0, 1] (at most 512 px)."""
        options = {k: v for k, v in options.items() if v is not None}
        self.check_options(options)
        declared = {o.name: o for o in self.method.inference_options}
        resolved = {}
        for key, value in options.items():
            opt = declared[key]
            if opt.type == "class":
                value = resolve_class(value)
            elif opt.type == "image":
                ref = open_image(value).convert("RGB")
                ref.thumbnail((512, 512))
                value = torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            resolved[opt.keyword] = value
        return resolved

    def check_options(self, options: dict) -> None:
        """Raise ValueError for an option the model's method does not declare, of the wrong
        type, or out of its declared range (the message names the method's options)."""
        declared = {o.name: o for o in self.method.inference_options}
        for key, value in options.items():
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ValueError(f"model {self.model_name!r} ({self.info['method']}) has no option {key!r}; its options: {known}")
            opt = declared[key]
            if opt.type in ("float", "int"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or (opt.type == "int" and not float(value).is_integer()):
                    raise ValueError(f"option {key!r}: expected {'an integer' if opt.type == 'int' else 'a number'}, got {value!r}")
                if (opt.min is not None and value < opt.min) or (opt.max is not None and value > opt.max):
                    raise ValueError(f"option {key!r}: {value} is out of range ({opt.min} to {opt.max})")

    def variants(self, options: dict) -> list[tuple[str, dict]]:
        """The outputs one input yields: ``[(file-name suffix, options), ...]`` (see the method)."""
        return self.method.inference_variants(self.resolve_options(options))

    @torch.inference_mode()
    def colorize_gray(self, gray: np.ndarray, **options) -> np.ndarray:
        """Colorize a gray image.

        Args:
            gray: float32 [H, W] luminance in [0, 1].
        Returns:
            uint8 [H, W, 3] sRGB whose lightness is the input's (neutral gray for an image
            without detail, see ``FLAT_RANGE``).
        """
        height, width = gray.shape
        if gray.size and float(gray.max()) - float(gray.min()) <= FLAT_RANGE:
            log.debug("no detail in the image (flat gray): left gray")
            level = (np.clip(gray, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            return np.repeat(level[..., None], 3, axis=2)
        work_h, work_w = working_shape(height, width, self.size)
        gray_img = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32))
        work = np.asarray(gray_img.resize((work_w, work_h), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32)
        gray_low = torch.from_numpy(np.clip(work, 0, 1))[None, None].to(self.device)
        lightness_low = gray_to_lightness(gray_low).contiguous(memory_format=torch.channels_last)
        view = self.method.semantic_view
        if view:  # a whole-image view for the method's recognition branch, from the full resolution
            square = np.asarray(gray_img.resize((view, view), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32)
            options = {**options, "semantic_gray": torch.from_numpy(np.clip(square, 0, 1))[None, None].to(self.device)}
        ab_low = self.method.predict_ab(lightness_low, **options).float().cpu()  # [1, 2, h, w]
        ab_low = bound_chroma(lightness_low.float().cpu(), ab_low)  # no chroma sRGB cannot show (dark, bright)
        upsample = guided_upsample(lightness_low.cpu() / 100.0, ab_low, (height, width))

        out = np.empty((height, width, 3), dtype=np.uint8)
        gray_t = torch.from_numpy(np.require(gray, np.float32, ["C", "W"]))  # copies only read-only or non-contiguous input
        rows_per_chunk = max(_CHUNK_PIXELS // width, 1)
        for top in range(0, height, rows_per_chunk):
            bottom = min(top + rows_per_chunk, height)
            lightness = _lightness_of(gray_t[top:bottom])[None, None]  # [1, 1, rows, W] in [0, 100]
            ab = upsample(top, bottom, lightness / 100.0)
            rgb8 = lab_to_srgb8(torch.cat([lightness, ab], 1))[0]  # [3, rows, W] uint8
            out[top:bottom] = rgb8.permute(1, 2, 0).numpy()
        return out

    def colorize_loaded(self, loaded: LoadedImage, **options) -> Image.Image:
        """Colorize a decoded input; keeps its size and alpha."""
        rgb = self.colorize_gray(loaded.gray, **options)
        if loaded.alpha is not None:
            return Image.fromarray(np.dstack([rgb, loaded.alpha]), mode="RGBA")
        return Image.fromarray(rgb, mode="RGB")

    @staticmethod
    def _load(image: Image.Image | np.ndarray | str | os.PathLike) -> LoadedImage:
        if isinstance(image, (str, os.PathLike)):
            loaded = read_image(image)
        elif isinstance(image, Image.Image):
            loaded = to_loaded_image(image)
        else:
            loaded = LoadedImage(gray_array(image), None, False, None, "F")
        _warn_about(loaded, loaded.path or "image")
        return loaded

    def colorize(self, image: Image.Image | np.ndarray | str | os.PathLike, **options) -> Image.Image:
        """Colorize a PIL image, a gray array [H, W] (see :func:`gray_array` for its ranges), or
        an image file path.

        ``options`` are the method's (e.g. ``temperature`` for cic; ``class``, ``reference``,
        ``sigma``, ``seed`` for bigcolor). Options that give several outputs (``samples``,
        ``top_k`` above 1) are refused here: :meth:`colorize_all` returns them all.
        """
        variants = self.variants(options)
        if len(variants) > 1:
            raise ValueError(f"these options give {len(variants)} images and colorize returns one; "
                             "use colorize_all, which returns [(suffix, image), ...]")
        return self.colorize_loaded(self._load(image), **variants[0][1])

    def colorize_all(self, image: Image.Image | np.ndarray | str | os.PathLike, **options) -> list[tuple[str, Image.Image]]:
        """Every output of one input (e.g. BigColor's ``samples`` / ``top_k``): ``[(suffix, image), ...]``."""
        loaded = self._load(image)
        return [(suffix, self.colorize_loaded(loaded, **opts)) for suffix, opts in self.variants(options)]


_COLORIZERS: dict[tuple[str, str, int | None], Colorizer] = {}


def _cached_colorizer(model: str, device: str, size: int | None) -> Colorizer:
    key = (model, device, size)
    if key not in _COLORIZERS:
        _COLORIZERS[key] = Colorizer(model, device=device, size=size)
    return _COLORIZERS[key]


def colorize(image: Image.Image | np.ndarray | str | os.PathLike, model: str = "default", size: int | None = None, device: str = "auto", **options) -> Image.Image:
    """Colorize one image with a shipped model; the loaded model is cached for later calls."""
    return _cached_colorizer(model, device, size).colorize(image, **options)


def colorize_all(image: Image.Image | np.ndarray | str | os.PathLike, model: str = "default", size: int | None = None,
                 device: str = "auto", **options) -> list[tuple[str, Image.Image]]:
    """Every output of one image (``samples=N`` or ``top_k=K`` give several): ``[(suffix, image), ...]``."""
    return _cached_colorizer(model, device, size).colorize_all(image, **options)


def gray_array(array: np.ndarray) -> np.ndarray:
    """A gray array [H, W] from the Python API as float32 in [0, 1].

    uint8 is read as 0..255, uint16 as 0..65535, bool as 0/1, other integer types as 0..255
    (larger values are refused: use uint16 for 16-bit data); floats must already lie in
    [0, 1] (a float array in 0..255 is refused rather than turned white).
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"expected a gray array [H, W], got shape {arr.shape} (give a color image as a PIL image)")
    if arr.size == 0:
        raise ValueError("the gray array is empty")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ValueError(f"integer gray array of type {arr.dtype} holds {low}..{high}; expected 0..255 "
                             "(use uint16 for 16-bit data, or floats in [0, 1])")
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("the gray array holds NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"float gray array holds {low:g}..{high:g}; expected values in [0, 1] "
                             "(divide 8-bit data by 255, or pass a uint8 array)")
        return np.clip(arr, 0.0, 1.0)
    raise ValueError(f"unsupported gray array type {arr.dtype}")


def _expand_inputs(inputs: Iterable[str], problems: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder without suffix) for files, folders and globs.

    A folder without images and a glob that matches nothing are appended to ``problems``
    (a message each). Broken links and link loops with an image suffix are kept, so that
    reading them reports the reason.
    """
    pairs: list[tuple[Path, Path]] = []
    problems = [] if problems is None else problems
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if any(c in item for c in "*?[") else [item]
        if not matches:
            if Path(item).exists() or Path(item).is_symlink():  # a real file whose name contains [ or *
                matches = [item]
            else:
                problems.append(f"{item}: no file matches this pattern")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                found = [f for f in sorted(p.rglob("*"))
                         if (f.is_file() or (f.is_symlink() and not f.exists()))
                         and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
                outputs = [f for f in found if is_tinct_output(f)]
                if outputs:
                    log.info("%s: %d image(s) written by tinct left out (outputs are never inputs)", p, len(outputs))
                if len(found) == len(outputs):
                    problems.append(f"{p}: no images in this folder ({', '.join(IMAGE_SUFFIXES)}"
                                    + (f"; {len(outputs)} written by tinct left out)" if outputs else ")"))
                pairs.extend((f, f.relative_to(p).with_suffix("")) for f in found if f not in set(outputs))
            else:
                pairs.append((p, Path(p.stem)))
    unique, seen = [], set()
    for path, rel in pairs:  # the same file named twice (a file and its folder, two globs) is colorized once
        key = path.resolve() if path.exists() else path
        if key not in seen:
            seen.add(key)
            unique.append((path, rel))
    return unique


def colorize_files(
    colorizer: Colorizer, inputs: Iterable[str], out_dir: str | os.PathLike, fmt: str = "png",
    force: bool = False, max_pixels: int | None = None, progress: bool = True, **options,
) -> BatchSummary:
    """Colorize files, folders (recursive) and globs into ``out_dir``.

    ``in/x.jpg`` becomes ``out_dir/x.png`` (folder inputs keep their sub-folders). Existing
    outputs are skipped unless ``force`` (so an interrupted batch resumes); an input is
    never overwritten; a bad file is reported on stderr and the batch goes on.
    """
    out_dir = Path(out_dir)
    for folder in (out_dir, *out_dir.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise ValueError(f"{folder}: is a file, not a folder; -o / out_dir must name a folder")
            break
    problems: list[str] = []
    pairs = _expand_inputs(inputs, problems)
    input_paths = {p.resolve() for p, _ in pairs if p.exists()}
    variants = colorizer.variants(options)
    summary = BatchSummary()
    for message in problems:  # an empty folder or a pattern matching nothing: said, and counted as failed
        summary.failed += 1
        summary.failures.append(message)
        print(f"tinct: error: {message}", file=sys.stderr)
    targets = _assign_targets(pairs, out_dir, fmt, [suffix for suffix, _ in variants], input_paths)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), unit="img", file=sys.stderr, dynamic_ncols=True)
    try:
        for (path, _rel), target in zip(pairs, targets):
            _colorize_one(colorizer, path, target, force, max_pixels, variants, input_paths, summary, bar)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into it by the CLI: the partial output was removed
        summary.interrupted = True
    if bar is not None:
        bar.close()
    return summary


def _warn_about(loaded: LoadedImage, name: str | os.PathLike) -> None:
    """The warnings every input gets: a color input loses its colors, extra frames are ignored."""
    if loaded.was_color:
        log.warning("%s: color input; colorizing its luminance (its colors are replaced)", name)
    if loaded.frames > 1:
        log.warning("%s: %d frames (animated or multi-page); only the first is colorized", name, loaded.frames)


def _remove_stale_temporaries(target: Path) -> None:
    """Delete ``.NAME.tmp-PID`` files a killed earlier run left beside ``target`` (their PID is gone)."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            if pid != os.getpid():
                os.kill(pid, 0)
                continue  # that process still runs: its file
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        tmp.unlink(missing_ok=True)


def _variant_paths(base: Path, suffixes: list[str]) -> list[Path]:
    return [base.with_name(f"{base.stem}{suffix}{base.suffix}") for suffix in suffixes]


def _assign_targets(pairs: list[tuple[Path, Path]], out_dir: Path, fmt: str, suffixes: list[str], input_paths: set) -> list[Path]:
    """The output path (before variant suffixes) of every input, whatever the order of the inputs.

    ``in/x.jpg`` becomes ``out_dir/x.FMT``; when that name is another input's (``a/x.jpg`` and
    ``b/x.jpg``, or ``x.jpg`` and ``x.png``), the next of ``x_jpg.FMT``, ``x_jpg3.FMT``, ...
    Every output records its input's identity (:func:`tinct.io.input_identity`), so an existing
    output is claimed by the input it was made from (and skipped), never by another input;
    existing files that record no input (another program's, an older tinct's) are claimed as
    before. Names that are inputs are never used. Among colliding inputs the one whose path
    sorts first gets the plain name.
    """
    order = sorted(range(len(pairs)), key=lambda i: os.path.abspath(pairs[i][0]))
    identities: dict[int, str | None] = {}

    def identity(i: int) -> str | None:
        if i not in identities:
            identities[i] = input_identity(pairs[i][0])
        return identities[i]

    def candidates(i: int):
        path, rel = pairs[i]
        first = out_dir / rel.with_name(f"{rel.name}.{fmt}")
        yield first
        ext = path.suffix.lstrip(".").lower() or "x"
        for n in range(2, 100_000):
            yield first.with_name(f"{rel.name}_{ext}{n if n > 2 else ''}.{fmt}")

    def state(i: int, base: Path) -> str:
        """free (nothing there), mine (this input's outputs), unknown (files recording no input), other."""
        existing = [p for p in _variant_paths(base, suffixes) if p.exists()]
        if not existing:
            return "free"
        sources = {output_source(p) for p in existing}
        if sources - {None, identity(i)}:
            return "other"
        return "mine" if None not in sources else "unknown"

    result: dict[int, Path] = {}
    taken: set[Path] = set()
    for i in order:  # first: every input takes back the outputs it made in an earlier run
        for base in candidates(i):
            kind = state(i, base)
            if kind == "free":
                break
            if kind == "mine" and base not in taken:
                result[i] = base
                taken.add(base)
                break
    for i in order:
        if i in result:
            continue
        for base in candidates(i):
            if base in taken or any(p.resolve() in input_paths for p in _variant_paths(base, suffixes)):
                continue
            if state(i, base) != "other":
                result[i] = base
                taken.add(base)
                break
    return [result[i] for i in range(len(pairs))]


def _colorize_one(colorizer: Colorizer, path: Path, target: Path, force: bool, max_pixels: int | None,
                  variants: list, input_paths: set, summary: BatchSummary, bar) -> None:
    """One input of :func:`colorize_files`: its outputs written (or skipped, or its failure recorded)."""
    targets = _variant_paths(target, [suffix for suffix, _ in variants])
    try:
        for t in targets:
            if t.resolve() in input_paths:
                raise ImageReadError(path, f"output {t} would overwrite an input; choose another -o")
        if all(t.exists() for t in targets) and not force:
            summary.skipped += 1
            return
        loaded = read_image(path, max_pixels=max_pixels)
        _warn_about(loaded, path)
        source = input_identity(path)
        for t, (_suffix, opts) in zip(targets, variants):
            if t.exists() and not force:
                continue
            _remove_stale_temporaries(t)
            write_image(colorizer.colorize_loaded(loaded, **opts), t, force=force, source=source)
            summary.outputs.append(t)
        summary.done += 1
    except (ImageReadError, OSError, ValueError, MemoryError) as exc:
        message = str(exc) if isinstance(exc, ImageReadError) else f"{path}: {exc.__class__.__name__}: {exc}"
        summary.failed += 1
        summary.failures.append(message)
        if bar is not None:
            bar.clear()
        print(f"tinct: error: {message}", file=sys.stderr)
    finally:
        if bar is not None:
            bar.update(1)


