"""Metric maths of the evaluation protocol (no I/O, no models but the judge): each function
states its input type and range. :mod:`tinct.evaluate` runs the protocol with them.

- :func:`psnr`, :func:`ssim` on uint8 RGB; :func:`colorfulness` (Hasler-Suesstrunk, one
  implementation: :func:`tinct.data.colorfulness`);
- AuC of the ab error (:class:`AucAccumulator`, :func:`ab_auc`) with the ab-bin prior of a
  ground-truth set (:func:`ab_prior`, grid :data:`tinct.color.AB_GRID`);
- hue agreement (:func:`hue_agreement`, :func:`hue_agreement_ab`);
- the judge's crop (:func:`classification_crop`), the judge (:class:`Judge`, EfficientNet-Lite2)
  and the Frechet distance of features (:func:`frechet_distance`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .color import ab_lattice, rgb_to_lab
from .data import colorfulness
from .nets.efficientnet import efficientnet_lite

__all__ = [
    "GRAY_COLORFULNESS_LIMIT", "AUC_THRESHOLDS", "psnr", "ssim", "colorfulness", "ab_bin_index", "ab_prior", "AucAccumulator",
    "ab_errors", "ab_auc", "ab_of", "hue_agreement", "hue_agreement_ab", "classification_crop", "frechet_distance", "Judge",
]


GRAY_COLORFULNESS_LIMIT = 1.0
AUC_THRESHOLDS = np.arange(0, 151, dtype=np.float64)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB arrays [H, W, 3] (data range 255); inf when equal."""
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two uint8 RGB arrays [H, W, 3] (scikit-image, data range 255, mean over channels)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred, target, channel_axis=2, data_range=255))


_AB_REACH = 11  # lattice centers -110, -100, ..., 110 on each axis
_AB_BINS_PER_AXIS = 2 * _AB_REACH + 1


