"""Evaluation protocol (see the README and GUIDE): every number comparable across runs.

For each ground-truth color image (gray ones, colorfulness < 1, are skipped and counted):
the input is its luminance ``0.2989R + 0.5870G + 0.1140B``; the output is scored against
the ground truth with

- PSNR and SSIM on 8-bit RGB at the image's own size (SSIM: scikit-image, channel axis);
- Hasler-Suesstrunk colorfulness; ``delta_colorfulness = |mean CF(out) - mean CF(gt)|``;
- EfficientNet-**Lite2** top-1/top-5 on a 224 center crop after bicubic resize to short
  side 256, for gray, output and ground truth; ``recovery = (acc_out - acc_gray) /
  (acc_gt - acc_gray)``;
- FD-EffNet: Frechet distance between Lite2 pooled 1280-d features of outputs and ground truth;
- AuC of the per-pixel ab error (Zhang et al.): fraction of all pixels (pooled over the set)
  within t for t = 0..150, averaged over thresholds (``auc_raw``), and the same with each pixel
  weighted by the inverse probability of its ground-truth ab bin (grid 10), the prior being
  the ground-truth set's own ab distribution (``auc_rebalanced``);
- hue agreement (``hue_agreement``): per image, the share of ground-truth pixels with chroma
  >= 10 whose predicted hue is within 30 degrees and predicted chroma >= 5, averaged over the
  images that have such pixels (gray 0, ground truth 1).

The gray image itself is always scored as the ``gray`` baseline row.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .color import luminance_hwc
from .data import Record, colorfulness, decode_rgb, index_records, list_images
from .io import ImageReadError, atomic_path, open_image
from .metrics import (GRAY_COLORFULNESS_LIMIT, AucAccumulator, Judge, ab_auc, ab_bin_index, ab_of, ab_prior,  # noqa: F401 (re-exported)
                      classification_crop, frechet_distance, hue_agreement, hue_agreement_ab, psnr, ssim)
from .nets.inception import load_fid_inception
from .report import THUMB_SIZE

log = logging.getLogger(__name__)

__all__ = [
    "psnr", "ssim", "colorfulness", "classification_crop", "frechet_distance", "ab_auc", "hue_agreement",
    "hue_agreement_ab",
    "Judge", "evaluate_models", "EvalResult", "pred_dir_model", "say_pred_notes", "GRAY_COLORFULNESS_LIMIT",
]

@dataclass
class Sample:
    name: str
    label: int
    gt: np.ndarray  # uint8 [H, W, 3]


def thumbnail(rgb: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> square center crop resized to [size, size, 3] for contact sheets."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.asarray(Image.fromarray(rgb[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC))


@dataclass
class RowScores:
    """Per-image scores of one row (a model, or the gray baseline) accumulated over the set."""

    inverse_prior: np.ndarray
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    cf: list[float] = field(default_factory=list)
    hue: list[float | None] = field(default_factory=list)  # None: no gt pixel of chroma >= 10
    auc_raw: AucAccumulator = field(default_factory=AucAccumulator)
    auc_rebalanced: AucAccumulator = field(default_factory=AucAccumulator)
    crops: list[np.ndarray] = field(default_factory=list)
    thumbs: dict[int, np.ndarray] = field(default_factory=dict)
    inception: "InceptionFeatures | None" = None
    inception_feats: list[np.ndarray] = field(default_factory=list)

    def add(self, out: np.ndarray, gt: np.ndarray, keep_thumbnail: bool = False) -> None:
        self.psnr.append(psnr(out, gt))
        self.ssim.append(ssim(out, gt))
        self.cf.append(colorfulness(out))
        gt_ab, out_ab = ab_of(gt), ab_of(out)
        self.hue.append(hue_agreement_ab(out_ab, gt_ab))
        errors = torch.linalg.vector_norm(out_ab - gt_ab, dim=0).numpy().ravel()
        self.auc_raw.add(errors)
        self.auc_rebalanced.add(errors, self.inverse_prior[ab_bin_index(gt_ab)])
        self.crops.append(classification_crop(out))
        if self.inception is not None:
            self.inception_feats.append(self.inception(out))
        if keep_thumbnail:
            self.thumbs[len(self.cf) - 1] = thumbnail(out)


class InceptionFeatures:
    """FID Inception-v3 pool3 features [2048] (float64) of a whole uint8 RGB image [H, W, 3]
    (resized to 299x299, as pytorch-fid): only with user-supplied weights."""

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu"):
        self.net, self.sha256 = load_fid_inception(weights)
        self.device = torch.device(device)
        self.net.to(self.device)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None].div(255).to(self.device)
        return self.net(x)[0].double().cpu().numpy()


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """Luminance float32 [H, W] in [0, 1] of uint8 RGB [H, W, 3] (the protocol's input)."""
    x = rgb.astype(np.float32) / 255.0
    return np.clip(luminance_hwc(x), 0, 1)


def load_ground_truth(sources: list[str] | str, limit: int | None = None) -> tuple[list[Sample], int, list[str]]:
    """Color ground-truth images from folders, files, ``.tar``/``.tar.gz`` shards or globs
    (labels from ``KEY.cls`` in shards, else from dev-set style names); returns
    (samples, skipped gray count, unreadable messages)."""
    samples, skipped, errors = [], 0, []
    for rec in index_records(sources):
        if limit is not None and len(samples) >= limit:
            break
        try:
            rgb = np.asarray((_decode_member(rec) if rec.in_shard else open_image(rec.path)).convert("RGB"))
        except ImageReadError as exc:
            errors.append(str(exc))
            continue
        if colorfulness(rgb) < GRAY_COLORFULNESS_LIMIT:
            skipped += 1
            continue
        samples.append(Sample(rec.key, rec.label, rgb))
    return samples, skipped, errors


def _decode_member(rec: Record) -> Image.Image:
    try:
        return decode_rgb(rec.read())
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{rec.path} (member {rec.key})", f"cannot decode: {exc}") from exc


def _topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def _cache_key(samples: list[Sample]) -> str:
    h = hashlib.sha256(b"tinct-gt-v1|lite2|short256-center224|bicubic")
    for s in samples:
        h.update(s.name.encode())
        h.update(hashlib.sha256(s.gt.tobytes()).digest())
    return h.hexdigest()[:24]


def _judge_reference(judge: Judge, samples: list[Sample], cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Lite2 logits/features of ground truth and gray inputs, cached on disk by content."""
    key = _cache_key(samples)
    path = cache_dir / f"reference-{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    gt_logits, gt_feats = judge([classification_crop(s.gt) for s in samples])
    gray_crops = [classification_crop(np.repeat((gray_of(s.gt) * 255 + 0.5).astype(np.uint8)[..., None], 3, 2)) for s in samples]
    gray_logits, gray_feats = judge(gray_crops)
    ref = {"gt_logits": gt_logits, "gt_feats": gt_feats, "gray_logits": gray_logits, "gray_feats": gray_feats}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **ref)
    return ref


def recovery_interval(out_ok: np.ndarray, gray_ok: np.ndarray, gt_ok: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """95% paired-bootstrap interval of recovery.

    ``*_ok``: bool [N], top-1 correct per image for the output, the gray input and the ground truth.
    Each resample draws N images with replacement and recomputes all three accuracies on the same
    draw, so the interval shows how much recovery moves with the choice of images (on a few hundred
    images one image is worth about 0.015). Seeded: the same inputs give the same interval.
    Returns ``[low, high]``, or None when no resample has gt accuracy above gray accuracy.
    """
    rng = np.random.default_rng(seed)
    n = len(out_ok)
    values = []
    for start in range(0, resamples, 250):  # chunks keep memory at 250 x N indices
        idx = rng.integers(0, n, size=(min(250, resamples - start), n))
        o, g, t = out_ok[idx].mean(1), gray_ok[idx].mean(1), gt_ok[idx].mean(1)
        valid = t > g
        values.append((o[valid] - g[valid]) / (t[valid] - g[valid]))
    values = np.concatenate(values)
    if not len(values):
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def _true_class_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability [N] the judge gives each image's labelled class (NaN where unlabelled)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    picked = probs[np.arange(len(labels)), np.clip(labels, 0, None)]
    return np.where(labels >= 0, picked, np.nan)


def _top1_correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool [N]: the judge's top class is the label."""
    return logits.argmax(1) == labels


def _per_image(scores: RowScores | None, logits: np.ndarray, correct: np.ndarray, labels: np.ndarray, gt_cf: list[float],
               gt_hue: list[float | None]) -> dict[str, list]:
    """Per-image scores of one row (``scores`` None for the ground-truth row, which takes
    ``gt_cf`` and ``gt_hue``: 1.0, or None for an image without chromatic pixels)."""
    n = len(labels)
    return {
        "psnr": list(scores.psnr) if scores else [None] * n,
        "ssim": list(scores.ssim) if scores else [1.0] * n,
        "colorfulness": list(scores.cf) if scores else gt_cf,
        "top1_correct": [bool(c) if label >= 0 else None for c, label in zip(correct, labels)],
        "p_true_class": _true_class_probability(logits, labels).tolist(),
        "hue_agreement": list(scores.hue) if scores else gt_hue,
    }


def _mean_hue(values: list[float | None]) -> float | None:
    """Mean hue agreement over the images that have chromatic ground-truth pixels (None if none)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _row(scores: RowScores, logits: np.ndarray, feats: np.ndarray, correct: np.ndarray, ref: dict[str, np.ndarray], labels: np.ndarray,
         gt_cf: float, acc: dict[str, float]) -> dict[str, Any]:
    """Summary of one row; ``correct`` [N] is its per-image top-1 hit, ``ref`` also holds the gray
    and gt hits (``gray_correct``, ``gt_correct``)."""
    top1 = float(correct.mean()) if (labels >= 0).all() else None
    interval = None
    if top1 is not None and acc and acc["gt"] > acc["gray"]:
        interval = recovery_interval(correct, ref["gray_correct"], ref["gt_correct"])
    top5 = _topk(logits, labels, 5) if (labels >= 0).all() else None
    denom = acc["gt"] - acc["gray"] if acc else 0
    finite = [p for p in scores.psnr if np.isfinite(p)]
    cf = float(np.mean(scores.cf))
    return {
        "n": len(scores.cf),
        "psnr": float(np.mean(finite)) if finite else None,
        "ssim": float(np.mean(scores.ssim)),
        "colorfulness": cf,
        "delta_colorfulness": abs(cf - gt_cf),
        "top1": top1,
        "top5": top5,
        "recovery": (top1 - acc["gray"]) / denom if top1 is not None and denom else None,
        "recovery_ci95": interval,
        "fd_effnet": frechet_distance(feats, ref["gt_feats"]),
        "auc_raw": scores.auc_raw.value(),
        "auc_rebalanced": scores.auc_rebalanced.value(),
        "hue_agreement": _mean_hue(scores.hue),
        **({"fid": frechet_distance(np.stack(scores.inception_feats), ref["gt_inception"])} if scores.inception_feats else {}),
    }


@dataclass
class EvalResult:
    """What :func:`evaluate_models` measured.

    ``rows``: row name (``gray``, each model, ``gt``) -> metrics (n, psnr, ssim, colorfulness,
    delta_colorfulness, top1, top5, recovery, recovery_ci95, fd_effnet, auc_raw, auc_rebalanced,
    hue_agreement, skipped, and fid with Inception weights); ``seconds``: model -> seconds;
    ``per_image``: ``{"images", "labels", "rows": {row: {metric: [per image]}}}``;
    ``thumbnails``: ``{row: {index: uint8 [S, S, 3]}}`` for a contact sheet (not JSON).
    """

    n: int
    skipped: int
    rows: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    per_image: dict[str, Any]
    inception_weights_sha256: str | None = None
    thumbnails: dict[str, dict[int, np.ndarray]] | None = None
    sheet_names: list[str] | None = None
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as the reports and ``--json`` take it (optional entries only when set)."""
        out: dict[str, Any] = {"n": self.n, "skipped": self.skipped, "rows": self.rows, "seconds": self.seconds,
                               "per_image": self.per_image}
        if self.inception_weights_sha256 is not None:
            out["inception_weights_sha256"] = self.inception_weights_sha256
        if self.thumbnails is not None:
            out["thumbnails"], out["sheet_names"] = self.thumbnails, self.sheet_names
        if self.command is not None:
            out["command"] = self.command
        return out


def evaluate_models(
    models: dict[str, Callable[[np.ndarray], np.ndarray]], samples: list[Sample], skipped: int = 0,
    device: str = "cpu", cache_dir: Path | None = None, progress: bool = True, sheet_images: int = 0,
    inception: InceptionFeatures | None = None,
) -> EvalResult:
    """Score colorizers on ground-truth samples.

    Args:
        models: name -> function mapping a :class:`Sample` to the uint8 RGB output [H, W, 3]
            (colorizers get ``gray_of(sample.gt)``; ``--pred`` folders look the file up).
        samples: color ground truth (see :func:`load_ground_truth`).
        sheet_images: keep thumbnails of this many evenly spaced images for a contact sheet.
        inception: FID Inception features (user-supplied weights): adds a true ``fid`` to every row.
    Returns:
        an :class:`EvalResult`: rows gray, each model, gt; per-image psnr, ssim, colorfulness,
        top1_correct, p_true_class, hue_agreement (``per_image.csv`` of the report, left out of
        ``--json``); with ``sheet_images``, thumbnails for the contact sheet.
    """
    if not samples:
        raise ValueError("no color ground-truth images to evaluate")
    judge = Judge(device)
    labels = np.array([s.label for s in samples])
    ref = _judge_reference(judge, samples, cache_dir)
    gt_cfs = [colorfulness(s.gt) for s in samples]
    gt_cf = float(np.mean(gt_cfs))
    ref = {**ref, "gray_correct": _top1_correct(ref["gray_logits"], labels), "gt_correct": _top1_correct(ref["gt_logits"], labels)}
    acc = {}
    if (labels >= 0).all():
        acc = {"gt": float(ref["gt_correct"].mean()), "gray": float(ref["gray_correct"].mean())}

    prior = ab_prior([s.gt for s in samples])
    inverse_prior = np.where(prior > 0, 1.0 / np.maximum(prior, 1e-12), 0.0)
    sheet = set(np.linspace(0, len(samples) - 1, min(sheet_images, len(samples))).round().astype(int).tolist()) if sheet_images else set()
    if inception is not None:
        ref["gt_inception"] = np.stack([inception(s.gt) for s in samples])
    gray_scores = RowScores(inverse_prior, inception=inception)
    for i, s in enumerate(samples):
        g8 = np.repeat((gray_of(s.gt) * 255 + 0.5).astype(np.uint8)[..., None], 3, 2)
        gray_scores.add(g8, s.gt, keep_thumbnail=i in sheet)
    # the ground truth agrees with itself (1) wherever it has chromatic pixels; None where the gray row has no score
    gt_hues = [None if h is None else 1.0 for h in gray_scores.hue]
    rows = {"gray": _row(gray_scores, ref["gray_logits"], ref["gray_feats"], ref["gray_correct"], ref, labels, gt_cf, acc)}
    per_image = {"gray": _per_image(gray_scores, ref["gray_logits"], ref["gray_correct"], labels, gt_cfs, gt_hues)}
    timings: dict[str, float] = {}
    thumbs: dict[str, dict[int, np.ndarray]] = {"gray": gray_scores.thumbs}
    for name, fn in models.items():
        scores = RowScores(inverse_prior, inception=inception)
        t0 = time.perf_counter()
        iterator = samples
        if progress:
            iterator = tqdm(samples, desc=name, unit="img", file=sys.stderr, dynamic_ncols=True)
        for i, s in enumerate(iterator):
            scores.add(fn(s), s.gt, keep_thumbnail=i in sheet)
        logits, feats = judge(scores.crops)
        correct = _top1_correct(logits, labels)
        rows[name] = _row(scores, logits, feats, correct, ref, labels, gt_cf, acc)
        per_image[name] = _per_image(scores, logits, correct, labels, gt_cfs, gt_hues)
        timings[name] = time.perf_counter() - t0
        thumbs[name] = scores.thumbs
    gt_row = {
        "n": len(samples), "psnr": None, "ssim": 1.0, "colorfulness": gt_cf, "delta_colorfulness": 0.0,
        "top1": acc.get("gt"), "top5": _topk(ref["gt_logits"], labels, 5) if acc else None,
        "recovery": 1.0 if acc else None, "recovery_ci95": [1.0, 1.0] if acc else None, "fd_effnet": 0.0, "auc_raw": 1.0, "auc_rebalanced": 1.0,
        "hue_agreement": _mean_hue(gt_hues),
        **({"fid": 0.0} if inception is not None else {}),
    }
    rows["gt"] = gt_row
    per_image["gt"] = _per_image(None, ref["gt_logits"], ref["gt_correct"], labels, gt_cfs, gt_hues)
    thumbs["gt"] = {i: thumbnail(samples[i].gt) for i in sorted(sheet)}
    for row in rows.values():
        row["skipped"] = skipped
    return EvalResult(
        n=len(samples), skipped=skipped, rows=rows, seconds=timings,
        per_image={"images": [s.name for s in samples], "labels": labels.tolist(), "rows": per_image},
        inception_weights_sha256=inception.sha256 if inception is not None else None,
        thumbnails=thumbs if sheet else None, sheet_names=[samples[i].name for i in sorted(sheet)] if sheet else None,
    )


def pred_dir_model(pred_dir: str, notes: dict[str, list[str]] | None = None) -> Callable[[Sample], np.ndarray]:
    """Outputs of another tool, matched to ground truth by file stem, resized to its size.

    A prediction of another size than its ground truth (resized) and one without color (scored
    as it is) are listed in ``notes["resized"]`` / ``notes["gray"]``; the function's ``stems``
    attribute holds the stems that have a prediction.
    """
    by_stem = {p.stem: p for p in list_images(pred_dir)}
    notes = {} if notes is None else notes

    def lookup(sample: Sample) -> np.ndarray:
        path = by_stem.get(sample.name)
        if path is None:
            raise ValueError(f"{pred_dir}: no prediction for ground truth {sample.name!r}")
        im = open_image(path).convert("RGB")
        h, w = sample.gt.shape[:2]
        if im.size != (w, h):
            notes.setdefault("resized", []).append(f"{path.name} {im.size[0]}x{im.size[1]} (ground truth {w}x{h})")
            im = im.resize((w, h), Image.BICUBIC)
        out = np.asarray(im)
        if colorfulness(out) < 1:  # the protocol's threshold for a gray photo
            notes.setdefault("gray", []).append(path.name)
        return out

    lookup.stems = set(by_stem)
    return lookup


def say_pred_notes(pred_dir: str, notes: dict[str, list[str]]) -> None:
    """One warning line per kind of questionable prediction (the first few named)."""
    what = {"resized": "are not the size of their ground truth (resized to it with bicubic; scores are not comparable)",
            "gray": "are gray (colorfulness < 1): scored as they are"}
    for kind, items in notes.items():
        shown = ", ".join(items[:5]) + (f", ... ({len(items) - 5} more)" if len(items) > 5 else "")
        print(f"tinct eval: warning: {pred_dir}: {len(items)} prediction(s) {what[kind]}: {shown}", file=sys.stderr)
