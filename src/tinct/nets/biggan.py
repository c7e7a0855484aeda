"""BigGAN building blocks (Brock et al.), shared by the ``prior``, ``bigcolor`` and ``gcp`` methods.

- spectral-normalized layers (:func:`spectral_normed`, :func:`sn_conv`, :func:`sn_linear`),
  orthogonally initialized before the norm is attached;
- :class:`ConditionalBatchNorm`: batch norm whose gain and bias are linear in a condition vector;
- :class:`GBlock` / :class:`DBlock`: the generator's up-sampling and the discriminator's
  down-sampling residual blocks;
- :class:`SelfAttention`: the SAGAN non-local block with a learned gate starting at 0;
- :class:`ClassEmbedding`: the shared class embedding ``c = A(class)`` over the 1000 ImageNet
  classes, as a learned linear map of a fixed semantic code of every class (the principal
  components of EfficientNet-Lite0's classifier weights), so that classes never seen in
  training still get a code near the classes they resemble;
- :func:`orthogonal_init`; :func:`truncated_normal` for sampling with truncation;
- the networks built from them: :class:`BigGANGenerator` (class-conditional, hierarchical z;
  :meth:`BigGANGenerator.synthesize` runs its blocks from any feature map, as BigColor's G),
  :class:`ProjectionDiscriminator`, their :func:`channel_plan` and :func:`hinge_d_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .efficientnet import efficientnet_lite

__all__ = [
    "spectral_normed", "sn_conv", "sn_linear", "ConditionalBatchNorm", "GBlock", "DBlock", "SelfAttention", "ClassEmbedding",
    "orthogonal_init", "truncated_normal", "class_semantic_codes", "NUM_CLASSES", "channel_plan", "BigGANGenerator",
    "ProjectionDiscriminator", "hinge_d_loss",
]

NUM_CLASSES = 1000


def _orthogonal(layer: nn.Module) -> nn.Module:
    """BigGAN's initialization of one layer: orthogonal weight, zero bias."""
    nn.init.orthogonal_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def spectral_normed(layer: nn.Module) -> nn.Module:
    """``layer`` orthogonally initialized, then spectral-normalized: the norm's power iteration
    starts from the final weights (re-initializing afterwards would leave it a stale sigma, and
    eval-mode sampling before training would overflow)."""
    return spectral_norm(_orthogonal(layer), eps=1e-6)


def sn_conv(c_in: int, c_out: int, kernel: int = 3, padding: int | None = None, stride: int = 1) -> nn.Module:
    return spectral_normed(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding))


def sn_linear(c_in: int, c_out: int, bias: bool = True) -> nn.Module:
    return spectral_normed(nn.Linear(c_in, c_out, bias=bias))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then ``x * (1 + gain(y)) + bias(y)``.

    x [B, C, H, W]; y [B, cond_dim] (BigGAN: a z chunk concatenated with the class code).
    """

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=1e-4, momentum=0.1)
        self.gain = sn_linear(cond_dim, channels, bias=False)
        self.bias = sn_linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(y)[:, :, None, None]
        return self.bn(x) * gain + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """BigGAN generator block: CBN-ReLU-(up x2)-conv3-CBN-ReLU-conv3, plus an up-sampled 1x1 skip.

    [B, c_in, H, W] -> [B, c_out, 2H, 2W] (or H, W when ``upsample`` is False).
    """

    def __init__(self, c_in: int, c_out: int, cond_dim: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.conv1 = sn_conv(c_in, c_out)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)
        self.conv2 = sn_conv(c_out, c_out)
        self.skip = sn_conv(c_in, c_out, 1) if c_in != c_out or upsample else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.skip(x)


class DBlock(nn.Module):
    """BigGAN discriminator block: (ReLU)-conv3-ReLU-conv3-(avgpool /2), plus a 1x1 skip.

    [B, c_in, H, W] -> [B, c_out, H/2, W/2] (or H, W when ``downsample`` is False).
    The first block of a discriminator skips the leading ReLU (``preactivation=False``).
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool = True, preactivation: bool = True):
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = sn_conv(c_in, c_out)
        self.conv2 = sn_conv(c_out, c_out)
        self.skip = sn_conv(c_in, c_out, 1) if c_in != c_out or downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.preactivation:
            skip = self.skip(x)
            skip = F.avg_pool2d(skip, 2) if self.downsample else skip
        else:
            skip = self.skip(F.avg_pool2d(x, 2) if self.downsample else x)
        return h + skip


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``x + gamma * o(softmax(theta^T phi) g)``, gamma starts at 0.

    [B, C, H, W] -> same shape; keys and values are max-pooled x2 to save memory.
    """

    def __init__(self, channels: int):
        super().__init__()
        key, value = max(channels // 8, 1), max(channels // 2, 1)
        self.theta = sn_conv(channels, key, 1, 0)
        self.phi = sn_conv(channels, key, 1, 0)
        self.g = sn_conv(channels, value, 1, 0)
        self.o = sn_conv(value, channels, 1, 0)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [B, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [B, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [B, C/2, HW/4]
        attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, HW, HW/4]
        out = (g @ attention.transpose(1, 2)).view(b, -1, h, w)
        return x + self.gamma * self.o(out)


def class_semantic_codes(dim: int = 256, pretrained: bool = True) -> torch.Tensor:
    """A fixed semantic code [1000, dim] per ImageNet class: the first ``dim`` principal
    components of EfficientNet-Lite0's classifier weight rows (unit-variance columns).
    Random (seeded) codes when ``pretrained`` is False, for tests."""
    if not pretrained:
        return torch.randn(NUM_CLASSES, dim, generator=torch.Generator().manual_seed(0))
    weight = efficientnet_lite("lite0", pretrained=True)._fc.weight.detach().double()  # [1000, 1280]
    centered = weight - weight.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centered, full_matrices=False)
    codes = u[:, :dim] * s[:dim]
    return (codes / codes.std(dim=0, keepdim=True)).float()


class ClassEmbedding(nn.Module):
    """The shared class embedding A: class index [B] (or class probabilities [B, 1000]) ->
    class code c [B, dim].

    ``c = W code(class)``: a learned linear map of the fixed semantic code of the class
    (a buffer, saved with the model), so unseen classes land near similar seen ones.
    """

    def __init__(self, dim: int = 128, code_dim: int = 256, pretrained: bool = True):
        super().__init__()
        self.register_buffer("codes", class_semantic_codes(code_dim, pretrained))
        self.project = nn.Linear(code_dim, dim, bias=False)

    def forward(self, classes: torch.Tensor) -> torch.Tensor:
        if classes.dim() == 2:  # a distribution over classes: the expected code
            return self.project(classes.to(self.codes.dtype) @ self.codes)
        return self.project(self.codes[classes])


def orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialization for every conv, linear and embedding layer of ``module`` without
    spectral norm (the spectral-normed ones were initialized by :func:`spectral_normed`)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and not parametrize.is_parametrized(m):
            _orthogonal(m)


def truncated_normal(shape: tuple[int, ...], truncation: float = 0.0, sigma: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of N(0, sigma^2); with ``truncation`` > 0 every value beyond ``truncation`` (in
    units of sigma) is redrawn (BigGAN's truncation trick)."""
    z = torch.randn(shape, generator=generator)
    if truncation > 0:
        for _ in range(100):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        z = z.clamp(-truncation, truncation)
    return z * sigma


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


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
