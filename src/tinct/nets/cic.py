"""CIC's networks (Zhang et al., papers/cic-reproduction.txt): L -> logits over the Q ab bins
(:func:`tinct.color.ab_bins`) at 1/4 resolution. The trainer (losses, prior, decoding) is
:mod:`tinct.methods.cic`.

- :class:`CICNet`: the network of the paper's Table 1;
- :class:`CICUNet`: the same classification on the ImageNet EfficientNet-Lite0 U-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from ..color import ab_bins
from .unet import Lite0UNet

__all__ = ["CICNet", "CICUNet"]


class CICNet(nn.Module):
    """The network of Table 1: L [B, 1, H, W] in [0, 100] -> bin logits [B, Q, H/4, W/4].

    H and W must be multiples of 8 (:meth:`CIC.predict_ab` pads). ``width`` scales every
    layer's channels (1.0: 64, 128, 256, 512, 512, 512, 512, 256). The bin centers, the
    training prior and the rebalancing weights are buffers, so they are saved with the model.
    """

    # (convs, channels, stride of the last conv, dilation) for conv1..conv7
    BLOCKS = ((2, 64, 2, 1), (2, 128, 2, 1), (3, 256, 2, 1), (3, 512, 1, 1), (3, 512, 1, 2), (3, 512, 1, 2), (3, 512, 1, 1))
    CONV8 = 256

    def __init__(self, width: float = 1.0):
        super().__init__()
        bins = ab_bins()
        self.register_buffer("bins", bins)
        self.register_buffer("prior", torch.zeros(bins.shape[0]))
        self.register_buffer("class_weights", torch.ones(bins.shape[0]))
        layers: list[nn.Module] = []
        c_in = 1
        for n_convs, channels, stride, dilation in self.BLOCKS:
            c = max(int(round(channels * width)), 8)
            for i in range(n_convs):
                s = stride if i == n_convs - 1 else 1
                layers += [nn.Conv2d(c_in, c, 3, s, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.BatchNorm2d(c))
        c8 = max(int(round(self.CONV8 * width)), 8)
        layers += [nn.ConvTranspose2d(c_in, c8, 4, 2, 1), nn.ReLU(inplace=True)]  # conv8_1: x2 up
        for _ in range(2):  # conv8_2, conv8_3
            layers += [nn.Conv2d(c8, c8, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c8, bins.shape[0], 1)  # conv8_313

    @property
    def num_bins(self) -> int:
        return self.bins.shape[0]

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        x = self.body(lightness - 50.0)  # [B, C8, H/4, W/4]; Zhang et al. center L at 50
        return self.classifier(x)  # [B, Q, H/4, W/4]


class CICUNet(nn.Module):
    """CIC's classification on a U-Net: L [B, 1, H, W] in [0, 100] -> bin logits [B, Q, H/4, W/4].

    The encoder is the ImageNet EfficientNet-Lite0 (frozen by default, so it keeps what it
    knows about objects); the decoder (:class:`~tinct.nets.unet.Lite0UNet` down to stride 4)
    ends in a 1x1 convolution to the Q bins, at the resolution of the paper's output. H and W
    must be multiples of 32. Bins, prior and rebalancing weights are buffers, as in
    :class:`CICNet`.
    """

    multiple = 32

    def __init__(self, decoder_widths: tuple[int, ...] = (160, 96, 64, 32, 16), pretrained: bool = True,
                 freeze_encoder: bool = True):
        super().__init__()
        bins = ab_bins()
        self.register_buffer("bins", bins)
        self.register_buffer("prior", torch.zeros(bins.shape[0]))
        self.register_buffer("class_weights", torch.ones(bins.shape[0]))
        self.unet = Lite0UNet(decoder_widths, pretrained=pretrained, freeze_encoder=freeze_encoder,
                              out_channels=bins.shape[0], out_stride=4, tanh=False)

    @property
    def num_bins(self) -> int:
        return self.bins.shape[0]

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.unet(lightness)  # [B, Q, H/4, W/4]
