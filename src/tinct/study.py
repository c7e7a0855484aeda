"""A realism study: the seed papers' two-alternative forced choice ("colorization Turing test").

A participant sees a real color photo and a colorized version of it (made by one of the
studied models from the photo's luminance) side by side, in random order, each shown for a
fixed time (1 s, as in CIC), and picks the one they think is real. A model *fools* the
participant when its colorization is picked. The web page is in :mod:`tinct.serve`; this
module holds what needs no web library:

- :class:`StudyPhotos`: the color photos of the study folder and the pairs (real, colorized)
  shown for them, both at the same display size and through the same encoding, so nothing but
  the colors tells them apart;
- :class:`StudyRecorder`: appends each answer to a CSV the moment it arrives (flushed and
  fsync'd, so a crash loses nothing);
- :func:`study_report`: per model, the fooling rate with its 95% Wilson interval, the number of
  trials and of participants (``tinct study report CSV``).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from .data import IMAGE_SUFFIXES, colorfulness
from .io import ImageReadError, open_image, to_loaded_image

__all__ = ["CSV_FIELDS", "StudyPhotos", "StudyRecorder", "study_report", "format_report", "wilson_interval"]

#: the columns of the study CSV, one row per answered trial
CSV_FIELDS = ("time", "participant", "trial", "photo", "model", "real_side", "choice", "fooled", "response_ms", "exposure_ms")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (``(nan, nan)`` for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class StudyRecorder:
    """Appends one CSV row per answer; every row is flushed and fsync'd before returning."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if tuple(header) != CSV_FIELDS:
                raise ValueError(f"{self.path}: exists and is not a tinct study CSV (header {header!r}); choose another file")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(CSV_FIELDS)

    def _append(self, row: Iterable[Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(list(row))
            f.flush()
            os.fsync(f.fileno())

    def record(self, participant: str, trial: int, photo: str, model: str, real_side: str, choice: str,
               response_ms: float, exposure_ms: float) -> dict[str, Any]:
        """Append one answer; returns the row written."""
        if real_side not in ("left", "right") or choice not in ("left", "right"):
            raise ValueError(f"sides must be 'left' or 'right', got {real_side!r}, {choice!r}")
        row = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "participant": participant, "trial": int(trial), "photo": photo, "model": model,
            "real_side": real_side, "choice": choice, "fooled": int(choice != real_side),
            "response_ms": round(float(response_ms)), "exposure_ms": round(float(exposure_ms)),
        }
        with self._lock:
            self._append(row[k] for k in CSV_FIELDS)
        return row


@dataclass
class TrialImages:
    real: bytes  # encoded display image of the real photo
    fake: bytes  # encoded display image of the colorization
    mime: str


class StudyPhotos:
    """The color photos of a study folder and their (real, colorized) display pairs.

    Args:
        folder: color photos (searched recursively); near-gray ones (colorfulness < 1, the
            evaluation protocol's rule) are skipped when first met.
        colorizers: model name -> :class:`tinct.Colorizer`.
        display_size: the long side, in pixels, both images are shown at.
        max_pixels: photos larger than this are refused (and dropped from the study).
    """

    def __init__(self, folder: str | os.PathLike, colorizers: dict[str, Any], display_size: int = 384,
                 max_pixels: int = 50_000_000, cache_size: int = 64):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: no such folder (tinct serve --study needs a folder of color photos)")
        self.photos = sorted(
            str(p.relative_to(self.folder)) for p in self.folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not self.photos:
            raise ValueError(f"{self.folder}: no images found for the study")
        self.colorizers = colorizers
        self.models = list(colorizers)
        self.display_size = int(display_size)
        self.max_pixels = max_pixels
        self._bad: set[str] = set()
        self._cache: OrderedDict[tuple[str, str], TrialImages] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def usable(self) -> list[str]:
        return [p for p in self.photos if p not in self._bad]

    def _real_display(self, photo: str) -> Image.Image:
        im = open_image(self.folder / photo, max_pixels=self.max_pixels)
        im = im.convert("RGB")
        im.thumbnail((self.display_size, self.display_size), Image.LANCZOS)
        return im

    @staticmethod
    def _encode(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=92)
        return buf.getvalue()

    def pair(self, photo: str, model: str) -> TrialImages:
        """The real photo and ``model``'s colorization of its luminance, both at the display size,
        both JPEG-encoded the same way. Raises ValueError for a photo that cannot be used (it is
        then dropped from the study)."""
        key = (photo, model)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if photo not in self.photos:  # only names this server listed itself ever reach the file system
            raise ValueError(f"{photo!r} is not a photo of this study")
        try:
            real = self._real_display(photo)
        except ImageReadError as exc:
            self._bad.add(photo)
            raise ValueError(str(exc)) from None
        if colorfulness(np.asarray(real)) < 1.0:
            self._bad.add(photo)
            raise ValueError(f"{photo}: a gray photo (colorfulness < 1); skipped")
        fake = self.colorizers[model].colorize_loaded(to_loaded_image(real))
        images = TrialImages(self._encode(real), self._encode(fake.convert("RGB")), "image/jpeg")
        with self._lock:
            self._cache[key] = images
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return images

    def plan(self, n_trials: int, rng: np.random.Generator) -> list[tuple[str, str]]:
        """One participant's trials: ``[(photo, model), ...]``, no photo twice (a participant who
        saw a photo's real colors once would recognize it), models balanced in random order."""
        photos = self.usable()
        n = min(int(n_trials), len(photos))
        chosen = [photos[i] for i in rng.permutation(len(photos))[:n]]
        models = [self.models[i % len(self.models)] for i in range(n)]
        rng.shuffle(models)
        return list(zip(chosen, models))


def study_report(csv_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Per model (and ``all``): trials, participants, times fooled, fooling rate and its 95% Wilson
    interval, from a study CSV. Chance is 0.5: a colorization indistinguishable from the real
    photo fools half the time."""
    path = Path(csv_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"participant", "model", "fooled"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a tinct study CSV (missing columns: {', '.join(sorted(missing))})")
        rows = [r for r in reader if r.get("model")]
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(r["model"], []).append(r)
    if len(groups) > 1:
        groups["all"] = rows
    out = []
    for model, rs in groups.items():
        n = len(rs)
        fooled = sum(int(r["fooled"]) for r in rs)
        low, high = wilson_interval(fooled, n)
        out.append({"model": model, "trials": n, "participants": len({r["participant"] for r in rs}), "fooled": fooled,
                    "fooling_rate": fooled / n if n else float("nan"), "ci95": [low, high]})
    return out


def format_report(results: list[dict[str, Any]], as_json: bool = False) -> str:
    """The report as a text table (or JSON)."""
    if as_json:
        return json.dumps({"models": results, "chance": 0.5, "interval": "95% Wilson score"}, indent=2)
    lines = [f"{'model':<14} {'trials':>6} {'participants':>12} {'fooled':>6} {'fooling rate':>12}  95% interval"]
    for r in results:
        low, high = r["ci95"]
        lines.append(f"{r['model']:<14} {r['trials']:>6} {r['participants']:>12} {r['fooled']:>6} "
                     f"{r['fooling_rate']:>12.3f}  {low:.3f} - {high:.3f}")
    lines.append("fooling rate: share of trials where the colorization was picked as the real photo (chance: 0.5); "
                 "interval: Wilson score, trials taken as independent")
    return "\n".join(lines)
