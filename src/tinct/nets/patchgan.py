"""PatchGAN discriminator (Isola et al.): stacked Conv-BatchNorm-LeakyReLU blocks that
score every receptive-field patch of an image as real or fake."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """PatchGAN on ``in_channels`` inputs.

    ``forward(x)`` maps [B, C, H, W] (values about [-1, 1]) to patch logits
    [B, 1, H/2^n - 2, W/2^n - 2] for ``n = n_down`` strided layers (the logits are raw:
    use BCE-with-logits). Weights start from N(0, 0.02) as in pix2pix.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, n_down: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = width
        for i in range(1, n_down + 1):
            c_out = min(width * 2**i, width * 8)
            stride = 2 if i < n_down else 1
            layers += [nn.Conv2d(c, c_out, 4, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
