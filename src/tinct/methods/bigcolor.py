"""Method ``bigcolor``: colorization with a generative color prior (Kim et al.; see
papers/bigcolor-analysis-ipol.txt and bigcolor-slides.txt).

- Encoder E (networks in :mod:`tinct.nets.bigcolor`): five residual blocks conditioned on the
  class code (conditional BN), average pooling in all but the first, so the spatial feature f is
  at 1/16 of the input: gray [B, 1, H, W] -> f [B, C0, H/16, W/16].
- Generator G: the inverse of E, the up-sampling BigGAN blocks of a ``prior`` generator:
  f and, per block, a 17-d chunk of z (68-d) concatenated with the 128-d class code
  c = A(class) -> RGB [B, 3, H, W].
- Discriminator: BigGAN projection discriminator, hinge loss, shown real images color-augmented
  in YUV (U and V x 1.2).
- Loss of E and G: ``MSE + 0.2 perceptual + 0.03 hinge adversarial``; the perceptual term uses
  EfficientNet-Lite0 features at four depths in place of the paper's VGG16 layers.
- G (and D) start from a trained ``prior`` when ``prior`` is set: the generative color prior.
- Inference: the class comes from EfficientNet-Lite0 on the gray input (top-k), from the user
  (``class_index``) or from a color reference image; z ~ N(0, sigma^2 I) with sigma = 0.8 by
  default; any size (padded to a multiple of 16); the input's L is fused with the output's ab.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import trained_model
from ..color import lightness_to_gray, rgb_to_lab, rgb_to_yuv, yuv_to_rgb
from ..nets.biggan import ProjectionDiscriminator, hinge_d_loss, truncated_normal
from ..nets.bigcolor import BigColorEncoder, BigColorNet  # noqa: F401 (re-exported)
from ..nets.perceptual import PerceptualLoss
from . import ColorizationMethod, InferenceOption, TrainConfig, register

log = logging.getLogger(__name__)

__all__ = ["BigColorConfig", "BigColorEncoder", "BigColorNet", "BigColor", "color_augment"]


def color_augment(rgb: torch.Tensor, scale: float = 1.2) -> torch.Tensor:
    """Scale the chroma of sRGB [B, 3, H, W] in [0, 1] in YUV: U, V <- scale U, scale V (clamped)."""
    yuv = rgb_to_yuv(rgb)
    yuv = torch.cat([yuv[:, :1], yuv[:, 1:] * scale], dim=1)
    return yuv_to_rgb(yuv).clamp(0.0, 1.0)


@dataclass
class BigColorConfig(TrainConfig):
    prior: str = ""  # a trained `prior` (run dir, checkpoint, .safetensors or shipped name) to start G from
    image_size: int = 64
    width: int = 16  # must equal the prior's
    z_chunk: int = 17
    class_dim: int = 128
    mse_weight: float = 1.0
    perceptual_weight: float = 0.2
    adv_weight: float = 0.03
    color_augment: float = 1.2  # U, V scale of the real images the discriminator sees
    sigma: float = 0.8  # default std of z at inference
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    batch_size: int = 32
    steps: int = 20000


@register
class BigColor(ColorizationMethod):
    name = "bigcolor"
    config_class = BigColorConfig
    inference_module_name = "net"
    test_config = {"width": 2, "batch_size": 2, "perceptual_weight": 0.0}
    loss_names = ("g", "mse", "perceptual", "g_adv", "d")
    inference_options = (
        InferenceOption("class", "class", None, "ImageNet class to colorize as (name or index; empty: read from the gray input)"),
        InferenceOption("reference", "image", None, "take the class from this color photo instead"),
        InferenceOption("samples", "int", 1, "number of outputs, each from a different random code z", min=1, max=16, step=1),
        InferenceOption("sigma", "float", 0.8, "std of the random code z ~ N(0, sigma^2 I)", min=0.0, max=10.0, step=0.05),
        InferenceOption("top_k", "int", 1, "one output per each of the K most probable classes of the input",
                        min=1, max=5, step=1),
        InferenceOption("seed", "int", 0, "seed of the first random code", min=0, max=2**31 - 1, step=1),
    )

    def __init__(self, config: BigColorConfig, pretrained: bool = True, inference_only: bool = False):
        super().__init__(config, inference_only)
        c = config
        self.net = BigColorNet(c.image_size, c.width, c.z_chunk, c.class_dim, pretrained=pretrained)
        self._net = self.net
        if not inference_only:
            self.discriminator = ProjectionDiscriminator(c.image_size, c.width)
            self._d = self.discriminator

    # --- data and prior ----------------------------------------------------------------
    def prepare_data(self, sources: list[str], progress: bool = False) -> None:
        if self.config.prior:
            self.load_prior(self.config.prior)

    def load_prior(self, source: str) -> None:
        """Start G (and D, when the source is a training run) from a trained ``prior``."""
        shape = {key: getattr(self.config, key) for key in ("image_size", "width", "z_chunk", "class_dim")}
        g_state, d_state = trained_model(source, "prior", shape, other="discriminator", user="this bigcolor")
        self.net.generator.load_state_dict(g_state)
        if d_state:
            self.discriminator.load_state_dict(d_state)
        log.info("bigcolor: G%s initialized from the prior %s", " and D" if d_state else "", source)

    # --- inference -----------------------------------------------------------------------
    #: the pipeline passes a 224 x 224 view of the whole full-resolution input as ``semantic_gray``:
    #: the classifier recognizes far more from it than from the working-resolution copy
    semantic_view: int = 224

    def predict_ab(self, lightness: torch.Tensor, class_index: int | None = None, reference_rgb: torch.Tensor | None = None,
                   top_rank: int = 0, sigma: float | None = None, seed: int = 0, z: torch.Tensor | None = None,
                   semantic_gray: torch.Tensor | None = None, **options: Any) -> torch.Tensor:
        """ab [B, 2, H, W] for L [B, 1, H, W] in [0, 100].

        The class is ``class_index`` if given, else the top class of ``reference_rgb`` (a color
        image [1, 3, h, w] in [0, 1]) if given, else the ``top_rank``-th most probable class of
        the gray input (0 = top-1), classified from ``semantic_gray`` [B, 1, h, w] in [0, 1] (a
        view of the whole full-resolution input) when given, else from the working-resolution L.
        ``z`` [B, 68], else ``sigma * N(0, I)`` seeded by ``seed`` (``sigma`` defaults to the
        config's 0.8).
        """
        b, _, h, w = lightness.shape
        gray = lightness_to_gray(lightness)
        device = lightness.device
        if class_index is not None:
            classes = torch.full((b,), int(class_index), dtype=torch.long, device=device)
        elif reference_rgb is not None:
            classes = self.classify(reference_rgb.to(device)).argmax(dim=1).expand(b)
        else:
            seen = semantic_gray if semantic_gray is not None else gray
            classes = self.classify(seen).topk(top_rank + 1, dim=1).indices[:, top_rank]
        if z is None:
            s = self.config.sigma if sigma is None else float(sigma)
            z = s * truncated_normal((b, self.net.z_dim), generator=torch.Generator().manual_seed(int(seed)))
        ph, pw = (-h) % 16, (-w) % 16
        padded = F.pad(gray, (0, pw, 0, ph), mode="replicate") if ph or pw else gray
        rgb = self.net(padded, classes, z.to(device))[..., :h, :w]
        return rgb_to_lab(rgb.float())[:, 1:]

    def inference_variants(self, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``samples`` N: N outputs with seeds 0..N-1 (suffix ``_sK``); ``top_k`` K: one output per
        top class of the gray input (suffix ``_topK``); both: every combination."""
        samples = int(options.pop("samples", 1) or 1)
        top_k = int(options.pop("top_k", 1) or 1)
        if top_k > 1 and (options.get("class_index") is not None or options.get("reference_rgb") is not None):
            raise ValueError("--top-k picks classes from the input; it cannot be combined with --class or --reference")
        base_seed = int(options.pop("seed", 0) or 0)
        variants = []
        for rank in range(top_k):
            for k in range(samples):
                suffix = (f"_top{rank + 1}" if top_k > 1 else "") + (f"_s{k}" if samples > 1 else "")
                variants.append((suffix, {**options, "top_rank": rank, "seed": base_seed + k}))
        return variants

    # --- training --------------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            "generator": torch.optim.Adam(self.net.parameters(), lr=c.g_lr, betas=tuple(c.betas), eps=1e-6),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.d_lr, betas=tuple(c.betas), eps=1e-6),
        }

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._net = wrap(self.net)
        self._d = wrap(self.discriminator)

    def train_step(self, batch, optimizers, step, autocast) -> dict[str, float]:
        c = self.config
        rgb, gray = batch["rgb"], batch["gray"]
        labels = self.labels_or_predicted(batch["label"], rgb)
        z = torch.randn(rgb.shape[0], self.net.z_dim, device=rgb.device)
        losses: dict[str, float] = {}
        with autocast():
            fake = self._net(gray, labels, z)  # [B, 3, H, W] in [0, 1]

        optimizers["discriminator"].zero_grad(set_to_none=True)
        with autocast():
            real_logits = self._d(color_augment(rgb, c.color_augment), labels).float()
            fake_logits = self._d(fake.detach(), labels).float()
            loss_d = hinge_d_loss(real_logits, fake_logits)
        loss_d.backward()
        optimizers["discriminator"].step()
        losses["d"] = loss_d.item()

        optimizers["generator"].zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(False)
        with autocast():
            fake = fake.float()
            mse = F.mse_loss(fake, rgb)
            perceptual = self.frozen_network("perceptual", PerceptualLoss, rgb.device)(fake, rgb) if c.perceptual_weight > 0 else torch.zeros((), device=rgb.device)
            adv = -self.discriminator(fake, labels).float().mean()
            loss = c.mse_weight * mse + c.perceptual_weight * perceptual + c.adv_weight * adv
        loss.backward()
        self.discriminator.requires_grad_(True)
        optimizers["generator"].step()
        losses.update(g=loss.item(), mse=mse.item(), perceptual=perceptual.item(), g_adv=adv.item())
        return losses
