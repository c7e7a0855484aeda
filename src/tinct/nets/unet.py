"""U-Net on a pretrained EfficientNet-Lite0 encoder, shared by ``unet_gan`` and ``cic``.

The encoder sees the gray image as RGB and gives features at strides 2, 4, 8, 16 and 32;
the decoder upsamples x2 per block, concatenating the encoder feature of the same stride,
down to ``out_stride`` (1: full resolution, with the input L as the last skip; 4: a quarter
of the input, as CIC's network predicts). ``encode`` and ``decode`` are separate so that a
frozen encoder's features can be computed once and cached (:mod:`tinct.features`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import efficientnet_lite

__all__ = ["Lite0UNet", "UpBlock", "SEMANTIC_CHANNELS"]

SEMANTIC_CHANNELS = 1280  # Lite0's pooled head features


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """Upsample x2, concatenate the skip feature, two conv-BN-ReLU."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(c_in + c_skip, c_out), _conv_bn_relu(c_out, c_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class Lite0UNet(nn.Module):
    """L [B, 1, H, W] in [0, 100] -> [B, out_channels, H / out_stride, W / out_stride].

    H and W must be multiples of 32 (the methods pad). ``out_channels`` = 2 with ``tanh``
    gives ab / 110 in [-1, 1] (``unet_gan``); 313 raw logits give CIC's bin distribution.
    ``decoder_widths`` are the channels at strides 16, 8, 4, 2, 1 (only those down to
    ``out_stride`` are used).
    """

    STRIDES = (16, 8, 4, 2, 1)

    def __init__(self, decoder_widths: tuple[int, ...] = (160, 96, 64, 32, 16), pretrained: bool = True,
                 freeze_encoder: bool = False, semantic: bool = False, out_channels: int = 2, out_stride: int = 1,
                 tanh: bool = True):
        super().__init__()
        if out_stride not in (1, 4):
            raise ValueError(f"out_stride must be 1 or 4, got {out_stride}")
        self.freeze_encoder = freeze_encoder
        self.out_stride = out_stride
        self.tanh = tanh
        self.encoder = efficientnet_lite("lite0", pretrained=pretrained)
        # the classification head is not part of the U-Net
        del self.encoder._conv_head, self.encoder._bn1, self.encoder._fc
        skips = self.encoder.feature_channels  # strides 2, 4, 8, 16, 32
        w16, w8, w4, w2, w1 = decoder_widths
        self.up16 = UpBlock(skips[4], skips[3], w16)
        self.up8 = UpBlock(w16, skips[2], w8)
        self.up4 = UpBlock(w8, skips[1], w4)
        last = w4
        if out_stride == 1:
            self.up2 = UpBlock(w4, skips[0], w2)
            self.up1 = UpBlock(w2, 1, w1)
            last = w1
        self.head = nn.Conv2d(last, out_channels, 3 if out_stride == 1 else 1, padding=1 if out_stride == 1 else 0)
        self.fuse = None
        if semantic:
            self.fuse = nn.Linear(SEMANTIC_CHANNELS, skips[4])
            nn.init.zeros_(self.fuse.weight)  # a fine-tune starts from the trained model's outputs
            nn.init.zeros_(self.fuse.bias)
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "Lite0UNet":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its ImageNet BN statistics
        return self

    def encode(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features the decoder uses: strides 2 (only for ``out_stride`` 1), 4, 8, 16, 32."""
        gray = (lightness / 100.0).expand(-1, 3, -1, -1)  # gray proxy for the RGB encoder
        feats = self.encoder.features(gray)
        return feats if self.out_stride == 1 else feats[1:]

    def decode(self, feats: list[torch.Tensor], lightness: torch.Tensor | None = None,
               semantic: torch.Tensor | None = None) -> torch.Tensor:
        """``feats`` from :meth:`encode` (or a cache of it); ``lightness`` is needed at out_stride 1."""
        if self.out_stride == 1:
            f2, f4, f8, f16, f32 = feats
        else:
            f4, f8, f16, f32 = feats
        if self.fuse is not None:
            if semantic is None:
                raise ValueError("this network fuses global semantic features: pass semantic=[B, 1280]")
            f32 = f32 + self.fuse(semantic.to(f32.dtype))[:, :, None, None]
        x = self.up16(f32, f16)  # [B, w16, H/16, W/16]
        x = self.up8(x, f8)
        x = self.up4(x, f4)  # [B, w4, H/4, W/4]
        if self.out_stride == 1:
            x = self.up2(x, f2)
            x = self.up1(x, lightness / 50.0 - 1.0)  # [B, w1, H, W]
        x = self.head(x)
        return torch.tanh(x) if self.tanh else x

    def forward(self, lightness: torch.Tensor, semantic: torch.Tensor | None = None) -> torch.Tensor:
        """``semantic``: [B, 1280] global features (required when built with ``semantic=True``)."""
        if self.freeze_encoder:
            with torch.no_grad():  # nothing in a frozen encoder needs a graph
                feats = self.encode(lightness)
        else:
            feats = self.encode(lightness)
        return self.decode(feats, lightness, semantic)