def ab_of(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> ab [2, H, W] (float64, D65 Lab)."""
    t = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)
    return rgb_to_lab(t.double())[1:]


def ab_bin_index(ab: torch.Tensor) -> np.ndarray:
    """ab [2, ...] -> flat index of its nearest grid-10 bin (centers -110..110 on each axis)."""
    q = ab_lattice(ab, _AB_REACH)
    return (q[0] * _AB_BINS_PER_AXIS + q[1]).numpy().ravel()


def ab_prior(images: list[np.ndarray]) -> np.ndarray:
    """Empirical distribution [23 * 23] of the ground-truth pixels' ab bins (sums to 1)."""
    counts = np.zeros(_AB_BINS_PER_AXIS**2, dtype=np.float64)
    for rgb in images:
        counts += np.bincount(ab_bin_index(ab_of(rgb)), minlength=counts.size)
    return counts / counts.sum()


class AucAccumulator:
    """Zhang et al.'s AuC, pooled over all pixels of all images.

    For thresholds t = 0..150 the (weighted) fraction of pixels whose ab error is <= t,
    averaged over thresholds: 1.0 for a perfect prediction. With per-pixel weights
    ``1 / prior(bin of the ground truth)`` it is the class-rebalanced AuC.
    """

    def __init__(self) -> None:
        self.hist = np.zeros(len(AUC_THRESHOLDS) + 1, dtype=np.float64)

    def add(self, errors: np.ndarray, weights: np.ndarray | None = None) -> None:
        # err <= t for integer t  <=>  ceil(err) <= t; everything above 150 lands in the last slot
        slots = np.minimum(np.ceil(errors.ravel()), len(AUC_THRESHOLDS)).astype(np.int64)
        self.hist += np.bincount(slots, weights=None if weights is None else weights.ravel(), minlength=self.hist.size)

    def value(self) -> float:
        total = self.hist.sum()
        return float((np.cumsum(self.hist)[:-1] / total).mean()) if total > 0 else float("nan")


def ab_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean ab error [H * W] of two uint8 RGB images [H, W, 3]."""
    return torch.linalg.vector_norm(ab_of(pred) - ab_of(target), dim=0).numpy().ravel()


def ab_auc(pred: np.ndarray, target: np.ndarray, prior: np.ndarray | None = None) -> float:
    """AuC of one image's per-pixel ab error over thresholds 0..150 (1.0 = perfect).

    pred, target: uint8 RGB [H, W, 3]; ``prior`` (from :func:`ab_prior`) rebalances each
    pixel by the inverse probability of its ground-truth ab bin.
    """
    acc = AucAccumulator()
    weights = None if prior is None else 1.0 / prior[ab_bin_index(ab_of(target))]
    acc.add(ab_errors(pred, target), weights)
    return acc.value()


#: hue agreement: ground-truth pixels at least this chromatic are scored ...
HUE_GT_MIN_CHROMA = 10.0
#: ... and count as agreeing when the prediction is at least this chromatic ...
HUE_PRED_MIN_CHROMA = 5.0
#: ... and its hue is at most this many degrees away (on the circle).
HUE_TOLERANCE_DEG = 30.0


def hue_agreement_ab(pred_ab: torch.Tensor, gt_ab: torch.Tensor) -> float | None:
    """Hue agreement of predicted ab [2, H, W] with ground-truth ab [2, H, W] (D65 Lab).

    Of the ground-truth pixels with chroma ``C = sqrt(a^2 + b^2) >= 10``, the share whose
    prediction has chroma ``>= 5`` and a hue ``atan2(b, a)`` within 30 degrees of the ground
    truth's (the shorter way round the circle: 350 and 10 degrees are 20 apart). In [0, 1]:
    a gray prediction scores 0, the ground truth itself 1. Returns None when the ground truth
    has no pixel of chroma >= 10: such an image has no hue to agree with and is left out of
    the set's average (see :func:`hue_agreement`).
    """
    gt_chroma = torch.linalg.vector_norm(gt_ab, dim=0)
    scored = gt_chroma >= HUE_GT_MIN_CHROMA
    n = int(scored.sum())
    if n == 0:
        return None
    pred_chroma = torch.linalg.vector_norm(pred_ab, dim=0)
    diff = torch.rad2deg(torch.atan2(pred_ab[1], pred_ab[0]) - torch.atan2(gt_ab[1], gt_ab[0])).abs() % 360.0
    diff = torch.minimum(diff, 360.0 - diff)  # angular distance in [0, 180]
    agree = scored & (pred_chroma >= HUE_PRED_MIN_CHROMA) & (diff <= HUE_TOLERANCE_DEG)
    return float(agree.sum()) / n


def hue_agreement(pred: np.ndarray, target: np.ndarray) -> float | None:
    """Hue agreement of two uint8 RGB images [H, W, 3] of the same size (see
    :func:`hue_agreement_ab`; Lab from sRGB, D65). None when the ground truth ``target`` has no
    pixel of chroma >= 10; the evaluation averages the per-image values over the other images."""
    return hue_agreement_ab(ab_of(pred), ab_of(target))


def classification_crop(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> bicubic resize to short side 256 -> 224 center crop [224, 224, 3]."""
    im = Image.fromarray(rgb)
    w, h = im.size
    scale = 256 / min(w, h)
    nw, nh = max(round(w * scale), 224), max(round(h * scale), 224)
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - 224) // 2, (nh - 224) // 2
    return np.asarray(im.crop((left, top, left + 224, top + 224)))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [N, D] and b [M, D].

    ``tr(sqrt(S1 S2))`` is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix ``sqrt(S1) S2 sqrt(S1)``: stable and much faster than ``sqrtm``.
    """
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s1)
    sqrt_s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_s1 @ s2 @ sqrt_s1)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(value, 0.0)


class Judge:
    """EfficientNet-Lite2, the independent judge: logits and pooled features of 224 crops."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = efficientnet_lite("lite2").eval().to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops: list[np.ndarray], batch: int = 25) -> tuple[np.ndarray, np.ndarray]:
        """crops: uint8 [224, 224, 3] each -> (logits [N, 1000], features [N, 1280]) as float64."""
        logits, feats = [], []
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(np.stack(crops[i:i + batch])).permute(0, 3, 1, 2).float() / 255.0
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            f = self.net.pooled_features(x)
            logits.append(self.net._fc(f).double().cpu().numpy())
            feats.append(f.double().cpu().numpy())
        return np.concatenate(logits), np.concatenate(feats)
