"""Shared fixtures: tiny random-weight models and small images made on the fly."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEV_SET = SHARED_DATA / "imagenet-sample-256"
TINY_IMAGENET = SHARED_DATA / "tiny-imagenet-200"

TINY_UNET = {"decoder_widths": [16, 16, 8, 8, 8], "disc_width": 8, "image_size": 32, "batch_size": 4, "steps": 4, "pretrain_steps": 2}


def color_image(w: int = 48, h: int = 40, seed: int = 0) -> Image.Image:
    """A smooth colorful RGB test image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (np.sin(x / 7 + seed) * 0.5 + 0.5) * 255
    g = (np.cos(y / 5) * 0.5 + 0.5) * 255
    b = ((x + y) / (w + h)) * 255
    arr = np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An exported unet_gan with random weights and tiny decoder: a real .safetensors + card."""
    from tinct.methods import build_method
    from tinct.train import save_checkpoint_atomic
    from tinct.weights import export_run

    torch.manual_seed(0)
    method = build_method("unet_gan", TINY_UNET, pretrained=False)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint_atomic(
        {"method": "unet_gan", "config": dataclasses.asdict(method.config), "step": 0, "model": method.state_dict(),
         "ema": method.generator.state_dict(), "optimizers": {}, "data": ["synthetic"], "data_images": 0, "data_dropped_gray": 0},
        run / "checkpoint.pt",
    )
    return export_run(run, "tiny", dest=tmp_path_factory.mktemp("weights"), working_size=32)


@pytest.fixture(scope="session")
def shard(tmp_path_factory) -> Path:
    """A WebDataset-style .tar.gz with 12 color and 3 gray images + .cls labels."""
    path = tmp_path_factory.mktemp("shards") / "train-0000.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i in range(15):
            im = color_image(40, 40, seed=i)
            if i >= 12:
                im = im.convert("L").convert("RGB")
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=95)
            for name, data in ((f"s{i:03d}.jpg", buf.getvalue()), (f"s{i:03d}.cls", str(i % 5).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's ~/.cache/tinct."""
    monkeypatch.setenv("TINCT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
