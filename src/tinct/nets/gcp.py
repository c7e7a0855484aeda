"""Networks of GCP-Colorization (Wu et al., papers/gcp-colorization.txt) on tinct's BigGAN prior.

- :class:`GanEncoder` E: gray [B, 1, S, S] and class code -> latent z [B, z_dim] of the prior's
  generator G (a BigGAN-discriminator-like stack of residual down-sampling blocks, the class
  code injected by conditional batch norm as in G).
- :func:`generator_features`: G(z, class) -> the inversion image x_inv [B, 3, S, S] and G's
  intermediate features F_GAN at S/4, S/2 and S (the outputs of its last three blocks).
- :class:`FeatureAlignment`: F_L->S and F_RGB->S, two feature extractors with a shared backbone
  (the frozen ImageNet EfficientNet-Lite0 up to stride 16, standing in for the paper's ImageNet
  backbone) and one head each, mapping the gray input and a color image to one space at 1/4
  resolution; :func:`correlation` (softmax over cosine similarities / temperature) and
  :func:`warp` carry F_GAN at each scale onto the input's layout.
- :class:`ColorizationNetwork` C: two down-sampling blocks, six residual blocks and two
  up-sampling blocks (the pix2pixHD layout of the paper), modulated at 1/4, 1/2 and 1 of the
  input's resolution by the aligned GAN features through :class:`SPADE` (or, for the ablation,
  by concatenating them: :class:`ConcatModulation`).
- :class:`MultiScalePatchDiscriminator` D_c: three spectral-normed PatchGANs on the Lab image at
  1, 1/2 and 1/4 scale (LSGAN targets).
- :func:`sefa_directions`: closed-form factorization (SeFa, Shen & Zhou 2021) of the weight of
  G's first layer, the one that maps z: eigenvectors of W^T W, the latent directions that change
  G's output the most, found without labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..color import lightness_to_gray
from .biggan import BigGANGenerator, ConditionalBatchNorm, channel_plan, sn_conv
from .efficientnet import efficientnet_lite

__all__ = [
    "GanEncoder", "generator_features", "FeatureAlignment", "correlation", "warp", "SPADE", "ConcatModulation",
    "ColorizationNetwork", "MultiScalePatchDiscriminator", "GcpNet", "sefa_directions", "contextual_loss",
    "GUIDE_SCALES",
]

#: the GAN feature scales used to guide C, as up-sampling factors of the correlation grid
#: (G's resolution / 4): F_GAN at S/4, S/2 and S modulate C at H/4, H/2 and H
GUIDE_SCALES = (1, 2, 4)


class EncoderBlock(nn.Module):
    """CBN-ReLU-conv3-CBN-ReLU-conv3-avgpool/2 plus a pooled 1x1 skip, conditioned on the class
    code: [B, c_in, H, W] -> [B, c_out, H/2, W/2]."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x, code)))
        h = self.conv2(F.relu(self.bn2(h, code)))
        return F.avg_pool2d(h + self.skip(x), 2)


