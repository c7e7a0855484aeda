"""The generative color prior (BigGAN) and BigColor: shapes, conditioning, training, CLI."""

import contextlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.color import rgb_to_yuv
from tinct.methods import build_method
from tinct.methods.bigcolor import BigColorEncoder, color_augment
from tinct.nets.biggan import BigGANGenerator, ProjectionDiscriminator, channel_plan
from tinct.nets.biggan import ClassEmbedding, truncated_normal

TINY = {"width": 2, "batch_size": 4, "steps": 2}


def test_generator_encoder_discriminator_shapes():
    torch.manual_seed(0)
    g = BigGANGenerator(64, width=2, pretrained_codes=False)
    assert g.n_blocks == 4 and g.z_dim == 17 * 5
    assert g(torch.randn(3, g.z_dim), torch.tensor([0, 5, 999])).shape == (3, 3, 64, 64)
    e = BigColorEncoder(channel_plan(64, 2), cond_dim=128)
    assert len(e.blocks) == 5 and sum(b.downsample for b in e.blocks) == 4
    f = e(torch.rand(2, 1, 48, 80), torch.randn(2, 128))
    assert f.shape == (2, channel_plan(64, 2)[0], 3, 5)  # 1/16 of the input
    rgb = g.synthesize(f, torch.randn(2, 68), torch.randn(2, 128))
    assert rgb.shape == (2, 3, 48, 80) and rgb.min() >= 0 and rgb.max() <= 1
    d = ProjectionDiscriminator(64, width=2)
    assert d(torch.rand(3, 3, 64, 64), torch.tensor([1, 2, 3])).shape == (3,)


def test_untrained_generator_samples_are_finite_in_eval_mode():
    # spectral norm must be re-estimated after orthogonal init, or eval-mode sampling overflows
    torch.manual_seed(0)
    g = BigGANGenerator(64, width=4, pretrained_codes=False).eval()
    with torch.no_grad():
        x = g(torch.randn(8, g.z_dim), torch.arange(8) * 100)
    assert torch.isfinite(x).all()
    assert ((x == 0) | (x == 1)).float().mean() < 0.2  # not clipped everywhere


def test_every_z_chunk_and_the_class_condition_the_generator():
    torch.manual_seed(0)
    g = BigGANGenerator(64, width=2, pretrained_codes=False).eval()
    z = torch.randn(1, g.z_dim)
    y = torch.tensor([7])
    with torch.no_grad():
        base = g(z, y)
        for k in range(5):  # the 4x4 map's chunk and the four blocks' chunks
            z2 = z.clone()
            z2[:, 17 * k:17 * (k + 1)] += 1.0
            assert not torch.allclose(g(z2, y), base, atol=1e-6), f"chunk {k} has no effect"
        assert not torch.allclose(g(z, torch.tensor([300])), base, atol=1e-6)


def test_class_embedding_indices_and_distributions():
    emb = ClassEmbedding(128, pretrained=False)
    y = torch.tensor([3, 998])
    codes = emb(y)
    assert codes.shape == (2, 128)
    one_hot = torch.nn.functional.one_hot(y, 1000).float()
    assert torch.allclose(emb(one_hot), codes, atol=1e-5)
    assert not torch.allclose(codes[0], codes[1])


def test_semantic_codes_put_similar_classes_closer():
    emb = ClassEmbedding(128, pretrained=True)
    c = emb.codes
    cos = lambda i, j: float(torch.nn.functional.cosine_similarity(c[i], c[j], dim=0))  # noqa: E731
    # tabby cat (281) is nearer tiger cat (282) than a container ship (510)
    assert cos(281, 282) > cos(281, 510)


