"""Perceptual (feature) and class-consistency losses on the frozen ImageNet EfficientNet-Lite0.

Stands in for the VGG16 feature losses of the papers (BigColor's perceptual term; the
optional feature term of ``unet_gan``). Lite0 only: Lite2 is the evaluation judge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import ImageClassifier, efficientnet_lite


class PerceptualLoss(nn.Module):
    """Mean L1 distance between Lite0 feature maps of two sRGB batches.

    The network is frozen and kept in eval mode (ImageNet BN statistics) whatever mode the
    caller is in, so gradients flow to the input only.

    Args:
        strides: which feature maps to compare (subset of 2, 4, 8, 16, 32).
    """

    def __init__(self, strides: tuple[int, ...] = (4, 8, 16, 32), pretrained: bool = True):
        super().__init__()
        self.net = efficientnet_lite("lite0", pretrained=pretrained)
        del self.net._conv_head, self.net._bn1, self.net._fc
        self.net.requires_grad_(False).eval()
        self.indices = [(2, 4, 8, 16, 32).index(s) for s in strides]

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: sRGB [B, 3, H, W] in [0, 1] -> scalar loss (mean over the chosen depths)."""
        with torch.no_grad():
            target_feats = self.net.features(target)
        output_feats = self.net.features(output)
        losses = [(output_feats[i] - target_feats[i]).abs().mean() for i in self.indices]
        return torch.stack(losses).mean()


def class_consistency_loss(classifier: ImageClassifier, output: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """KL divergence from the frozen classifier's ImageNet class distribution on the ground truth
    to the one on the output (ChromaGAN's class-distribution loss, Vitoria et al. 2020, with an
    off-the-shelf classifier): colors that make objects recognizable as what they are.

    output, target: sRGB [B, 3, H, W] in [0, 1], both resized to ``size`` x ``size`` first (the
    training crops are small and the classifier recognizes little at 64 px) -> scalar, nats per image.
    """
    with torch.no_grad():
        target_probs = torch.softmax(classifier.logits(target, size), dim=1)
    return F.kl_div(torch.log_softmax(classifier.logits(output, size), dim=1), target_probs, reduction="batchmean")