class GanEncoder(nn.Module):
    """E: gray [B, 1, S, S] in [0, 1] and class code [B, cond_dim] -> z [B, z_dim].

    Mirrors G's channels (e.g. 32, 64, 128, 256, 256 at S = 64, width 16) down to a 4x4 map,
    then ReLU, global average pooling and a linear layer.
    """

    def __init__(self, image_size: int, width: int, cond_dim: int, z_dim: int):
        super().__init__()
        mirrored = list(reversed(channel_plan(image_size, width)))  # [C_n, ..., C_0]
        self.stem = nn.Conv2d(1, mirrored[0], 3, padding=1)
        self.blocks = nn.ModuleList(EncoderBlock(mirrored[i], mirrored[i + 1], cond_dim) for i in range(len(mirrored) - 1))
        self.out = nn.Linear(mirrored[-1], z_dim)

    def forward(self, gray: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.stem(gray * 2 - 1)  # [B, C_n, S, S]
        for block in self.blocks:
            h = block(h, code)  # down to [B, C_0, 4, 4]
        return self.out(F.relu(h).mean(dim=(2, 3)))  # [B, z_dim]


def generator_features(generator: BigGANGenerator, z: torch.Tensor, classes: torch.Tensor,
                       code: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """G(z, classes) -> (x_inv sRGB [B, 3, S, S] in [0, 1], F_GAN): the outputs of G's last three
    blocks, [B, C, S/4, S/4], [B, C', S/2, S/2], [B, C'', S, S] (BigGANGenerator.forward, keeping them).

    ``code``: the class code, when already computed from ``classes``.
    """
    g = generator
    code = g.embedding(classes) if code is None else code
    first, rest = z[:, : g.z_chunk], z[:, g.z_chunk:]
    h = g.linear(first).view(z.shape[0], g.feature_channels, 4, 4)
    chunks = rest.split(g.z_chunk, dim=1)
    features = []
    for i, block in enumerate(g.blocks):
        h = block(h, torch.cat([chunks[i], code], dim=1))
        if i == g.attention_after:
            h = g.attention(h)
        features.append(h)
    rgb = torch.tanh(g.out_conv(F.relu(g.out_bn(h))))
    return (rgb + 1) / 2, features[-len(GUIDE_SCALES):]


class FeatureAlignment(nn.Module):
    """F_L->S and F_RGB->S: gray [B, 1, H, W] or sRGB [B, 3, H, W] in [0, 1] -> features
    [B, dim, H/4, W/4] in one shared space.

    The backbone (EfficientNet-Lite0 up to stride 16; its stride 4, 8 and 16 maps, resized to
    stride 4 and concatenated) is shared and frozen; each domain has its own trained head.
    """

    def __init__(self, dim: int = 64, pretrained: bool = True):
        super().__init__()
        lite = efficientnet_lite("lite0", pretrained=pretrained)
        self.taps = lite.tap_after[1:4]  # the stride 4, 8 and 16 feature maps
        self.backbone = nn.ModuleDict({"stem": lite._conv_stem, "bn": lite._bn0, "blocks": lite._blocks[: self.taps[-1] + 1]})
        self.backbone.requires_grad_(False)
        c_in = sum(lite.feature_channels[1:4])  # 24 + 40 + 112

        def head() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, dim, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(dim, dim, 3, padding=1))

        self.gray_head, self.rgb_head = head(), head()

    def train(self, mode: bool = True) -> "FeatureAlignment":
        super().train(mode)
        self.backbone.eval()  # frozen: ImageNet batch-norm statistics always
        return self

    def shared(self, rgb: torch.Tensor) -> torch.Tensor:
        """The backbone: sRGB [B, 3, H, W] in [0, 1] -> [B, 176, H/4, W/4]."""
        h = F.relu6(self.backbone["bn"](self.backbone["stem"]((rgb * 255.0 - 127.0) / 128.0)))
        taps = []
        for i, block in enumerate(self.backbone["blocks"]):
            h = block(h)
            if i in self.taps:
                taps.append(h)
        size = taps[0].shape[-2:]
        return torch.cat([taps[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in taps[1:]], 1)

    def from_gray(self, gray: torch.Tensor) -> torch.Tensor:
        """F_L->S: gray [B, 1, H, W] -> [B, dim, H/4, W/4] (H, W multiples of 4)."""
        return self.gray_head(self.shared(gray.expand(-1, 3, -1, -1)))

    def from_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """F_RGB->S: sRGB [B, 3, H, W] -> [B, dim, H/4, W/4]."""
        return self.rgb_head(self.shared(rgb))


def correlation(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """The non-local correlation matrix M: for every position u of ``query`` [B, C, h, w], a
    softmax over the positions v of ``key`` [B, C, h', w'] of cos(q_u, k_v) / temperature, both
    centred by their channel mean first (as CoCosNet, Zhang et al. 2020) -> [B, h w, h' w'],
    rows summing to 1. Computed in float32 even under autocast: at temperature 0.01 bfloat16's
    three digits of the cosine would decide the softmax."""
    with torch.autocast(query.device.type, enabled=False):
        q = query.float().flatten(2)
        k = key.float().flatten(2)
        q = F.normalize(q - q.mean(dim=1, keepdim=True), dim=1)
        k = F.normalize(k - k.mean(dim=1, keepdim=True), dim=1)
        return torch.softmax(q.transpose(1, 2) @ k / temperature, dim=-1)


def warp(matrix: torch.Tensor, values: torch.Tensor, query_size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Carry ``values`` [B, C, scale h', scale w'] onto the query's layout with M [B, h w, h' w']
    (query grid ``query_size`` = (h, w)) -> [B, C, scale h, scale w].

    At ``scale`` > 1 every key cell carries its scale x scale patch along (pixel unshuffle, warp,
    pixel shuffle): finer GAN features keep their detail with the one correlation matrix.
    """
    b, c = values.shape[:2]
    cells = F.pixel_unshuffle(values, scale) if scale > 1 else values  # [B, C s^2, h', w']
    moved = cells.flatten(2) @ matrix.transpose(1, 2).to(cells.dtype)  # [B, C s^2, h w]
    moved = moved.view(b, c * scale * scale, *query_size)
    return F.pixel_shuffle(moved, scale) if scale > 1 else moved


class SPADE(nn.Module):
    """Spatially-adaptive denormalization (Park et al. 2019): x [B, C, H, W] normalized by
    parameter-free batch norm, then ``x (1 + gamma(f)) + beta(f)`` with gamma, beta predicted per
    pixel from the guide f [B, C_f, H, W] (here: aligned GAN features)."""

    def __init__(self, channels: int, guide_channels: int, hidden: int = 64):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(guide_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        h = self.shared(guide)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class ConcatModulation(nn.Module):
    """The "without SPADE" ablation: batch norm, then a 3x3 conv of ``cat(x, guide)`` back to
    x's channels. Same signature as :class:`SPADE`."""

    def __init__(self, channels: int, guide_channels: int, hidden: int = 64):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.fuse = nn.Conv2d(channels + guide_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.norm(x), guide], dim=1))


class ModulatedResBlock(nn.Module):
    """mod-ReLU-conv3-mod-ReLU-conv3 + x, both modulations by the same guide (SPADE ResBlk)."""

    def __init__(self, channels: int, guide_channels: int, modulation: type[nn.Module], hidden: int):
        super().__init__()
        self.mod1 = modulation(channels, guide_channels, hidden)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.mod2 = modulation(channels, guide_channels, hidden)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.mod1(x, guide)))
        return x + self.conv2(F.relu(self.mod2(h, guide)))


