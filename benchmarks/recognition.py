"""How much of a gray photo an ImageNet classifier recognizes at each resolution (not a test).

    python benchmarks/recognition.py [--data ../shared/data/imagenet-sample-256] [--model unet_gan]

A colorizer can only give an object its color if it knows what the object is. This prints the
top-1 accuracy of the frozen ImageNet EfficientNet-Lite0 (the network the colorizers build on,
not the evaluation judge Lite2) on the gray inputs of the protocol, seen
- as the protocol's 224 center crop,
- as the whole image squeezed to 224 x 224 (what ``semantic_view=224`` gives a model),
- from a whole-image copy at a working resolution S (S x S, upsampled back to 224 x 224),
and, with ``--model``, the same 224 crop through that colorizer's fine-tuned U-Net encoder
with Lite0's original ImageNet head (how much of the encoder's ImageNet meaning survived
training). Labels come from the dev-set file names or a shard's ``KEY.cls``, as in ``tinct eval``;
images without a label are left out.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from tinct.evaluate import classification_crop, gray_of, load_ground_truth
from tinct.nets.efficientnet import efficientnet_lite
from tinct.weights import load_inference_state


def top1(net: torch.nn.Module, images: torch.Tensor, labels: np.ndarray) -> float:
    """images: gray [N, 1, 224, 224] in [0, 1]."""
    with torch.inference_mode():
        logits = torch.cat([net(images[i:i + 50].expand(-1, 3, -1, -1)) for i in range(0, len(images), 50)])
    return float((logits.argmax(1).numpy() == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/imagenet-sample-256")
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--model", default=None, help="a U-Net model (unet_gan, cic with network unet) whose encoder to probe")
    args = parser.parse_args()

    samples, _, _ = load_ground_truth(args.data)
    samples = [s for s in samples if s.label >= 0]  # shards where only some images carry a .cls
    labels = np.array([s.label for s in samples])
    grays = [torch.from_numpy(gray_of(s.gt))[None, None] for s in samples]

    def whole(size: int) -> torch.Tensor:
        return torch.cat([F.interpolate(g, size=(size, size), mode="bilinear", antialias=True, align_corners=False) for g in grays])

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)

    crops = torch.stack([torch.from_numpy(classification_crop((g[0, 0].numpy() * 255 + 0.5).astype(np.uint8)[..., None].repeat(3, 2))[..., 0].copy()) for g in grays])
    crops = crops[:, None].float() / 255.0
    lite0 = efficientnet_lite("lite0").eval()
    print(f"{len(samples)} gray images of {args.data}; EfficientNet-Lite0 top-1:")
    print(f"  224 center crop (the protocol's):        {top1(lite0, crops, labels):.3f}")
    print(f"  whole image at 224 x 224:                {top1(lite0, whole(224), labels):.3f}")
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"  whole image at {size:3d} x {size:<3d}, upsampled:     {top1(lite0, up(whole(size)), labels):.3f}")
    if args.model:
        state, _ = load_inference_state(args.model)
        probe = efficientnet_lite("lite0").eval()
        # "encoder.*" (unet_gan) or "unet.encoder.*" (cic on the U-Net)
        encoder = {k.split("encoder.", 1)[1]: v.float() for k, v in state.items() if "encoder." in k}
        probe.load_state_dict(encoder, strict=False)  # the head (conv, BN, fc) stays ImageNet's
        print(f"  224 crop, {args.model} encoder + ImageNet head: {top1(probe, crops, labels):.3f}")


if __name__ == "__main__":
    main()
