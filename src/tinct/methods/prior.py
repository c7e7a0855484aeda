"""Method ``prior``: the generative color prior, a class-conditional BigGAN (Brock et al.).

BigColor and GCP-Colorization start from an ImageNet-pretrained BigGAN, which cannot be
downloaded here, so tinct trains its own: a BigGAN-style generator (hierarchical z chunks
concatenated with a shared class code into conditional batch norm, one self-attention block,
spectral norm, orthogonal init) and a projection discriminator, trained with the hinge loss,
with an EMA of the generator for sampling and truncation at sampling time.

Generator layout (``image_size`` S = 4 * 2^n, n up-sampling blocks):
``z [B, 17 (n + 1)]`` -> first chunk -> linear -> [B, C0, 4, 4] -> n GBlocks, block i
conditioned on ``cat(z chunk i + 1, c)`` (17 + 128 dims) -> BN-ReLU-conv3-tanh -> RGB.
BigColor reuses the n GBlocks and the output layer (its encoder's spatial feature replaces
the 4x4 map from the first chunk), with z = the n block chunks (68-d for n = 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..nets.biggan import (
    NUM_CLASSES, ClassEmbedding, DBlock, GBlock, SelfAttention, orthogonal_init, sn_conv, sn_linear, spectral_normed,
    truncated_normal,
)
from ..nets.efficientnet import ImageClassifier
from . import ColorizationMethod, image_grid, register

__all__ = ["PriorConfig", "BigGANGenerator", "ProjectionDiscriminator", "Prior", "channel_plan", "ImageClassifier"]

# BigGAN's channel multipliers, from the 4x4 map to the output resolution
_MULTIPLIERS = {16: (16, 8, 4), 32: (16, 8, 4, 2), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1), 256: (16, 16, 8, 8, 4, 2, 1)}


def channel_plan(image_size: int, width: int) -> list[int]:
    """Generator channels from the 4x4 map to the last block: ``len = log2(S / 4) + 1``."""
    if image_size not in _MULTIPLIERS:
        raise ValueError(f"image_size {image_size}: must be one of {sorted(_MULTIPLIERS)}")
    return [m * width for m in _MULTIPLIERS[image_size]]


class BigGANGenerator(nn.Module):
    """Class-conditional BigGAN generator.

    ``forward(z, classes)``: z [B, z_chunk * (n + 1)], classes [B] (indices) or [B, 1000]
    (probabilities) -> sRGB [B, 3, S, S] in [0, 1].
    ``synthesize(h, z_blocks, code)``: run the n blocks from any feature map h [B, C0, h, w]
    (BigColor's spatial feature) -> sRGB [B, 3, 2^n h, 2^n w].
    """

    def __init__(self, image_size: int = 64, width: int = 16, z_chunk: int = 17, class_dim: int = 128,
                 attention_block: int = -2, pretrained_codes: bool = True):
        super().__init__()
        channels = channel_plan(image_size, width)
        self.n_blocks = len(channels) - 1
        self.z_chunk = z_chunk
        self.z_dim = z_chunk * (self.n_blocks + 1)
        self.feature_channels = channels[0]
        self.embedding = ClassEmbedding(class_dim, pretrained=pretrained_codes)
        self.linear = sn_linear(z_chunk, channels[0] * 16)
        cond = z_chunk + class_dim
        self.blocks = nn.ModuleList(GBlock(channels[i], channels[i + 1], cond) for i in range(self.n_blocks))
        self.attention_after = attention_block % self.n_blocks if attention_block is not None else None
        self.attention = SelfAttention(channels[self.attention_after + 1]) if self.attention_after is not None else None
        self.out_bn = nn.BatchNorm2d(channels[-1], eps=1e-4)
        self.out_conv = sn_conv(channels[-1], 3)
        orthogonal_init(self)

    def synthesize(self, h: torch.Tensor, z_blocks: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """h [B, C0, h, w]; z_blocks [B, z_chunk * n]; code [B, class_dim] -> sRGB in [0, 1]."""
        chunks = z_blocks.split(self.z_chunk, dim=1)
        for i, block in enumerate(self.blocks):
            h = block(h, torch.cat([chunks[i], code], dim=1))  # [B, C_{i+1}, 2h, 2w]
            if i == self.attention_after:
                h = self.attention(h)
        rgb = torch.tanh(self.out_conv(F.relu(self.out_bn(h))))  # [B, 3, H, W] in [-1, 1]
        return (rgb + 1) / 2

    def forward(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        first, rest = z[:, : self.z_chunk], z[:, self.z_chunk:]
        h = self.linear(first).view(z.shape[0], self.feature_channels, 4, 4)
        return self.synthesize(h, rest, self.embedding(classes))


class ProjectionDiscriminator(nn.Module):
    """BigGAN projection discriminator: sRGB [B, 3, S, S] in [0, 1] and classes [B] -> logits [B].

    ``D(x, y) = w^T phi(x) + embed(y)^T phi(x)``, phi = DBlocks, ReLU, sum over space.
    ``features(x)`` returns every block's output (for feature-matching losses).
    """

    def __init__(self, image_size: int = 64, width: int = 16, attention_block: int = 0):
        super().__init__()
        channels = [3] + list(reversed(channel_plan(image_size, width)))[:-1] + [channel_plan(image_size, width)[0]]
        # e.g. S=64, width 16: 3 -> 32 -> 64 -> 128 -> 256 (4x4) -> 256 (no down-sampling)
        n = len(channels) - 1
        self.blocks = nn.ModuleList(
            DBlock(channels[i], channels[i + 1], downsample=i < n - 1, preactivation=i > 0) for i in range(n)
        )
        self.attention_after = attention_block
        self.attention = SelfAttention(channels[attention_block + 1]) if attention_block is not None else None
        self.linear = sn_linear(channels[-1], 1)
        self.embed = spectral_normed(nn.Embedding(NUM_CLASSES, channels[-1]))
        orthogonal_init(self)

    def features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        h = rgb * 2 - 1
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_after:
                h = self.attention(h)
            feats.append(h)
        return feats

    def forward(self, rgb: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.features(rgb)[-1]).sum(dim=(2, 3))  # [B, C]
        return self.linear(h).squeeze(1) + (self.embed(classes) * h).sum(dim=1)


def labels_or_predicted(method: ColorizationMethod, labels: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Class indices [B]: the data's labels, or Lite0's prediction on the color image
    [B, 3, H, W] where a label is unknown (-1)."""
    if (labels >= 0).all():
        return labels
    predicted = method.frozen_network("classifier", ImageClassifier, rgb.device)(rgb).argmax(dim=1)
    return torch.where(labels >= 0, labels, predicted)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


@dataclass
class PriorConfig:
    image_size: int = 64  # 16, 32, 64, 128 or 256
    width: int = 16  # BigGAN's ch: generator channels are multiples of it (64 px: 16, 16, 8, 4, 2)
    z_chunk: int = 17
    class_dim: int = 128
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    d_steps: int = 2  # discriminator updates per generator update (each on its own batch)
    truncation: float = 0.0  # sampling: redraw |z| beyond this (0 = none)
    batch_size: int = 64
    steps: int = 20000  # discriminator updates
    ema_decay: float = 0.999
    min_colorfulness: float = 8.0


@register
class Prior(ColorizationMethod):
    """A class-conditional GAN over color images: a prior for BigColor and GCP, not a colorizer."""

    name = "prior"
    config_class = PriorConfig
    inference_module_name = "generator"
    loss_names = ("d", "g", "d_real", "d_fake")
    is_colorizer = False

    def __init__(self, config: PriorConfig, pretrained: bool = True):
        super().__init__(config)
        self.generator = BigGANGenerator(config.image_size, config.width, config.z_chunk, config.class_dim, pretrained_codes=pretrained)
        self.discriminator = ProjectionDiscriminator(config.image_size, config.width)
        self._g, self._d = self.generator, self.discriminator

    def labels_or_predicted(self, labels: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return labels_or_predicted(self, labels, rgb)

    def sample_z(self, n: int, truncation: float | None = None, sigma: float = 1.0, seed: int | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        t = self.config.truncation if truncation is None else truncation
        return truncated_normal((n, self.generator.z_dim), t, sigma, gen).to(device)

    @torch.no_grad()
    def sample(self, classes: torch.Tensor, truncation: float | None = None, seed: int | None = None) -> torch.Tensor:
        """sRGB samples [B, 3, S, S] in [0, 1] for class indices [B]."""
        z = self.sample_z(classes.shape[0], truncation, seed=seed, device=classes.device)
        return self.generator(z, classes)

    def predict_ab(self, lightness: torch.Tensor, **options: Any) -> torch.Tensor:
        raise ValueError("a 'prior' model is a generative color prior, not a colorizer: use `tinct sample`, "
                         "or train `bigcolor` from it with --set prior=...")

    def preview(self, batch: dict[str, torch.Tensor]) -> Image.Image:
        """Rows: one real image of the batch, then 3 samples of its class (fixed z)."""
        labels = self.labels_or_predicted(batch["label"], batch["rgb"])
        samples = [self.sample(labels, seed=k) for k in range(3)]
        return image_grid([batch["rgb"], *samples])

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=c.g_lr, betas=tuple(c.betas), eps=1e-6),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.d_lr, betas=tuple(c.betas), eps=1e-6),
        }

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._g = wrap(self.generator)
        self._d = wrap(self.discriminator)

    def train_step(self, batch, optimizers, step, autocast) -> dict[str, float]:
        c = self.config
        real = batch["rgb"]
        labels = self.labels_or_predicted(batch["label"], real)
        n = real.shape[0]
        losses: dict[str, float] = {}

        optimizers["discriminator"].zero_grad(set_to_none=True)
        with autocast():
            with torch.no_grad():
                fake = self._g(self.sample_z(n, 0.0, device=real.device), labels)
            real_logits = self._d(real, labels).float()
            fake_logits = self._d(fake, labels).float()
            loss_d = hinge_d_loss(real_logits, fake_logits)
        loss_d.backward()
        optimizers["discriminator"].step()
        losses.update(d=loss_d.item(), d_real=real_logits.mean().item(), d_fake=fake_logits.mean().item())

        if step % c.d_steps == c.d_steps - 1:
            optimizers["generator"].zero_grad(set_to_none=True)
            self.discriminator.requires_grad_(False)
            with autocast():
                fake = self._g(self.sample_z(n, 0.0, device=real.device), labels)
                loss_g = -self.discriminator(fake, labels).float().mean()
            loss_g.backward()
            self.discriminator.requires_grad_(True)
            optimizers["generator"].step()
            losses["g"] = loss_g.item()
        return losses
