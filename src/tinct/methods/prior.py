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
from PIL import Image
from torch import nn

from ..nets.biggan import BigGANGenerator, ProjectionDiscriminator, hinge_d_loss, truncated_normal
from . import ColorizationMethod, image_grid, register

__all__ = ["PriorConfig", "Prior"]

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
