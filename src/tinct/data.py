"""Training data: image folders (recursive) and WebDataset-style tar shards.

A *source* is a folder, an image file, a ``.tar``/``.tar.gz`` shard, or a glob of those.
Samples are ``KEY.jpg`` (or png/webp/...) plus an optional ``KEY.cls`` holding the
ImageNet-1k class index as text. Plain ``.tar`` shards are read by seeking to member
offsets; compressed shards are read once into memory as encoded bytes (Tiny-ImageNet:
about 2 kB per image).

Every sample is returned as a dict:

- ``rgb``: float32 [3, S, S] sRGB in [0, 1] (random resized crop and flip when training)
- ``gray``: float32 [1, S, S] luminance ``0.2989R + 0.5870G + 0.1140B`` in [0, 1]
- ``label``: int64 class index, -1 when unknown
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import math
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .color import luminance
from .color import colorfulness as torch_colorfulness
from .io import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")

__all__ = ["ColorizationDataset", "colorfulness", "expand_sources", "index_records", "Record", "DataConfig"]


@dataclass
class DataConfig:
    """How training images are prepared."""

    image_size: int = 64
    min_colorfulness: float = 5.0  # Hasler-Suesstrunk; drops gray and near-gray photos
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True


def colorfulness(rgb8: np.ndarray) -> float:
    """Hasler-Suesstrunk colorfulness of an 8-bit RGB array [H, W, 3] (values 0..255)."""
    rgb = torch.from_numpy(np.asarray(rgb8, dtype=np.float64)).permute(2, 0, 1)[None] / 255.0
    return float(torch_colorfulness(rgb, eps=0.0)[0])


def cache_dir() -> Path:
    """tinct's cache folder: $TINCT_CACHE, else $XDG_CACHE_HOME/tinct, else ~/.cache/tinct."""
    base = os.environ.get("TINCT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tinct")
    return Path(base)


def _filter_cache_key(records: list["Record"], threshold: float) -> str:
    h = hashlib.sha256(f"colorfulness-v1|{threshold}|{len(records)}".encode())
    for path in sorted({rec.path for rec in records}):
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _is_shard(path: str) -> bool:
    return path.endswith(SHARD_SUFFIXES)


def expand_sources(sources: list[str] | str) -> list[str]:
    """Expand folders (recursively), globs and files to a sorted list of image files and shards."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [str(sources)]
    found: list[str] = []
    for src in sources:
        src = str(src)
        matches = sorted(glob.glob(src, recursive=True)) if any(ch in src for ch in "*?[") else [src]
        if not matches:
            raise FileNotFoundError(f"{src}: no such file, folder or glob match")
        for m in matches:
            if os.path.isdir(m):
                for root, _dirs, files in os.walk(m):
                    for name in sorted(files):
                        full = os.path.join(root, name)
                        if name.lower().endswith(IMAGE_SUFFIXES) or _is_shard(name):
                            found.append(full)
            elif os.path.exists(m):
                found.append(m)
            else:
                raise FileNotFoundError(f"{m}: no such file or folder")
    return sorted(found)


class Record:
    """Where one sample's bytes live: a file, a member offset in a .tar, or bytes in memory."""

    __slots__ = ("key", "path", "offset", "size", "data", "label")

    def __init__(self, key: str, path: str, offset: int = -1, size: int = -1, data: bytes | None = None, label: int = -1):
        self.key, self.path, self.offset, self.size, self.data, self.label = key, path, offset, size, data, label

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            if self.offset >= 0:
                f.seek(self.offset)
                return f.read(self.size)
            return f.read()

    @property
    def in_shard(self) -> bool:
        return self.data is not None or self.offset >= 0


def _index_shard(path: str) -> list[Record]:
    compressed = not path.endswith(".tar")
    images: dict[str, Record] = {}
    labels: dict[str, int] = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = os.path.splitext(member.name)
            ext = ext.lower()
            if ext == ".cls":
                labels[key] = int(tar.extractfile(member).read().decode().strip())
            elif ext in IMAGE_SUFFIXES:
                if compressed:
                    images[key] = Record(key, path, data=tar.extractfile(member).read())
                else:
                    images[key] = Record(key, path, offset=member.offset_data, size=member.size)
    for key, rec in images.items():
        rec.label = labels.get(key, -1)
    return [images[k] for k in sorted(images)]


