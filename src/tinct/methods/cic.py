"""Method ``cic``: Colorful Image Colorization (Zhang et al.; see papers/cic-reproduction.txt).

Color prediction as classification: the ab plane is quantized into grid-10 bins, the
network predicts a distribution over the in-gamut bins for every pixel (at 1/4 of the input
resolution), trained with a class-rebalanced multinomial cross-entropy against soft-encoded
ground truth, and decoded by the annealed mean.

- Bins: :func:`tinct.color.ab_bins`, the paper's 313; :func:`tinct.color.srgb_gamut_bins` derives
  309 of them from the sRGB gamut in code (the other 4 are edge bins of Zhang et al.'s released set).
- Soft-encoding: :func:`soft_encode` (5 nearest bins, Gaussian kernel sigma = 5).
- Prior and rebalancing: :func:`ab_prior` (empirical, Gaussian-smoothed), :func:`rebalancing_weights`
  ``w ~ ((1 - lambda) p + lambda / Q)^-1`` normalized to ``E_p[w] = 1`` (lambda = 0.5;
  lambda = 1 turns rebalancing off).
- Decoding: :func:`annealed_mean` (T = 0.38 by default; T -> 0 is the mode, T = 1 the mean).
- Networks (:mod:`tinct.nets.cic`): :class:`CICNet`, the paper's Table 1 (conv1-conv8, strided
  downsampling, dilated conv5/conv6, BN after each block, Q-way 1x1 output at 1/4 resolution)
  with a channel multiplier ``width`` (1.0 = the paper); :class:`CICUNet` (shipped), the same
  output on the ImageNet EfficientNet-Lite0 U-Net.
- Optimizer: Adam betas (0.9, 0.99), weight decay 1e-3, lr 3.16e-5 at batch 40, scaled
  linearly with the batch size.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..color import AB_GRID, ab_bins, gray_to_lightness, nearest_bin, rgb_to_lab, srgb_gamut_bins  # noqa: F401 (re-exported)
from ..data import ColorizationDataset, DataConfig
from ..io import read_image, write_image, write_text_atomic
from ..nets.cic import CICNet, CICUNet
from . import ColorizationMethod, InferenceOption, MethodCommand, TrainConfig, labelled_strip, register

log = logging.getLogger(__name__)

__all__ = [
    "AB_GRID", "ab_bins", "srgb_gamut_bins", "nearest_bin", "soft_encode", "ab_prior", "rebalancing_weights",
    "annealed_mean", "undo_rebalancing", "hue_consistency", "CICNet", "CIC", "CICConfig", "compute_prior",
]

def soft_encode(ab: torch.Tensor, bins: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-encode ground-truth ab onto its nearest bins with a Gaussian kernel.

    Args:
        ab: [B, 2, H, W] in [-110, 110].
        bins: [Q, 2] bin centers.
    Returns:
        (Z [B, Q, H, W], nonnegative, summing to 1 over Q; nearest-bin index [B, H, W]).
    """
    b, _, h, w = ab.shape
    q = bins.shape[0]
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    dist, idx = torch.cdist(flat, bins.float().to(flat.device)).topk(neighbours, dim=1, largest=False)  # [N, k] ascending
    weights = torch.exp(-dist.pow(2) / (2 * sigma**2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    z = torch.zeros(flat.shape[0], q, device=flat.device, dtype=flat.dtype).scatter_(1, idx, weights)
    z = z.view(b, h, w, q).permute(0, 3, 1, 2)
    return z, idx[:, 0].view(b, h, w)


def ab_prior(counts: torch.Tensor, bins: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Empirical bin distribution [Q] from bin counts [Q], smoothed by a Gaussian (sigma in ab
    units) over the bin centers, as in Zhang et al.; sums to 1."""
    p = counts.double() / counts.double().sum().clamp(min=1e-12)
    d2 = torch.cdist(bins.double(), bins.double()).pow(2)
    kernel = torch.exp(-d2 / (2 * sigma**2))
    kernel = kernel / kernel.sum(dim=0, keepdim=True)  # each bin spreads its mass, total kept
    smoothed = kernel @ p
    return (smoothed / smoothed.sum()).float()


def rebalancing_weights(prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Class-rebalancing weights [Q]: ``w ~ ((1 - lam) p + lam / Q)^-1`` with ``sum_q p_q w_q = 1``.

    lam = 1 gives w = 1 for every bin (no rebalancing).
    """
    q = prior.numel()
    w = 1.0 / ((1.0 - lam) * prior.double() + lam / q)
    w = w / (prior.double() * w).sum()
    return w.float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Point estimate of ab from per-pixel bin logits.

    ``f_T(z) = exp(log z / T) / sum exp(log z / T)`` is ``softmax(logits / T)``; the result is
    its expectation over the bin centers. ``temperature`` <= 0 returns the mode (the most
    probable bin); T = 1 is the mean.

    Args:
        logits: [B, Q, H, W] unnormalized log-probabilities.
        bins: [Q, 2] bin centers.
    Returns:
        ab [B, 2, H, W].
    """
    bins = bins.to(device=logits.device, dtype=torch.float32)
    if temperature <= 0:
        return bins[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, bins)


def undo_rebalancing(logits: torch.Tensor, class_weights: torch.Tensor, share: float = 1.0) -> torch.Tensor:
    """Logits [B, Q, H, W] with ``share`` (0..1) of the class rebalancing taken out.

    Training with per-pixel weights ``w`` of the target's bin makes the network's distribution
    approximately ``p(q | x) w_q`` renormalized; subtracting ``log w_q`` recovers the data's own
    bin frequencies. share 0 returns ``logits`` unchanged.
    """
    if share == 0:
        return logits
    log_w = class_weights.to(device=logits.device, dtype=torch.float32).clamp(min=1e-12).log()
    return logits.float() - share * log_w.view(1, -1, 1, 1)


def hue_consistency(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """How much the bin distribution agrees on one hue: ``|E[ab]| / E[|ab|]`` in [0, 1], [B, 1, H, W].

    1 where all probability lies in one direction from gray (or on gray itself), near 0 where it
    is split between opposite hues, i.e. where the mean would be a brown compromise and the mode
    a guess.
    """
    bins = bins.to(device=logits.device, dtype=torch.float32)
    probs = torch.softmax(logits.float(), dim=1)
    mean_ab = torch.einsum("bqhw,qc->bchw", probs, bins)
    mean_chroma = torch.einsum("bqhw,q->bhw", probs, bins.norm(dim=1)).unsqueeze(1)
    return (mean_ab.norm(dim=1, keepdim=True) / mean_chroma.clamp(min=1e-6)).clamp(max=1.0)


@dataclass
class CICConfig(TrainConfig):
    network: str = "table1"  # "table1": the paper's network; "unet": ImageNet EfficientNet-Lite0 U-Net
    width: float = 1.0  # channel multiplier of Table 1 (network "table1")
    decoder_widths: tuple[int, ...] = (160, 96, 64, 32, 16)  # network "unet": decoder channels at strides 16, 8, 4
    freeze_encoder: bool = True  # network "unet": keep the ImageNet encoder fixed
    feature_cache: str = ""  # network "unet", frozen: folder caching the encoder's features; "" = off
    feature_cache_views: int = 2  # random crops per image in the feature cache
    rebalance_lambda: float = 0.5  # 1.0 = no class rebalancing
    neighbours: int = 5
    sigma: float = 5.0
    temperature: float = 0.38  # default annealed-mean temperature at inference
    prior_file: str = ""  # from `tinct prior`; empty: computed from the training data
    prior_images: int = 5000  # images sampled to compute the prior when no file is given
    lr: float = 3.16e-5  # at batch lr_batch; scaled linearly with batch_size
    lr_batch: int = 40
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-3
    image_size: int = 64
    batch_size: int = 40
    steps: int = 20000


def _bin_counts(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    return torch.bincount(nearest_bin(ab, bins).reshape(-1), minlength=bins.shape[0])


def compute_prior(sources: list[str] | str, images: int = 5000, image_size: int = 64, min_colorfulness: float = 8.0,
                  sigma: float = 5.0, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Empirical ab-bin distribution of a dataset (center crops, ``images`` sampled evenly).

    Returns ``{"bins": [[a, b], ...], "prior": [...], "counts": [...], "images": n, "pixels": n}``.
    """
    ds = ColorizationDataset(sources, DataConfig(image_size=image_size, min_colorfulness=min_colorfulness), train=False, seed=seed)
    bins = ab_bins()
    n = min(images, len(ds)) if images > 0 else len(ds)
    indices = np.linspace(0, len(ds) - 1, n).round().astype(int)
    counts = torch.zeros(bins.shape[0], dtype=torch.long)
    iterator = indices
    if progress:
        iterator = tqdm(indices, desc="prior", unit="img", file=sys.stderr)
    chunk: list[torch.Tensor] = []
    for k, i in enumerate(iterator):
        chunk.append(ds[int(i)]["rgb"])
        if len(chunk) == 64 or k == len(indices) - 1:
            ab = rgb_to_lab(torch.stack(chunk))[:, 1:]
            counts += _bin_counts(ab, bins)
            chunk = []
    prior = ab_prior(counts, bins, sigma)
    return {"bins": bins.tolist(), "prior": prior.tolist(), "counts": counts.tolist(), "images": int(n), "pixels": int(counts.sum())}


#: the temperatures of CIC's Figure 1; 0 stands for the mode
SWEEP_TEMPERATURES = (1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0.0)


def temperature_sweep(colorizer: Any, gray: np.ndarray, max_side: int = 320) -> Image.Image:
    """CIC's Figure 1 for one image: columns the gray input, then the annealed mean at
    T = 1 ... 0.14, then the mode (``SWEEP_TEMPERATURES``). ``colorizer``: a
    :class:`tinct.Colorizer` of a cic model; ``gray``: float32 [H, W] in [0, 1], shown with its
    long side at most ``max_side`` pixels."""
    scale = min(1.0, max_side / max(gray.shape))
    if scale < 1.0:
        w, h = max(round(gray.shape[1] * scale), 1), max(round(gray.shape[0] * scale), 1)
        gray = np.asarray(Image.fromarray(gray).resize((w, h), Image.BILINEAR), dtype=np.float32)
    gray8 = np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    columns, labels = [gray8], ["input"]
    for t in SWEEP_TEMPERATURES:
        columns.append(colorizer.colorize_gray(gray, temperature=t))
        labels.append("mode" if t == 0 else f"T = {t:g}")
    return labelled_strip(columns, labels)


def _temperature_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="input image")
    p.add_argument("-o", "--out", required=True, help="output image (.png or .jpg)")
    p.add_argument("--size", type=int, default=None, help="working resolution")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def _temperature_command(args: argparse.Namespace, colorizer: Any) -> int:
    write_image(temperature_sweep(colorizer, read_image(args.image).gray), args.out, force=args.force)
    print(args.out)
    return 0


def _histogram_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help="folders, shards or globs")
    p.add_argument("-o", "--out", required=True, help="output JSON (use with `tinct train cic --set prior_file=...`)")
    p.add_argument("--images", type=int, default=5000, help="images sampled evenly from the data (0: all)")
    p.add_argument("--size", type=int, default=64, help="center-crop size the images are resized to")
    p.add_argument("--sigma", type=float, default=5.0, help="Gaussian smoothing of the distribution, in ab units")
    p.add_argument("--min-colorfulness", type=float, default=8.0, help="drop near-gray images below this colorfulness")
    p.add_argument("--no-progress", action="store_true")


def _histogram_command(args: argparse.Namespace, _model: None) -> int:
    result = compute_prior(args.data, args.images, args.size, args.min_colorfulness, args.sigma, progress=not args.no_progress)
    write_text_atomic(args.out, json.dumps(result) + "\n")
    top = sorted(zip(result["prior"], result["bins"]), reverse=True)[:3]
    print(f"{args.out}: {len(result['bins'])} bins from {result['images']} images ({result['pixels']} pixels); "
          "most frequent ab: " + ", ".join(f"({a:g}, {b:g}) {p:.3f}" for p, (a, b) in top))
    return 0


@register
class CIC(ColorizationMethod):
    name = "cic"
    config_class = CICConfig
    inference_module_name = "network"
    test_config = {"width": 0.125, "image_size": 32, "batch_size": 2}
    loss_names = ("ce",)
    inference_options = (
        InferenceOption("temperature", "float", 0.38, "annealed-mean temperature: lower is more vivid, 0 takes the mode",
                        min=0.0, max=1.0, step=0.01),
        InferenceOption("rebalance", "float", 1.0, "share of the training's class rebalancing kept when decoding: "
                        "1 as trained (rare, vivid colors boosted), 0 undone (the photos' own color frequencies)",
                        min=0.0, max=1.0, step=0.05),
        InferenceOption("shrink", "float", 0.0, "fade chroma where the predicted hues disagree: 0 off, higher "
                        "fades uncertain regions more", min=0.0, max=4.0, step=0.25),
    )
    commands = (
        MethodCommand("ab-histogram", "empirical ab-bin distribution of a dataset (CIC's class-rebalancing prior)",
                      _histogram_arguments, _histogram_command, aliases=("prior",)),
        MethodCommand("temperature", "CIC's annealed-mean temperature sweep of one image (its Figure 1)",
                      _temperature_arguments, _temperature_command, figure=True, model_default="cic"),
    )

    def __init__(self, config: CICConfig, pretrained: bool = True, inference_only: bool = False):
        super().__init__(config, inference_only)
        if config.network == "table1":
            self.network: nn.Module = CICNet(config.width)
        elif config.network == "unet":
            self.network = CICUNet(tuple(config.decoder_widths), pretrained=pretrained, freeze_encoder=config.freeze_encoder)
        else:
            raise ValueError(f"cic option 'network': expected 'table1' or 'unet', got {config.network!r}")
        self._net = self.network

    def prepare_data(self, sources: list[str], progress: bool = False) -> None:
        """Set the training prior (from ``prior_file`` or the data) and the rebalancing weights."""
        c = self.config
        if c.prior_file:
            import json

            with open(c.prior_file, encoding="utf-8") as f:
                saved = json.load(f)
            if saved["bins"] != self.network.bins.tolist():
                raise ValueError(f"{c.prior_file}: its ab bins differ from this tinct version's")
            prior = torch.tensor(saved["prior"], dtype=torch.float32)
        else:
            saved = compute_prior(sources, c.prior_images, c.image_size, c.min_colorfulness, c.sigma, progress=progress)
            prior = torch.tensor(saved["prior"], dtype=torch.float32)
            log.info("cic: ab prior from %d images (%d pixels)", saved["images"], saved["pixels"])
        self.set_prior(prior)

    def set_prior(self, prior: torch.Tensor) -> None:
        self.network.prior.copy_(prior)
        self.network.class_weights.copy_(rebalancing_weights(prior, self.config.rebalance_lambda))

    def predict_logits(self, lightness: torch.Tensor) -> torch.Tensor:
        """Bin logits [B, Q, H'/4, W'/4] for L [B, 1, H, W] in [0, 100], padded to H', W' (multiples
        of 8 for the Table-1 network, 32 for the U-Net)."""
        h, w = lightness.shape[-2:]
        multiple = getattr(self.network, "multiple", 8)
        ph, pw = (-h) % multiple, (-w) % multiple
        padded = F.pad(lightness, (0, pw, 0, ph), mode="replicate") if ph or pw else lightness
        return self.network(padded)

    def predict_ab(self, lightness: torch.Tensor, temperature: float | None = None, rebalance: float = 1.0,
                   shrink: float = 0.0, **options: Any) -> torch.Tensor:
        """ab [B, 2, H, W] by the annealed mean at ``temperature`` (default 0.38; <= 0: the mode) of the
        bin distribution with ``rebalance`` of the training's rebalancing kept (:func:`undo_rebalancing`),
        faded by ``hue_consistency ** shrink``."""
        h, w = lightness.shape[-2:]
        t = self.config.temperature if temperature is None else float(temperature)
        logits = undo_rebalancing(self.predict_logits(lightness), self.network.class_weights, 1.0 - float(rebalance))
        ab = annealed_mean(logits, self.network.bins, t)  # [B, 2, H'/4, W'/4]
        if shrink > 0:
            ab = ab * hue_consistency(logits, self.network.bins).pow(float(shrink))
        size = (logits.shape[-2] * 4, logits.shape[-1] * 4)
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)[..., :h, :w]

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        lr = c.lr * c.batch_size / c.lr_batch
        params = [p for p in self.network.parameters() if p.requires_grad]
        return {"network": torch.optim.Adam(params, lr=lr, betas=tuple(c.betas), weight_decay=c.weight_decay)}

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._net = wrap(self.network)

    def loss(self, logits: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """Class-rebalanced multinomial cross-entropy of logits [B, Q, h, w] against sRGB ground
        truth [B, 3, H, W] in [0, 1]: its ab is averaged down to the output's resolution (as
        the paper's network sees a 1/4-resolution target), soft-encoded, and every pixel is
        weighted by the rebalancing weight of its nearest bin."""
        net = self.network
        ab = rgb_to_lab(rgb)[:, 1:]
        if ab.shape[-2:] != logits.shape[-2:]:
            ab = F.adaptive_avg_pool2d(ab, logits.shape[-2:])
        z, nearest = soft_encode(ab, net.bins, self.config.neighbours, self.config.sigma)
        pixel_weight = net.class_weights[nearest]  # [B, h, w]
        ce = -(z * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)  # [B, h, w]
        return (pixel_weight * ce).mean()

    def frozen_features(self, lightness: torch.Tensor) -> list[torch.Tensor] | None:
        """The frozen U-Net encoder's features of L [B, 1, H, W] (for the training feature
        cache), or None when no encoder is frozen."""
        if self.config.network != "unet" or not self.config.freeze_encoder:
            return None
        return self.network.unet.encode(lightness)

    def train_step(self, batch, optimizers, step, autocast) -> dict[str, float]:
        lightness = gray_to_lightness(batch["gray"])
        opt = optimizers["network"]
        opt.zero_grad(set_to_none=True)
        with autocast():
            if "features" in batch:  # cached features of the frozen encoder
                logits = self.network.unet.decode(batch["features"])
            else:
                logits = self._net(lightness)
        loss = self.loss(logits, batch["rgb"])
        loss.backward()
        opt.step()
        return {"ce": loss.item()}
