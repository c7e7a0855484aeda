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
- :func:`orthogonal_init`; :func:`truncated_normal` for sampling with truncation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "spectral_normed", "sn_conv", "sn_linear", "ConditionalBatchNorm", "GBlock", "DBlock", "SelfAttention", "ClassEmbedding",
    "orthogonal_init", "truncated_normal", "class_semantic_codes", "NUM_CLASSES",
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
    from .efficientnet import efficientnet_lite

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
