"""Method ``gcp``: GCP-Colorization (Wu et al., papers/gcp-colorization.txt), colorization guided
by a generative color prior. Networks in :mod:`tinct.nets.gcp`.

- The prior: tinct's class-conditional BigGAN (``tinct train prior``) stands in for the
  pretrained ImageNet BigGAN: its generator G (always frozen) and, in stage 1, its projection
  discriminator D (frozen). ``prior`` names the run to start from.
- Stage 1 (``stage: 1``): the GAN encoder E learns to invert gray images, z = E(gray, class),
  x_inv = G(z, class); loss ``1.0 L_inv_ftr + 0.0125 L_inv_reg``: the L1 distance between the
  features of the last three layers of D on x_inv and on the color ground truth, and
  ``0.5 ||z||_2``. Adam, lr 1e-5 decayed linearly to 0.
- Stage 2 (``stage: 2``, started from a stage-1 run with ``tinct train gcp --init-from RUN``): E
  frozen; the alignment heads, C and D_c learn with ``10 L_dom + 1e-3 L_perc + 0.1 L_ctx +
  1.0 L_adv``: domain alignment (L1 between F_L->S(gray) and F_RGB->S(ground truth)), perceptual
  (MSE of EfficientNet-Lite0 stride-16 features, for VGG19 relu5_2), contextual loss between
  the output and x_inv (Lite0 stride 4, 8, 16 features weighted 2, 4, 8, for VGG19 relu3_2,
  4_2, 5_2) and LSGAN with the 3-scale PatchGAN D_c. Adam, lr 1e-4 decayed linearly to 0.
- Ablations: ``align: false`` (F_GAN resized onto the input, no correlation, no L_dom) and
  ``spade: false`` (F_GAN concatenated to C's features instead of SPADE).
- Inference: class from EfficientNet-Lite0 on the gray input, or ``class``, or the class of a
  ``reference`` photo; the reference also replaces x_inv (exemplar-based: its inversion, refined
  by a few gradient steps on z to match the photo, gives F_GAN, and the photo itself is what
  the input is aligned to); ``samples`` N with ``sigma`` S: z + S N(0, I), one seed per sample;
  ``direction`` K with ``strength`` A: z + A d_K, d_K the K-th SeFa direction of G
  (:func:`latent_directions`); :func:`transition_strip` renders a walk along one.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoint import trained_model
from ..color import gray_to_lightness, lab_to_rgb, lightness_to_gray, luminance, rgb_to_lab
from ..io import read_image, write_image
from ..nets.biggan import ProjectionDiscriminator
from ..nets.efficientnet import efficientnet_lite
from ..nets.gcp import GcpNet, MultiScalePatchDiscriminator, contextual_loss, generator_features, sefa_directions
from . import ColorizationMethod, InferenceOption, MethodCommand, TrainConfig, image_grid, labelled_strip, register

log = logging.getLogger(__name__)

__all__ = ["GcpConfig", "Gcp", "latent_directions", "transition_strip", "TRANSITION_STRENGTHS"]

#: the strengths a transition strip shows, left to right
TRANSITION_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
#: EfficientNet-Lite0 feature maps (of strides 2, 4, 8, 16, 32) standing in for VGG19's
#: relu3_2, relu4_2, relu5_2 (contextual loss, weights 2, 4, 8) and relu5_2 (perceptual loss)
_CTX_TAPS, _CTX_WEIGHTS, _PERC_TAP = (1, 2, 3), (2.0, 4.0, 8.0), 3
_STAGE2_MODULES = ("align.", "colorizer.")


@dataclass
class GcpConfig(TrainConfig):
    prior: str = ""  # a trained `prior` (run dir, checkpoint, .safetensors or shipped name): G and D
    stage: int = 1  # 1: train the GAN encoder E; 2: E frozen, train alignment, C and D_c (--init-from a stage-1 run)
    image_size: int = 64  # G's resolution and the training crops
    width: int = 16  # must equal the prior's
    z_chunk: int = 17
    class_dim: int = 128
    align: bool = True  # False (ablation): F_GAN resized onto the input instead of warped
    spade: bool = True  # False (ablation): F_GAN concatenated to C's features instead of SPADE
    c_width: int = 32  # C's channels at full resolution (x2, x4 below)
    spade_hidden: int = 64
    align_dim: int = 64  # channels of the shared space S
    temperature: float = 0.01  # of the correlation softmax over cosine similarities
    d_width: int = 32  # D_c's first layer
    inv_ftr_weight: float = 1.0
    inv_reg_weight: float = 0.0125
    dom_weight: float = 10.0
    perc_weight: float = 1e-3
    ctx_weight: float = 0.1
    adv_weight: float = 1.0
    e_lr: float = 1e-5  # stage 1
    lr: float = 1e-4  # stage 2: alignment heads, C and D_c
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 8
    steps: int = 20000  # the learning rate decays linearly to 0 at the last step
    ema_decay: float = 0.999
    min_colorfulness: float = 8.0
    sigma: float = 0.5  # std of the z perturbation between --samples when --sigma is not given
    reference_steps: int = 30  # gradient steps refining the inversion of a --reference photo
    reference_lr: float = 0.05


def _drop_untrained_stage2_weights(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` without the alignment and C weights that do not fit ``module``: a stage-1 run
    never trains them, so a stage-2 ablation (other ``align``/``spade``) can start from it."""
    own = module.state_dict()
    stage2 = tuple(prefix + name for name in _STAGE2_MODULES)
    dropped = [k for k, v in state.items() if k.startswith(stage2) and (k not in own or own[k].shape != v.shape)]
    if dropped:
        log.info("gcp: %d alignment/colorization weights of another layout left out (%s ...)", len(dropped), dropped[0])
    kept = {k: v for k, v in state.items() if k not in dropped}
    misfit = next((k for k, v in kept.items() if k in own and own[k].shape != v.shape), None)
    if misfit is not None:
        raise ValueError(f"weight {misfit!r} is {tuple(kept[misfit].shape)} there and {tuple(own[misfit].shape)} in this gcp "
                         "config: give stage 2 the stage-1 run's image_size, width, z_chunk and class_dim (its config.yaml)")
    return kept


