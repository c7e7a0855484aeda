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

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data import ColorizationDataset, DataConfig
from ..io import write_image
from ..metrics import Judge, classification_crop, frechet_distance
from ..nets.biggan import NUM_CLASSES, BigGANGenerator, ProjectionDiscriminator, hinge_d_loss, truncated_normal
from ..nets.efficientnet import resolve_class
from . import ColorizationMethod, MethodCommand, TrainConfig, image_grid, register

__all__ = ["PriorConfig", "Prior", "prior_samples", "generator_fd"]

@dataclass
class PriorConfig(TrainConfig):
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


def prior_samples(method: "Prior", class_name_or_index: str | int, n: int = 16, truncation: float | None = None, seed: int = 0,
                  columns: int | None = None) -> Image.Image:
    """A grid of ``n`` samples of one class from a loaded ``prior`` model.

    ``truncation``: redraw z beyond this many standard deviations (default: the model's).
    """
    index = resolve_class(class_name_or_index)
    device = next(method.generator.parameters()).device
    classes = torch.full((n,), index, dtype=torch.long, device=device)
    rgb = method.sample(classes, truncation=truncation, seed=seed).cpu()  # [n, 3, S, S]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    size = rgb.shape[-1]
    grid = Image.new("RGB", (columns * size, rows * size), "white")
    arr = (rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for k in range(n):
        grid.paste(Image.fromarray(arr[k]), ((k % columns) * size, (k // columns) * size))
    return grid


def generator_fd(prior_generator: torch.nn.Module, real_sources: list[str] | str, n: int = 1000, truncation: float = 0.0,
                  seed: int = 0, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """FD-EffNet (Lite2 judge, the evaluation protocol's crop) of ``n`` generator samples against
    ``n`` real images of ``real_sources``; sample classes follow the real images' labels."""
    size = 4 * 2 ** prior_generator.n_blocks
    ds = ColorizationDataset(real_sources, DataConfig(image_size=size, min_colorfulness=0.0), train=False)
    indices = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    real = [ds[int(i)] for i in indices]
    labels = torch.tensor([r["label"].item() if r["label"] >= 0 else int(i) % NUM_CLASSES for r, i in zip(real, indices)])
    gen = torch.Generator().manual_seed(seed)
    prior_generator = prior_generator.to(device).eval()
    fakes = []
    with torch.no_grad():
        for start in range(0, len(real), 50):
            y = labels[start:start + 50].to(device)
            z = truncated_normal((y.shape[0], prior_generator.z_dim), truncation, 1.0, gen).to(device)
            fakes.append(prior_generator(z, y).cpu())
    fake = torch.cat(fakes)

    def to_crops(images: torch.Tensor) -> list:
        arr = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        return [classification_crop(a) for a in arr]

    judge = Judge(device)
    _, real_feats = judge(to_crops(torch.stack([r["rgb"] for r in real])))
    _, fake_feats = judge(to_crops(fake))
    return {"fd_effnet": frechet_distance(fake_feats, real_feats), "n": len(real), "truncation": truncation}


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class", dest="class_", required=True, metavar="NAME|INDEX", help="ImageNet class")
    p.add_argument("--n", type=int, default=16, help="number of samples (default: %(default)s)")
    p.add_argument("-o", "--out", required=True, help="output PNG grid")
    p.add_argument("--truncation", type=float, default=None, help="redraw z beyond this many std (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--fd", nargs="+", default=None, metavar="REAL_DATA",
                   help="also print FD-EffNet of --fd-n samples (all classes) against these real images")
    p.add_argument("--fd-n", type=int, default=1000, help="samples for --fd (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the FD result as JSON")


def _sample_command(args: argparse.Namespace, method: "Prior") -> int:
    write_image(prior_samples(method, args.class_, args.n, args.truncation, args.seed), args.out, force=args.force)
    print(args.out)
    if args.fd:
        t = method.config.truncation if args.truncation is None else args.truncation
        device = next(method.generator.parameters()).device
        result = generator_fd(method.generator, args.fd, args.fd_n, t, args.seed, device)
        print(json.dumps(result) if args.json else f"FD-EffNet of {result['n']} samples: {result['fd_effnet']:.2f}")
    return 0


@register
class Prior(ColorizationMethod):
    """A class-conditional GAN over color images: a prior for BigColor and GCP, not a colorizer."""

    name = "prior"
    config_class = PriorConfig
    inference_module_name = "generator"
    test_config = {"width": 2, "image_size": 32, "batch_size": 2, "d_steps": 1}
    loss_names = ("d", "g", "d_real", "d_fake")
    is_colorizer = False
    commands = (MethodCommand("sample", "draw samples of a class from a generative prior", _sample_arguments, _sample_command,
                              model_default=""),)

    def __init__(self, config: PriorConfig, pretrained: bool = True, inference_only: bool = False):
        super().__init__(config, inference_only)
        self.generator = BigGANGenerator(config.image_size, config.width, config.z_chunk, config.class_dim, pretrained_codes=pretrained)
        self._g = self.generator
        if not inference_only:
            self.discriminator = ProjectionDiscriminator(config.image_size, config.width)
            self._d = self.discriminator

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