def _label_from_name(path: str) -> int:
    """Class index from a name like ``123_nXXXXXXXX_name.jpg`` (the dev set layout), else -1."""
    head = os.path.basename(path).split("_", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 4 and int(head) < 1000 else -1


def index_records(sources: list[str] | str) -> list[Record]:
    """Every image of folders, files, shards or globs, in order; a shard member's label comes
    from its ``KEY.cls``, a file's from a dev-set style name (else -1)."""
    records: list[Record] = []
    for path in expand_sources(sources):
        if _is_shard(path):
            records.extend(_index_shard(path))
        else:
            records.append(Record(os.path.splitext(os.path.basename(path))[0], path, label=_label_from_name(path)))
    return records


def decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


class ColorizationDataset(Dataset):
    """Images from folders, files and shards, as (rgb, gray, label) training samples.

    Args:
        sources: folders, files, shards or globs.
        config: crop size and augmentation.
        train: random resized crop + flip when True; center crop when False.
        seed: base seed; sample ``i`` of epoch ``e`` uses ``seed + e * len + i`` so runs repeat.
        quiet: log the image count at DEBUG level (a second view of data already counted).
    """

    def __init__(self, sources: list[str] | str, config: DataConfig | None = None, train: bool = True, seed: int = 0,
                 quiet: bool = False):
        self.config = config or DataConfig()
        self.train = train
        self.seed = seed
        self.epoch = 0
        records = index_records(sources)
        if not records:
            raise ValueError(f"{sources}: no images found")
        self.dropped_gray = 0
        self.unreadable = 0
        if self.config.min_colorfulness > 0:
            records = self._drop_gray(records)
        if not records:
            raise ValueError(f"{sources}: no color images to train on ({self.dropped_gray} dropped as colorfulness < "
                             f"{self.config.min_colorfulness:g}, {self.unreadable} unreadable)")
        self.records = records
        log.log(
            logging.DEBUG if quiet else logging.INFO, "data: %d images (%d dropped as colorfulness < %.1f, %d unreadable)",
            len(records), self.dropped_gray, self.config.min_colorfulness, self.unreadable,
        )

    def _drop_gray(self, records: list[Record]) -> list[Record]:
        """Drop records whose colorfulness is below the threshold; the verdicts are cached on
        disk, keyed by every source file's path, size and mtime, so a resumed run skips this."""
        key = _filter_cache_key(records, self.config.min_colorfulness)
        cache = cache_dir() / f"colorfulness-{key}.json"
        if cache.exists():
            saved = json.loads(cache.read_text(encoding="utf-8"))
            self.dropped_gray, self.unreadable = saved["dropped_gray"], saved["unreadable"]
            return [records[i] for i in saved["kept"]]
        kept_index = []
        for i, rec in enumerate(records):
            try:
                im = decode_rgb(rec.read())
            except Exception as exc:  # noqa: BLE001 - a bad training file is skipped and counted
                log.warning("%s:%s: unreadable, skipped (%s)", rec.path, rec.key, exc)
                self.unreadable += 1
                continue
            im.thumbnail((64, 64))
            if colorfulness(np.asarray(im)) < self.config.min_colorfulness:
                self.dropped_gray += 1
            else:
                kept_index.append(i)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:
                tmp.write_text(json.dumps({"kept": kept_index, "dropped_gray": self.dropped_gray, "unreadable": self.unreadable}))
        except OSError as exc:  # a read-only home must not stop training
            log.warning("cannot cache the colorfulness filter in %s (%s)", cache, exc)
        return [records[i] for i in kept_index]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _crop(self, im: Image.Image, rng: random.Random) -> Image.Image:
        s = self.config.image_size
        w, h = im.size
        if not self.train:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            return im.resize((s, s), Image.BICUBIC, box=(left, top, left + side, top + side))
        area = w * h
        lo, hi = self.config.crop_scale
        rlo, rhi = (math.log(r) for r in self.config.crop_ratio)
        for _ in range(10):
            target = area * rng.uniform(lo, hi)
            ratio = math.exp(rng.uniform(rlo, rhi))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
                break
        else:
            cw = ch = min(w, h)
            left, top = (w - cw) // 2, (h - ch) // 2
        im = im.resize((s, s), Image.BICUBIC, box=(left, top, left + cw, top + ch))
        if self.config.flip and rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return im

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rec = self.records[index]
        rng = random.Random(self.seed + self.epoch * len(self.records) + index)
        im = self._crop(decode_rgb(rec.read()), rng)
        rgb = torch.from_numpy(np.array(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        gray = luminance(rgb).clamp(0, 1)
        return {"rgb": rgb, "gray": gray, "label": torch.tensor(rec.label, dtype=torch.long)}


def list_images(sources: list[str] | str) -> list[Path]:
    """Image files (not shards) under the given folders/files/globs, sorted."""
    return [Path(p) for p in expand_sources(sources) if not _is_shard(p)]
