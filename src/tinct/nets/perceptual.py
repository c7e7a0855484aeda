"""Perceptual (feature) loss on the frozen ImageNet EfficientNet-Lite0.

Stands in for the VGG16 feature losses of the papers (BigColor's perceptual term; the
optional semantic term of ``unet_gan``). Lite0 only: Lite2 is the evaluation judge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import efficientnet_lite


class PerceptualLoss(nn.Module):
    """Mean L1 distance between Lite0 feature maps of two sRGB batches (and, on request, the
    divergence of Lite0's class predictions: :meth:`compare`).

    The network is frozen and kept in eval mode (ImageNet BN statistics) whatever mode the
    caller is in, so gradients flow to the input only.

    Args:
        strides: which feature maps to compare (subset of 2, 4, 8, 16, 32).
    """

    def __init__(self, strides: tuple[int, ...] = (4, 8, 16, 32), pretrained: bool = True):
        super().__init__()
        self.net = efficientnet_lite("lite0", pretrained=pretrained)
        self.net.requires_grad_(False).eval()
        self.indices = [(2, 4, 8, 16, 32).index(s) for s in strides]

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: sRGB [B, 3, H, W] in [0, 1] -> scalar loss (mean over the chosen depths)."""
        return self.compare(output, target, classes=False)[0]

    def compare(self, output: torch.Tensor, target: torch.Tensor, classes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The feature loss and, with ``classes``, the semantic loss from the same forward pass:
        KL(p_target || p_output) between Lite0's ImageNet class distributions (batch mean)."""
        with torch.no_grad():
            target_feats = self.net.features(target)
        output_feats = self.net.features(output)
        feature_loss = torch.stack([(output_feats[i] - target_feats[i]).abs().mean() for i in self.indices]).mean()
        if not classes:
            return feature_loss, None
        with torch.no_grad():
            target_log_p = F.log_softmax(self.net._fc(self.net.pool_head(target_feats[-1])), dim=1)
        output_log_p = F.log_softmax(self.net._fc(self.net.pool_head(output_feats[-1])), dim=1)
        return feature_loss, F.kl_div(output_log_p, target_log_p, log_target=True, reduction="batchmean")