class ModulatedUpBlock(nn.Module):
    """up x2 (nearest)-conv3, then mod-ReLU with the guide at the new resolution:
    [B, c_in, H, W] -> [B, c_out, 2H, 2W]."""

    def __init__(self, c_in: int, c_out: int, guide_channels: int, modulation: type[nn.Module], hidden: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.mod = modulation(c_out, guide_channels, hidden)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return F.relu(self.mod(h, guide))


class ColorizationNetwork(nn.Module):
    """C: Lab L [B, 1, H, W] in [0, 100] and guides at H/4, H/2, H (channels ``guide_channels``)
    -> ab [B, 2, H, W] in [-110, 110]; H, W multiples of 4.

    conv7 -> two stride-2 down-sampling blocks -> six modulated residual blocks at H/4 ->
    two modulated up-sampling blocks -> conv7 -> 110 tanh.
    """

    def __init__(self, guide_channels: tuple[int, int, int], width: int = 32, hidden: int = 64, spade: bool = True):
        super().__init__()
        modulation = SPADE if spade else ConcatModulation
        w1, w2, w4 = width, width * 2, width * 4
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 7, padding=3), nn.BatchNorm2d(w1), nn.ReLU())
        self.down = nn.Sequential(
            nn.Conv2d(w1, w2, 3, 2, 1), nn.BatchNorm2d(w2), nn.ReLU(),
            nn.Conv2d(w2, w4, 3, 2, 1), nn.BatchNorm2d(w4), nn.ReLU(),
        )
        self.res = nn.ModuleList(ModulatedResBlock(w4, guide_channels[0], modulation, hidden) for _ in range(6))
        self.up1 = ModulatedUpBlock(w4, w2, guide_channels[1], modulation, hidden)
        self.up2 = ModulatedUpBlock(w2, w1, guide_channels[2], modulation, hidden)
        self.out = nn.Conv2d(w1, 2, 7, padding=3)

    def forward(self, lightness: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        h = self.down(self.stem(lightness / 50.0 - 1.0))  # [B, 4w, H/4, W/4]
        for block in self.res:
            h = block(h, guides[0])
        h = self.up1(h, guides[1])  # [B, 2w, H/2, W/2]
        h = self.up2(h, guides[2])  # [B, w, H, W]
        return 110.0 * torch.tanh(self.out(h))  # [B, 2, H, W]


class PatchScale(nn.Module):
    """One spectral-normed PatchGAN: [B, 3, H, W] -> patch scores [B, 1, H/4, W/4]."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            sn_conv(3, width, 4, 1, 2), nn.LeakyReLU(0.2),
            sn_conv(width, width * 2, 4, 1, 2), nn.LeakyReLU(0.2),
            sn_conv(width * 2, width * 4, 3), nn.LeakyReLU(0.2),
            sn_conv(width * 4, 1, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScalePatchDiscriminator(nn.Module):
    """D_c: three PatchGANs with spectral norm on the image at 1, 1/2 and 1/4 scale (pix2pixHD).

    ``forward(lab)``: Lab [B, 3, H, W] (L in [0, 100], ab in [-110, 110]) -> a list of three
    patch-score maps (LSGAN: real -> 1, fake -> 0).
    """

    def __init__(self, width: int = 32, scales: int = 3):
        super().__init__()
        self.scales = nn.ModuleList(PatchScale(width) for _ in range(scales))

    def forward(self, lab: torch.Tensor) -> list[torch.Tensor]:
        x = torch.cat([lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / 110.0], dim=1)
        outputs = []
        for i, d in enumerate(self.scales):
            outputs.append(d(x))
            if i < len(self.scales) - 1:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return outputs


class GcpNet(nn.Module):
    """The inference network: E, the prior's G (frozen), the alignment (when ``align``) and C.

    ``forward(lightness, classes, z=None, z_offset=None, exemplar=None)``:
    L [B, 1, H, W] in [0, 100] (H, W multiples of 4) -> ab [B, 2, H, W] (see :meth:`colorize`).
    """

    def __init__(self, image_size: int = 64, width: int = 16, z_chunk: int = 17, class_dim: int = 128, c_width: int = 32,
                 spade_hidden: int = 64, align_dim: int = 64, temperature: float = 0.01, align: bool = True,
                 spade: bool = True, pretrained: bool = True):
        super().__init__()
        self.image_size = image_size
        self.temperature = temperature
        self.generator = BigGANGenerator(image_size, width, z_chunk, class_dim, pretrained_codes=pretrained)
        self.generator.requires_grad_(False)
        self.z_dim = self.generator.z_dim
        self.encoder = GanEncoder(image_size, width, class_dim, self.z_dim)
        self.align = FeatureAlignment(align_dim, pretrained=pretrained) if align else None
        guide_channels = tuple(channel_plan(image_size, width)[-len(GUIDE_SCALES):])
        self.colorizer = ColorizationNetwork(guide_channels, c_width, spade_hidden, spade=spade)
        self.encoder_frozen = False

    def train(self, mode: bool = True) -> "GcpNet":
        super().train(mode)
        self.generator.eval()  # the prior is frozen, batch-norm statistics included
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def invert(self, gray: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """E on gray [B, 1, h, w] in [0, 1], seen at G's S x S -> z [B, z_dim]."""
        if gray.shape[-2:] != (self.image_size, self.image_size):
            shrink = min(gray.shape[-2:]) > self.image_size
            gray = F.interpolate(gray, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                                 antialias=shrink)
        return self.encoder(gray, code)

    def guides(self, gray: torch.Tensor, x_inv: torch.Tensor, features: list[torch.Tensor],
               query: torch.Tensor | None = None) -> list[torch.Tensor]:
        """F_GAN carried onto the input's layout: guides at H/4, H/2, H for gray [B, 1, H, W] in
        [0, 1] (H, W multiples of 4), from x_inv [B, 3, S, S] and F_GAN (:func:`generator_features`).

        With alignment: warped by the correlation between F_L->S(gray) (``query``, when already
        computed) and F_RGB->S(x_inv); without (ablation): resized to the input's size.
        """
        h, w = gray.shape[-2] // 4, gray.shape[-1] // 4
        if self.align is None:
            return [F.interpolate(f, size=(h * s, w * s), mode="bilinear", align_corners=False)
                    for f, s in zip(features, GUIDE_SCALES)]
        query = self.align.from_gray(gray) if query is None else query
        matrix = correlation(query, self.align.from_rgb(x_inv), self.temperature)
        return [warp(matrix, f, (h, w), s) for f, s in zip(features, GUIDE_SCALES)]

    def colorize(self, lightness: torch.Tensor, classes: torch.Tensor, z: torch.Tensor | None = None,
                 z_offset: torch.Tensor | None = None, exemplar: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """L [B, 1, H, W] in [0, 100] (H, W multiples of 4), classes [B] (or [B, 1000]
        probabilities); z [B, z_dim] (default: E's inversion of the input) plus ``z_offset``;
        ``exemplar`` sRGB [B, 3, S, S] in [0, 1] replaces x_inv in the alignment
        -> (ab [B, 2, H, W] in [-110, 110], x_inv [B, 3, S, S] in [0, 1])."""
        gray = lightness_to_gray(lightness)
        code = self.generator.embedding(classes)
        if z is None:
            z = self.invert(gray, code)
        if z_offset is not None:
            z = z + z_offset
        x_inv, features = generator_features(self.generator, z, classes, code)
        seen = x_inv if exemplar is None else exemplar
        return self.colorizer(lightness, self.guides(gray, seen, features)), x_inv

    def forward(self, lightness: torch.Tensor, classes: torch.Tensor, z: torch.Tensor | None = None,
                z_offset: torch.Tensor | None = None) -> torch.Tensor:
        return self.colorize(lightness, classes, z, z_offset)[0]


@torch.no_grad()
def sefa_directions(generator: BigGANGenerator) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa (Shen & Zhou 2021): the eigenvectors of W^T W, W [C0 16, z_chunk] the weight of G's
    first layer (the linear map of the first z chunk to the 4 x 4 map).

    Returns (directions [z_chunk, z_dim], unit vectors in the full z space, zero outside the
    first chunk, sorted by decreasing eigenvalue; eigenvalues [z_chunk]). Moving z along
    direction k changes that layer's output by sqrt(eigenvalue k) per unit step, the most of any
    direction orthogonal to the ones before it.
    """
    weight = generator.linear.weight.detach().double()  # [C0 16, z_chunk] (spectral-normed: eigenvectors unchanged)
    eigenvalues, eigenvectors = torch.linalg.eigh(weight.T @ weight)  # ascending
    order = eigenvalues.argsort(descending=True)
    vectors = eigenvectors[:, order].T.float()  # [z_chunk, z_chunk], rows orthonormal
    directions = torch.zeros(vectors.shape[0], generator.z_dim)
    directions[:, : generator.z_chunk] = vectors
    return directions, eigenvalues[order].float()


def contextual_loss(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Contextual loss (Mechrez et al. 2018) between feature maps x [B, C, h, w] and y [B, C, h', w']
    (any layouts): ``-log CX``, CX = mean over y's features of the best contextual similarity to
    any of x's. Features centred by y's mean; cosine distances made relative to each x feature's
    nearest y, exponentiated with ``bandwidth`` and normalized over y. -> scalar (mean over B),
    computed in float32 even under autocast."""
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        mu = y.mean(dim=(0, 2, 3), keepdim=True)
        xf = F.normalize((x - mu).flatten(2), dim=1)  # [B, C, N]
        yf = F.normalize((y - mu).flatten(2), dim=1)  # [B, C, M]
        distance = 1.0 - xf.transpose(1, 2) @ yf  # [B, N, M]
        relative = distance / (distance.min(dim=2, keepdim=True).values + eps)
        cx = torch.softmax((1.0 - relative) / bandwidth, dim=2)  # [B, N, M]: exp(.) normalized over y
        similarity = cx.max(dim=1).values.mean(dim=1)  # [B]
        return -torch.log(similarity + eps).mean()
