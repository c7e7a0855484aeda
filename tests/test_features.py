"""CIC on the Lite0 U-Net, unet_gan at 1/4 resolution, and the frozen-encoder feature cache."""

import contextlib
import json

import pytest
import torch

from tinct.cli import main
from tinct.data import ColorizationDataset, DataConfig
from tinct.features import FeatureCache
from tinct.methods import build_method
from tinct.train import load_checkpoint

TINY_CIC_UNET = {"network": "unet", "decoder_widths": [16, 16, 8, 8, 8], "image_size": 32, "batch_size": 4,
                 "lr": 1e-3, "lr_batch": 4, "prior_images": 8}


def _batch(shard, n=4):
    ds = ColorizationDataset([str(shard)], DataConfig(image_size=32))
    return {k: torch.stack([ds[i][k] for i in range(n)]) for k in ("rgb", "gray", "label")}


@pytest.mark.parametrize("h,w", [(37, 53), (64, 32), (9, 130)])
def test_cic_unet_gives_ab_of_the_input_size_and_range(h, w):
    method = build_method("cic", TINY_CIC_UNET, pretrained=False).eval()
    with torch.no_grad():
        ab = method.predict_ab(torch.rand(2, 1, h, w) * 100, temperature=0.38)
    assert ab.shape == (2, 2, h, w)
    assert ab.abs().max() <= 110


def test_cic_unet_trains_the_decoder_and_keeps_the_imagenet_encoder(shard):
    torch.manual_seed(0)
    method = build_method("cic", TINY_CIC_UNET, pretrained=True)
    method.set_prior(torch.full((313,), 1 / 313))
    method.train()
    encoder_before = {k: v.clone() for k, v in method.network.unet.encoder.state_dict().items()}
    head_before = method.network.unet.head.weight.clone()
    opt = method.make_optimizers()
    assert all(p.requires_grad for g in opt["network"].param_groups for p in g["params"])
    batch = _batch(shard)
    losses = [method.train_step(batch, opt, step, contextlib.nullcontext)["ce"] for step in range(6)]
    assert losses[-1] < losses[0]
    assert not torch.equal(head_before, method.network.unet.head.weight)
    for k, v in method.network.unet.encoder.state_dict().items():  # weights and BN statistics
        assert torch.equal(v, encoder_before[k]), k


def test_cached_features_give_the_same_step_as_the_encoder(shard):
    """train_step on batch["features"] is the same computation as running the frozen encoder."""
    torch.manual_seed(0)
    a = build_method("cic", TINY_CIC_UNET, pretrained=True)
    b = build_method("cic", TINY_CIC_UNET, pretrained=True)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.set_prior(torch.full((313,), 1 / 313))
        m.train()
    batch = _batch(shard)
    from tinct.color import gray_to_lightness

    with torch.no_grad():
        feats = a.frozen_features(gray_to_lightness(batch["gray"]))
    la = a.train_step(batch, a.make_optimizers(), 0, contextlib.nullcontext)["ce"]
    lb = b.train_step({**batch, "features": feats}, b.make_optimizers(), 0, contextlib.nullcontext)["ce"]
    assert la == pytest.approx(lb, rel=1e-5)
    assert build_method("cic", {"network": "table1", "width": 0.1}, pretrained=False).frozen_features(torch.zeros(1, 1, 32, 32)) is None


def test_feature_cache_builds_once_reuses_and_rebuilds_when_stale(shard, tmp_path):
    method = build_method("cic", TINY_CIC_UNET, pretrained=True).eval()
    ds = ColorizationDataset([str(shard)], DataConfig(image_size=32), train=True, seed=0)
    calls = []

    def encode(lightness):
        calls.append(lightness.shape[0])
        return method.frozen_features(lightness)

    cache = FeatureCache(ds, encode, tmp_path / "c", views=2, encoder_key="k1", batch_size=5)
    assert len(cache) == 2 * len(ds) and sum(calls) == 2 * len(ds)
    item = cache[len(ds) + 3]  # view 1 of image 3: the crop the dataset gives in epoch 1
    ds.set_epoch(1)
    expected = ds[3]
    assert torch.allclose(item["rgb"], expected["rgb"], atol=1 / 255)
    assert [f.shape for f in item["features"]] == [f.shape[1:] for f in method.frozen_features(torch.zeros(1, 1, 32, 32))]
    calls.clear()
    FeatureCache(ds, encode, tmp_path / "c", views=2, encoder_key="k1")
    assert calls == []  # reused
    other = FeatureCache(ds, encode, tmp_path / "c", views=2, encoder_key="k2")
    assert sum(calls) == 2 * len(ds)  # another encoder: built beside the first, which stays
    assert other.folder != cache.folder and (cache.folder / "meta.json").exists()
    assert json.loads((other.folder / "meta.json").read_text())["n"] == 2 * len(ds)


def test_train_cli_with_feature_cache_resumes_and_exports(shard, tmp_path):
    cache = tmp_path / "features"
    args = ["train", "cic", "--data", str(shard), "--out", str(tmp_path / "run"), "--workers", "0", "--no-progress",
            "--checkpoint-every", "2", "--sample-every", "100", "--log-every", "1",
            "--set", f"feature_cache={cache}", "--set", "feature_cache_views=1", "--set", "steps=3"]
    for k, v in TINY_CIC_UNET.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    built = list(cache.glob("*/meta.json"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert main(args[:-2] + ["--set", "steps=5", "--resume"]) == 0
    assert list(cache.glob("*/meta.json")) == built and built[0].stat().st_mtime_ns == stamp  # the resumed run reuses it
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 5
    assert ckpt["data_images"] == len(ColorizationDataset([str(shard)], DataConfig(image_size=32)))  # images, not cached crops
    assert main(["export", str(tmp_path / "run"), "--name", "cu", "--dest", str(tmp_path / "w")]) == 0
    from tinct.pipeline import Colorizer
    from conftest import color_image

    out = Colorizer(str(tmp_path / "w" / "cu.safetensors"), size=32).colorize(color_image(50, 41).convert("L"))
    assert out.size == (50, 41)


def test_feature_cache_needs_a_frozen_encoder(shard, tmp_path):
    args = ["train", "cic", "--data", str(shard), "--out", str(tmp_path / "run"), "--workers", "0", "--no-progress",
            "--set", f"feature_cache={tmp_path / 'f'}", "--set", "freeze_encoder=false", "--set", "steps=1"]
    for k, v in TINY_CIC_UNET.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 2


def test_unet_gan_at_quarter_resolution(shard):
    method = build_method("unet_gan", {"decoder_widths": [16, 16, 8, 8, 8], "out_stride": 4, "freeze_encoder": True,
                                       "pretrain_steps": 10}, pretrained=False)
    assert not hasattr(method.generator, "up2")
    with torch.no_grad():
        ab = method.eval().predict_ab(torch.rand(1, 1, 45, 70) * 100)
    assert ab.shape == (1, 2, 45, 70)
    method.train()
    losses = method.train_step(_batch(shard), method.make_optimizers(), 0, contextlib.nullcontext)
    assert losses["l1"] > 0
