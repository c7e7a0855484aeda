"""EfficientNet-Lite0/Lite2 built here load the packaged ImageNet weights and classify."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEV_SET
from tinct.evaluate import classification_crop
from tinct.nets.efficientnet import efficientnet_lite, imagenet_class_names


def test_feature_strides_and_channels():
    net = efficientnet_lite("lite0", pretrained=False).eval()
    feats = net.features(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in feats] == net.feature_channels == [16, 24, 40, 112, 320]
    assert net(torch.rand(2, 3, 224, 224)).shape == (2, 1000)


def test_lite2_layout_loads_strictly():
    net = efficientnet_lite("lite2")
    assert net.feature_channels == [16, 24, 48, 120, 352]
    assert len(net._blocks) == 1 + 3 + 3 + 4 + 4 + 5 + 1


def test_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[1] == "goldfish"


@pytest.mark.skipif(not DEV_SET.exists(), reason="dev set ../shared/data/imagenet-sample-256 not present")
def test_lite0_top1_on_dev_set():
    net = efficientnet_lite("lite0").eval()
    files = sorted(DEV_SET.glob("*.jpg"))
    correct = total = 0
    batch, labels = [], []
    with torch.inference_mode():
        for i, path in enumerate(files):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            from tinct.data import colorfulness

            if colorfulness(rgb) < 1:
                continue
            batch.append(classification_crop(rgb))
            labels.append(int(path.name.split("_")[0]))
            if len(batch) == 50 or i == len(files) - 1:
                x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
                pred = net(x).argmax(1)
                correct += int((pred == torch.tensor(labels)).sum())
                total += len(labels)
                batch, labels = [], []
    assert total > 400
    assert correct / total >= 0.75
