"""BigColor's networks (Kim et al.; papers/bigcolor-analysis-ipol.txt): the encoder E and the
inference network E + G. The trainer (losses, prior loading, class and z at inference) is
:mod:`tinct.methods.bigcolor`.

- :class:`BigColorEncoder` E: five residual blocks conditioned on the class code (conditional
  BN), average pooling in all but the first: gray [B, 1, H, W] -> f [B, C0, H/16, W/16].
- :class:`BigColorNet`: E and a :class:`~tinct.nets.biggan.BigGANGenerator` G whose blocks run
  from f, each block conditioned on a 17-d chunk of z and the 128-d class code c = A(class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .biggan import BigGANGenerator, ConditionalBatchNorm, channel_plan

__all__ = ["EncoderBlock", "BigColorEncoder", "BigColorNet"]


class EncoderBlock(nn.Module):
    """CBN-ReLU-conv3-CBN-ReLU-conv3-(avgpool /2) plus a 1x1 (pooled) skip; conditioned on c."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x, code)))
        h = self.conv2(F.relu(self.bn2(h, code)))
        skip = self.skip(x)
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class BigColorEncoder(nn.Module):
    """E: gray [B, 1, H, W] in [0, 1] and class code [B, class_dim] -> f [B, C0, H/16, W/16].

    Five residual blocks; the channels mirror the generator's (e.g. 32, 64, 128, 256, 256).
    """

    def __init__(self, channels: list[int], cond_dim: int):
        super().__init__()
        # channels: the generator's, from the 4x4 map down: [C0, C1, C2, C3, C4] (5 entries at 64 px)
        mirrored = list(reversed(channels))  # [C4, C3, C2, C1, C0]
        self.stem = nn.Conv2d(1, mirrored[0], 3, padding=1)
        plan = [(mirrored[0], mirrored[0], False)] + [(mirrored[i], mirrored[i + 1], True) for i in range(len(mirrored) - 1)]
        if len(plan) != 5:
            raise ValueError(f"BigColor's encoder has five blocks; the generator has {len(channels) - 1} (use image_size 64)")
        self.blocks = nn.ModuleList(EncoderBlock(a, b, cond_dim, down) for a, b, down in plan)

    def forward(self, gray: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.stem(gray * 2 - 1)  # [B, C4, H, W]
        for block in self.blocks:
            h = block(h, code)
        return h  # [B, C0, H/16, W/16]


class BigColorNet(nn.Module):
    """E and G with the shared class embedding A (G's): the inference network.

    ``forward(gray, classes, z)``: gray [B, 1, H, W] in [0, 1] (H, W multiples of 16), classes
    [B] indices or [B, 1000] probabilities, z [B, 68] -> sRGB [B, 3, H, W] in [0, 1].
    """

    def __init__(self, image_size: int = 64, width: int = 16, z_chunk: int = 17, class_dim: int = 128, pretrained: bool = True):
        super().__init__()
        self.generator = BigGANGenerator(image_size, width, z_chunk, class_dim, pretrained_codes=pretrained)
        self.encoder = BigColorEncoder(channel_plan(image_size, width), class_dim)
        self.z_dim = z_chunk * self.generator.n_blocks  # 68 for four blocks

    def forward(self, gray: torch.Tensor, classes: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        code = self.generator.embedding(classes)  # [B, 128]
        f = self.encoder(gray, code)  # [B, C0, H/16, W/16]
        return self.generator.synthesize(f, z, code)  # [B, 3, H, W]