class _GcpInferenceNet(GcpNet):
    """:class:`GcpNet` whose non-strict loading leaves out stage-2 weights of another layout."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not strict:
            state_dict = _drop_untrained_stage2_weights(self, state_dict, "")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def latent_directions(net: GcpNet) -> torch.Tensor:
    """The SeFa directions of ``net``'s generator, [z_chunk, z_dim] unit rows, strongest first
    (see :func:`tinct.nets.gcp.sefa_directions`)."""
    return sefa_directions(net.generator)[0]


def transition_strip(colorizer: Any, gray: np.ndarray, direction: int, strengths: tuple[float, ...] = TRANSITION_STRENGTHS,
                     max_side: int = 320, **options: Any) -> Image.Image:
    """The paper's smooth transitions (its Figure 7) for one image: columns the gray input, then
    the image colorized with z moved along SeFa direction ``direction`` by each of ``strengths``.

    ``colorizer``: a :class:`tinct.Colorizer` of a gcp model; ``gray``: float32 [H, W] in [0, 1],
    shown with its long side at most ``max_side`` pixels; ``options``: other user-level options
    of the model (``class``, ``reference``...), checked as ``tinct colorize`` checks them.
    """
    if direction < 0:
        raise ValueError(f"direction {direction}: a transition needs a direction, 0 or more")
    for a in strengths:
        colorizer.check_options({"direction": direction, "strength": a})
    resolved = colorizer.resolve_options(options)
    scale = min(1.0, max_side / max(gray.shape))
    if scale < 1.0:
        w, h = max(round(gray.shape[1] * scale), 1), max(round(gray.shape[0] * scale), 1)
        gray = np.asarray(Image.fromarray(gray).resize((w, h), Image.BILINEAR), dtype=np.float32)
    columns = [np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)]
    labels = ["input"]
    for a in strengths:
        columns.append(colorizer.colorize_gray(gray, direction=direction, strength=a, **resolved))
        labels.append(f"A = {a:+g}")
    return labelled_strip(columns, labels)


def _transition_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="input image")
    p.add_argument("--direction", type=int, required=True, metavar="K", help="latent direction (0: the strongest, by SeFa)")
    p.add_argument("-o", "--out", required=True, help="output image (.png or .jpg)")
    p.add_argument("--strengths", default=",".join(f"{a:g}" for a in TRANSITION_STRENGTHS), metavar="A,A,...",
                   help="comma-separated strengths, one column each; write --strengths=-3,3 when the first is negative "
                        "(default: %(default)s)")
    p.add_argument("--class", dest="class_", default=None, metavar="NAME|INDEX", help="ImageNet class (default: read from the input)")
    p.add_argument("--size", type=int, default=None, help="working resolution")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def _transition_command(args: argparse.Namespace, colorizer: Any) -> int:
    try:
        strengths = tuple(float(a) for a in args.strengths.split(",") if a.strip())
    except ValueError:
        raise ValueError(f"--strengths: expected comma-separated numbers, got {args.strengths!r}") from None
    if not strengths:
        raise ValueError("--strengths: give at least one strength")
    options = {"class": args.class_} if args.class_ is not None else {}
    strip = transition_strip(colorizer, read_image(args.image).gray, args.direction, strengths, **options)
    write_image(strip, args.out, force=args.force)
    print(args.out)
    return 0


@register
class Gcp(ColorizationMethod):
    name = "gcp"
    config_class = GcpConfig
    inference_module_name = "net"
    loss_names = ("e", "inv_ftr", "inv_reg", "g", "dom", "perc", "ctx", "g_adv", "d")
    #: the pipeline passes a 224 x 224 view of the whole input for the classifier
    semantic_view: int = 224
    commands = (MethodCommand("transition", "GCP-Colorization's smooth transition along a latent direction (its Figure 7)",
                              _transition_arguments, _transition_command, figure=True, model_default="gcp"),)
    test_config = {"width": 2, "image_size": 32, "batch_size": 2, "c_width": 8, "spade_hidden": 8, "align_dim": 8, "d_width": 8,
                   "reference_steps": 2}
    inference_options = (
        InferenceOption("class", "class", None, "ImageNet class to colorize as (name or index; empty: read from the gray input)"),
        InferenceOption("reference", "image", None, "a color photo to colorize like: it replaces the GAN's inversion image"),
        InferenceOption("samples", "int", 1, "number of outputs, each from a differently perturbed latent code z", min=1, max=16,
                        step=1),
        InferenceOption("sigma", "float", GcpConfig.sigma, "std of the perturbation of z between --samples (0: all alike)",
                        min=0.0, max=10.0, step=0.05),
        InferenceOption("direction", "int", -1, "move z along this latent direction (0: the strongest, found by SeFa; -1: none)",
                        min=-1, max=GcpConfig.z_chunk - 1, step=1),
        InferenceOption("strength", "float", 2.0, "how far to move z along --direction (negative: the other way)",
                        min=-20.0, max=20.0, step=0.5),
        InferenceOption("seed", "int", 0, "seed of the first perturbation", min=0, max=2**31 - 1, step=1),
    )

    def __init__(self, config: GcpConfig, pretrained: bool = True, inference_only: bool = False):
        super().__init__(config, inference_only)  # inference_only (tinct.weights.load_model): no discriminators
        c = config
        if c.stage not in (1, 2):
            raise ValueError(f"gcp option 'stage': 1 (GAN encoder) or 2 (alignment and colorization), got {c.stage!r}")
        if c.image_size < 32:
            raise ValueError(f"gcp option 'image_size': 32 or more (G's last three blocks guide C), got {c.image_size}")
        self.net = _GcpInferenceNet(c.image_size, c.width, c.z_chunk, c.class_dim, c.c_width, c.spade_hidden, c.align_dim,
                                    c.temperature, c.align, c.spade, pretrained=pretrained)
        if not inference_only:
            self.prior_discriminator = ProjectionDiscriminator(c.image_size, c.width).requires_grad_(False)
            self.discriminator = MultiScalePatchDiscriminator(c.d_width)
        # what each stage trains; everything else is frozen (G and the alignment backbone always)
        self.net.requires_grad_(False)
        if c.stage == 1:
            self.net.encoder.requires_grad_(True)
        else:
            self.net.encoder_frozen = True
            self.net.colorizer.requires_grad_(True)
            if self.net.align is not None:
                self.net.align.gray_head.requires_grad_(True)
                self.net.align.rgb_head.requires_grad_(True)
        if not inference_only:
            self.discriminator.requires_grad_(c.stage == 2)

    def train(self, mode: bool = True) -> "Gcp":
        super().train(mode)
        if not self.inference_only:
            self.prior_discriminator.eval()  # frozen: no power-iteration updates of its spectral norms
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not strict:
            state_dict = _drop_untrained_stage2_weights(self, state_dict, "net.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- data and prior ----------------------------------------------------------------
    def prepare_data(self, sources: list[str], progress: bool = False) -> None:
        if self.config.prior:
            self.load_prior(self.config.prior)
        else:
            log.warning("gcp: no prior set (--set prior=RUN): G and D are untrained")
        if self.config.stage == 2:
            log.warning("gcp: stage 2 without --init-from a stage-1 run: the GAN encoder E is untrained")

    def load_prior(self, source: str) -> None:
        """G (and, from a training run, D) from a trained ``prior``."""
        shape = {key: getattr(self.config, key) for key in ("image_size", "width", "z_chunk", "class_dim")}
        g_state, d_state = trained_model(source, "prior", shape, other="discriminator", user="this gcp")
        self.net.generator.load_state_dict(g_state)
        if d_state:
            self.prior_discriminator.load_state_dict(d_state)
        elif self.config.stage == 1:
            log.warning("gcp: %s holds no discriminator: stage 1's feature loss uses an untrained D", source)
        log.info("gcp: G%s from the prior %s", " and D" if d_state else "", source)

    # --- inference -----------------------------------------------------------------------
    def _classes(self, b: int, device: torch.device, gray: torch.Tensor, class_index: int | None,
                 reference_rgb: torch.Tensor | None, semantic_gray: torch.Tensor | None) -> torch.Tensor:
        if class_index is not None:
            return torch.full((b,), int(class_index), dtype=torch.long, device=device)
        if reference_rgb is not None:
            return self.classify(reference_rgb).argmax(dim=1).expand(b)
        return self.classify(semantic_gray if semantic_gray is not None else gray).argmax(dim=1)

    def reference_latent(self, reference_rgb: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Invert a color photo [1, 3, h, w] in [0, 1]: E on its gray, then ``reference_steps``
        Adam steps on z so that G(z) matches the photo (L1 + the z penalty), G frozen.

        Returns (z [1, z_dim], the photo as G's S x S square [1, 3, S, S]).
        """
        c, s = self.config, self.config.image_size
        h, w = reference_rgb.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = F.interpolate(reference_rgb[..., top:top + side, left:left + side].float(), size=(s, s), mode="bilinear",
                               align_corners=False, antialias=side > s).clamp(0, 1)
        with torch.inference_mode(False), torch.enable_grad():  # the pipeline runs in inference mode
            square = square.clone()
            classes = classes[:1].clone()
            code = self.net.generator.embedding(classes).detach()
            z = self.net.invert(luminance(square), code).detach().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=c.reference_lr)
            for _ in range(c.reference_steps):
                optimizer.zero_grad(set_to_none=True)
                x, _ = generator_features(self.net.generator, z, classes, code)
                loss = (x - square).abs().mean() + c.inv_reg_weight * 0.5 * z.norm(dim=1).mean()
                loss.backward()
                optimizer.step()
        return z.detach(), square

    def predict_ab(self, lightness: torch.Tensor, class_index: int | None = None, reference_rgb: torch.Tensor | None = None,
                   sigma: float | None = None, seed: int = 0, direction: int | None = None, strength: float = 2.0,
                   semantic_gray: torch.Tensor | None = None, **options: Any) -> torch.Tensor:
        """ab [B, 2, H, W] in [-110, 110] for L [B, 1, H, W] in [0, 100] (any H, W).

        The class is ``class_index``, else the class of ``reference_rgb`` (a color photo
        [1, 3, h, w] in [0, 1]), else the top class of ``semantic_gray`` [B, 1, h, w] in [0, 1]
        (a view of the whole input) or of the input. z is E's inversion of the input (of the
        reference when given, which then also replaces x_inv), plus ``sigma`` N(0, I) (seeded
        by ``seed``) and ``strength`` times SeFa direction ``direction``.
        """
        b, _, h, w = lightness.shape
        device = lightness.device
        gray = lightness_to_gray(lightness)
        if reference_rgb is not None:
            reference_rgb = reference_rgb.to(device)
        classes = self._classes(b, device, gray, class_index, reference_rgb, semantic_gray)
        offset = torch.zeros(b, self.net.z_dim)
        if sigma:
            offset += float(sigma) * torch.randn(b, self.net.z_dim, generator=torch.Generator().manual_seed(int(seed)))
        if direction is not None and direction >= 0:
            directions = latent_directions(self.net)
            if not 0 <= int(direction) < len(directions):
                raise ValueError(f"direction {direction} is out of range (0 to {len(directions) - 1})")
            offset += float(strength) * directions[int(direction)]
        z = exemplar = None
        if reference_rgb is not None:
            z, exemplar = self.reference_latent(reference_rgb, classes)
            z, exemplar = z.expand(b, -1), exemplar.expand(b, -1, -1, -1)
        ph, pw = (-h) % 4, (-w) % 4
        padded = F.pad(lightness, (0, pw, 0, ph), mode="replicate") if ph or pw else lightness
        ab, _ = self.net.colorize(padded, classes, z=z, z_offset=offset.to(device), exemplar=exemplar)
        return ab[..., :h, :w].float()

    def inference_variants(self, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``samples`` N > 1: N outputs, z perturbed by ``sigma`` (default: the config's) with
        seeds seed..seed+N-1 (suffix ``_sK``); one output: E's inversion itself (``sigma`` and
        ``seed`` concern samples only)."""
        samples = int(options.pop("samples", 1) or 1)
        base_seed = int(options.pop("seed", 0) or 0)
        sigma = options.pop("sigma", None)
        if samples == 1:
            return [("", options)]
        sigma = self.config.sigma if sigma is None else float(sigma)
        return [(f"_s{k}", {**options, "sigma": sigma, "seed": base_seed + k}) for k in range(samples)]

    def preview(self, batch: dict[str, torch.Tensor]) -> Image.Image:
        """Rows of gray | x_inv (the GAN's inversion) | output | ground truth."""
        gray, rgb = batch["gray"], batch["rgb"]
        lightness = gray_to_lightness(gray)
        labels = self.labels_or_predicted(batch["label"], rgb)
        ab, x_inv = self.net.colorize(lightness, labels)
        x_inv = F.interpolate(x_inv, size=gray.shape[-2:], mode="bilinear", align_corners=False)
        out = lab_to_rgb(torch.cat([lightness, ab.float()], dim=1))
        return image_grid([gray.expand(-1, 3, -1, -1).cpu(), x_inv.cpu(), out.cpu(), rgb.cpu()])

    # --- training --------------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        if c.stage == 1:
            return {"encoder": torch.optim.Adam(self.net.encoder.parameters(), lr=c.e_lr, betas=tuple(c.betas))}
        trained = [p for p in self.net.parameters() if p.requires_grad]
        return {
            "generator": torch.optim.Adam(trained, lr=c.lr, betas=tuple(c.betas)),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=tuple(c.betas)),
        }

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        raise ValueError("gcp trains in a single process (no torchrun)")

    def _decay_learning_rate(self, optimizers: dict[str, torch.optim.Optimizer], step: int) -> None:
        c = self.config
        base = c.e_lr if c.stage == 1 else c.lr
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = base * max(0.0, 1.0 - step / max(c.steps, 1))

    def _loss_features(self, device: torch.device) -> nn.Module:
        """The frozen EfficientNet-Lite0 whose features stand in for VGG19's."""
        return self.frozen_network("lite0_features", lambda: efficientnet_lite("lite0").eval().requires_grad_(False), device)

    def train_step(self, batch, optimizers, step, autocast) -> dict[str, float]:
        self._decay_learning_rate(optimizers, step)
        if self.config.stage == 1:
            return self._train_encoder(batch, optimizers, autocast)
        return self._train_colorization(batch, optimizers, autocast)

    def _train_encoder(self, batch, optimizers, autocast) -> dict[str, float]:
        c = self.config
        rgb, gray = batch["rgb"], batch["gray"]
        labels = self.labels_or_predicted(batch["label"], rgb)
        optimizers["encoder"].zero_grad(set_to_none=True)
        with autocast():
            code = self.net.generator.embedding(labels)
            z = self.net.invert(gray, code)  # [B, z_dim]
            x_inv, _ = generator_features(self.net.generator, z, labels, code)  # [B, 3, S, S]
            with torch.no_grad():
                real = self.prior_discriminator.features(rgb)[-3:]
            fake = self.prior_discriminator.features(x_inv)[-3:]
            inv_ftr = sum((f.float() - r.float()).abs().mean() for f, r in zip(fake, real))
            inv_reg = 0.5 * z.float().norm(dim=1).mean()
            loss = c.inv_ftr_weight * inv_ftr + c.inv_reg_weight * inv_reg
        loss.backward()
        optimizers["encoder"].step()
        return {"e": loss.item(), "inv_ftr": inv_ftr.item(), "inv_reg": inv_reg.item()}

    def _train_colorization(self, batch, optimizers, autocast) -> dict[str, float]:
        c = self.config
        net = self.net
        rgb, gray = batch["rgb"], batch["gray"]
        labels = self.labels_or_predicted(batch["label"], rgb)
        lightness = gray_to_lightness(gray)
        real_lab = rgb_to_lab(rgb.float())
        with torch.no_grad(), autocast():  # E and G are frozen
            code = net.generator.embedding(labels)
            z = net.invert(gray, code)
            x_inv, features = generator_features(net.generator, z, labels, code)
        with autocast():
            if net.align is not None:
                query = net.align.from_gray(gray)
                dom = (query - net.align.from_rgb(rgb)).abs().mean().float()
            else:
                query, dom = None, torch.zeros((), device=rgb.device)
            ab = net.colorizer(lightness, net.guides(gray, x_inv, features, query=query)).float()  # [B, 2, H, W]
        fake_lab = torch.cat([real_lab[:, :1], ab], dim=1)  # D_c judges the chroma, on the true lightness

        optimizers["discriminator"].zero_grad(set_to_none=True)
        with autocast():
            real_scores = self.discriminator(real_lab)
            fake_scores = self.discriminator(fake_lab.detach())
            loss_d = c.adv_weight * torch.stack([((r.float() - 1) ** 2).mean() + (f.float() ** 2).mean()
                                                 for r, f in zip(real_scores, fake_scores)]).mean()
        loss_d.backward()
        optimizers["discriminator"].step()

        optimizers["generator"].zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(False)
        with autocast():
            adv = torch.stack([((f.float() - 1) ** 2).mean() for f in self.discriminator(fake_lab)]).mean()
            output_rgb = lab_to_rgb(torch.cat([lightness, ab], dim=1))
            lite = self._loss_features(rgb.device)
            out_feats = lite.features(output_rgb)
            with torch.no_grad():
                gt_feats = lite.features(rgb)
                inv_feats = lite.features(x_inv.float())
            perc = F.mse_loss(out_feats[_PERC_TAP].float(), gt_feats[_PERC_TAP].float())
            ctx = sum(w * contextual_loss(out_feats[i].float(), inv_feats[i].float()) for i, w in zip(_CTX_TAPS, _CTX_WEIGHTS))
            loss = c.dom_weight * dom + c.perc_weight * perc + c.ctx_weight * ctx + c.adv_weight * adv
        loss.backward()
        self.discriminator.requires_grad_(True)
        optimizers["generator"].step()
        return {"g": loss.item(), "dom": dom.item(), "perc": perc.item(), "ctx": ctx.item(), "g_adv": adv.item(),
                "d": loss_d.item()}