def test_truncation_bounds_samples():
    z = truncated_normal((2000, 17), truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    assert truncated_normal((4, 3), sigma=3.0).shape == (4, 3)


def test_color_augmentation_scales_chroma_in_yuv():
    rgb = torch.tensor([0.5, 0.4, 0.45]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    aug = color_augment(rgb, 1.2)
    yuv, yuv_aug = rgb_to_yuv(rgb), rgb_to_yuv(aug)
    assert torch.allclose(yuv_aug[:, 0], yuv[:, 0], atol=1e-5)
    assert torch.allclose(yuv_aug[:, 1:], 1.2 * yuv[:, 1:], atol=1e-5)
    gray = torch.full((1, 3, 2, 2), 0.3)
    assert torch.allclose(color_augment(gray), gray, atol=1e-6)


def _batch(n=4, size=64):
    rgb = torch.stack([torch.from_numpy(np.asarray(color_image(size, size, seed=i), np.float32) / 255).permute(2, 0, 1) for i in range(n)])
    gray = (rgb * torch.tensor([0.2989, 0.587, 0.114]).view(3, 1, 1)).sum(1, keepdim=True)
    return {"rgb": rgb, "gray": gray, "label": torch.tensor([1, 2, -1, 4])}  # -1: classified by Lite0


@pytest.mark.parametrize("name", ["prior", "bigcolor"])
def test_train_step_updates_the_networks(name):
    torch.manual_seed(0)
    method = build_method(name, TINY, pretrained=False)
    opts = method.make_optimizers()
    inference = method.inference_module()
    before_g = [p.detach().clone() for p in inference.parameters()]
    before_d = [p.detach().clone() for p in method.discriminator.parameters()]
    losses = {}
    for step in range(2):
        losses = method.train_step(_batch(), opts, step, contextlib.nullcontext)
    assert all(np.isfinite(v) for v in losses.values())
    assert "d" in losses and "g" in losses
    assert any(not torch.equal(a, b) for a, b in zip(before_g, inference.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, method.discriminator.parameters()))
    if name == "bigcolor":
        assert {"mse", "perceptual", "g_adv"} <= set(losses)
        assert losses["g"] == pytest.approx(losses["mse"] + 0.2 * losses["perceptual"] + 0.03 * losses["g_adv"], rel=1e-4)


def test_bigcolor_class_override_and_z_change_the_output():
    torch.manual_seed(0)
    method = build_method("bigcolor", TINY, pretrained=False).eval()
    lightness = torch.rand(1, 1, 40, 56) * 100
    with torch.no_grad():
        a = method.predict_ab(lightness, class_index=1)
        b = method.predict_ab(lightness, class_index=500)
        c = method.predict_ab(lightness, class_index=1, seed=1, sigma=3.0)
        auto = method.predict_ab(lightness)
    assert a.shape == auto.shape == (1, 2, 40, 56)
    assert not torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)


def test_bigcolor_classifies_the_full_resolution_view_when_given(monkeypatch):
    method = build_method("bigcolor", TINY, pretrained=False).eval()
    seen = []
    monkeypatch.setattr(type(method), "classify", lambda self, x: seen.append(tuple(x.shape)) or torch.eye(1000)[[7]].expand(x.shape[0], -1))
    lightness = torch.rand(1, 1, 40, 56) * 100
    with torch.no_grad():
        method.predict_ab(lightness)
        method.predict_ab(lightness, semantic_gray=torch.rand(1, 1, 224, 224))
    assert seen == [(1, 1, 40, 56), (1, 1, 224, 224)] and method.semantic_view == 224


def test_bigcolor_variants():
    method = build_method("bigcolor", TINY, pretrained=False)
    variants = method.inference_variants({"samples": 3, "top_k": 2, "sigma": 3.0})
    assert [s for s, _ in variants] == ["_top1_s0", "_top1_s1", "_top1_s2", "_top2_s0", "_top2_s1", "_top2_s2"]
    assert {o["seed"] for _, o in variants} == {0, 1, 2} and {o["top_rank"] for _, o in variants} == {0, 1}
    assert all(o["sigma"] == 3.0 for _, o in variants)
    with pytest.raises(ValueError, match="top-k"):
        method.inference_variants({"top_k": 2, "class_index": 3})


def _train(method, data, out, *extra):
    args = ["train", method, "--data", str(data), "--out", str(out), "--workers", "0", "--no-progress"]
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return main(args + list(extra))


def test_cli_prior_sample_then_bigcolor_from_the_prior(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        color_image(72, 72, seed=i).save(data / f"{i:03d}_n0000000{i}_thing.png")  # class from the name
    prior_run = tmp_path / "prior"
    assert _train("prior", data, prior_run) == 0
    grid = tmp_path / "grid.png"
    assert main(["sample", "--model", str(prior_run), "--class", "goldfish", "--n", "4", "-o", str(grid)]) == 0
    assert Image.open(grid).size == (128, 128)  # 2 x 2 samples of 64 px
    assert main(["sample", "--model", str(prior_run), "--class", "no such class xyz", "--n", "4", "-o", str(tmp_path / "g2.png")]) == 2
    assert "unknown ImageNet class" in capsys.readouterr().err
    # a prior is not a colorizer
    img = tmp_path / "in.png"
    color_image(50, 40).convert("L").save(img)
    assert main(["colorize", str(img), "-o", str(tmp_path / "x"), "--model", str(prior_run), "--no-progress"]) == 2
    assert "not a colorizer" in capsys.readouterr().err

    bc_run = tmp_path / "bigcolor"
    assert _train("bigcolor", data, bc_run, "--set", f"prior={prior_run}", "--set", "steps=0") == 0
    from tinct.train import load_checkpoint

    prior_g = load_checkpoint(prior_run)["ema"]
    bc = load_checkpoint(bc_run)["model"]
    assert all(torch.equal(v, bc[f"net.generator.{k}"]) for k, v in prior_g.items())  # G starts from the prior

    assert main(["export", str(bc_run), "--name", "tiny_bc", "--dest", str(tmp_path / "w"), "--working-size", "48"]) == 0
    model = str(tmp_path / "w" / "tiny_bc.safetensors")
    out = tmp_path / "out"
    assert main(["colorize", str(img), "-o", str(out), "--model", model, "--samples", "2", "--sigma", "3", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in_s0.png", "in_s1.png"]
    s0, s1 = (np.asarray(Image.open(out / f"in_s{k}.png"), np.int16) for k in (0, 1))
    assert s0.shape == (40, 50, 3) and np.abs(s0 - s1).max() > 0
    assert main(["colorize", str(img), "-o", str(out), "--model", model, "--top-k", "2", "--no-progress"]) == 0
    assert (out / "in_top1.png").exists() and (out / "in_top2.png").exists()
    ref = tmp_path / "ref.png"
    color_image(60, 60, seed=3).save(ref)
    assert main(["colorize", str(img), "-o", str(tmp_path / "o2"), "--model", model, "--reference", str(ref), "--no-progress"]) == 0
    assert main(["colorize", str(img), "-o", str(tmp_path / "o3"), "--model", model, "--class", "tabby", "--no-progress"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / d / "in.png")) for d in ("o2", "o3"))
    assert a.shape == b.shape == (40, 50, 3)
