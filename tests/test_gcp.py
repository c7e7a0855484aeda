"""GCP-Colorization (method ``gcp``): shapes, the two training stages, alignment, inference
options, SeFa directions, ablations, export and the CLI path from a prior to a colorized photo."""

import contextlib
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.methods import build_method
from tinct.methods.gcp import latent_directions, transition_strip
from tinct.nets.biggan import channel_plan
from tinct.nets.gcp import SPADE, ConcatModulation, contextual_loss, correlation, generator_features, sefa_directions, warp

TINY = {"width": 2, "batch_size": 4, "steps": 4, "c_width": 8, "spade_hidden": 8, "align_dim": 8, "d_width": 8,
        "reference_steps": 3}


def _method(stage=2, **extra):
    torch.manual_seed(0)
    return build_method("gcp", {**TINY, "stage": stage, **extra}, pretrained=False)


def _batch(n=4, size=64):
    rgb = torch.stack([torch.from_numpy(np.asarray(color_image(size, size, seed=i), np.float32) / 255).permute(2, 0, 1)
                       for i in range(n)])
    gray = (rgb * torch.tensor([0.2989, 0.587, 0.114]).view(3, 1, 1)).sum(1, keepdim=True)
    return {"rgb": rgb, "gray": gray, "label": torch.tensor([1, 2, 3, 4])[:n]}


def _changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("h, w", [(37, 53), (17, 64), (9, 5)])
def test_predict_ab_has_the_input_shape_and_range(h, w):
    method = _method().eval()
    with torch.inference_mode():
        ab = method.predict_ab(torch.rand(2, 1, h, w) * 100, class_index=3)
    assert ab.shape == (2, 2, h, w)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 110
    assert ab.std() > 0  # not a constant fill


def test_stage1_trains_the_encoder_only():
    method = _method(stage=1).train()
    opts = method.make_optimizers()
    assert list(opts) == ["encoder"]
    before = {k: v.clone() for k, v in method.state_dict().items()}
    for step in range(2):
        losses = method.train_step(_batch(), opts, step, contextlib.nullcontext)
    assert set(losses) == {"e", "inv_ftr", "inv_reg"} and all(np.isfinite(v) for v in losses.values())
    assert losses["e"] == pytest.approx(losses["inv_ftr"] + 0.0125 * losses["inv_reg"], rel=1e-5)
    changed = _changed(before, method.state_dict())
    assert changed and all(k.startswith("net.encoder.") for k in changed), sorted(changed)[:5]
    assert any(k.endswith("weight") for k in changed)
    # the learning rate decays linearly to 0 at the last step
    assert opts["encoder"].param_groups[0]["lr"] == pytest.approx(1e-5 * (1 - 1 / 4))


def test_stage2_trains_alignment_heads_colorizer_and_discriminator_only():
    method = _method(stage=2).train()
    opts = method.make_optimizers()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    losses = {}
    for step in range(2):
        losses = method.train_step(_batch(), opts, step, contextlib.nullcontext)
    assert {"g", "dom", "perc", "ctx", "g_adv", "d"} == set(losses) and all(np.isfinite(v) for v in losses.values())
    assert losses["g"] == pytest.approx(10 * losses["dom"] + 1e-3 * losses["perc"] + 0.1 * losses["ctx"] + losses["g_adv"],
                                        rel=1e-4)
    changed = _changed(before, method.state_dict())
    trained = ("net.colorizer.", "net.align.gray_head.", "net.align.rgb_head.", "discriminator.")
    assert all(k.startswith(trained) for k in changed), sorted(k for k in changed if not k.startswith(trained))[:5]
    for prefix in trained:
        assert any(k.startswith(prefix) and k.endswith(("weight", "weight.original")) for k in changed), prefix
    # frozen: E (stage 1's work), G, the alignment backbone and the prior's D, buffers included
    assert not any(k.startswith(("net.encoder.", "net.generator.", "net.align.backbone.", "prior_discriminator.")) for k in changed)


def test_generator_features_match_the_generator():
    g = _method().net.generator
    z, y = torch.randn(2, g.z_dim), torch.tensor([3, 400])
    with torch.no_grad():
        x_inv, features = generator_features(g, z, y)
        assert torch.allclose(x_inv, g(z, y), atol=1e-6)
    assert [f.shape[-1] for f in features] == [16, 32, 64] and [f.shape[1] for f in features] == channel_plan(64, 2)[-3:]


def test_correlation_is_a_convex_combination():
    torch.manual_seed(0)
    query, key = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 4, 4)
    m = correlation(query, key, temperature=0.1)
    assert m.shape == (2, 35, 16)
    assert (m >= 0).all() and torch.allclose(m.sum(dim=-1), torch.ones(2, 35), atol=1e-5)
    values = torch.rand(2, 3, 8, 8)
    warped = warp(m, values, (5, 7), scale=2)
    assert warped.shape == (2, 3, 10, 14)
    assert warped.min() >= values.min() - 1e-6 and warped.max() <= values.max() + 1e-6
    flat = warp(m, torch.full((2, 3, 4, 4), 0.3), (5, 7))
    assert torch.allclose(flat, torch.full_like(flat, 0.3), atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_warp_carries_a_shifted_image_back_onto_the_input(scale):
    torch.manual_seed(0)
    features = torch.randn(1, 64, 8, 8)  # a distinct feature at every position of the input
    image = torch.rand(1, 3, 8 * scale, 8 * scale)
    shifted_features = torch.roll(features, shifts=(2, -3), dims=(2, 3))
    shifted_image = torch.roll(image, shifts=(2 * scale, -3 * scale), dims=(2, 3))
    m = correlation(features, shifted_features, temperature=0.01)
    back = warp(m, shifted_image, (8, 8), scale)
    assert torch.allclose(back, image, atol=1e-4)
    assert not torch.allclose(shifted_image, image, atol=0.1)


def test_contextual_loss_ignores_layout_and_sees_content():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 6, 6)
    shuffled = x.flatten(2)[..., torch.randperm(36)].view(1, 16, 6, 6)
    other = torch.randn(1, 16, 6, 6)
    same = contextual_loss(x, x)
    assert same < 0.05
    assert contextual_loss(shuffled, x) == pytest.approx(same.item(), abs=1e-4)
    assert contextual_loss(other, x) > same + 0.5


def test_reference_changes_the_output():
    method = _method().eval()
    lightness = torch.rand(1, 1, 40, 48) * 100
    reference = torch.from_numpy(np.asarray(color_image(60, 50, seed=9), np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        plain = method.predict_ab(lightness, class_index=5)
        guided = method.predict_ab(lightness, class_index=5, reference_rgb=reference)
        again = method.predict_ab(lightness, class_index=5, reference_rgb=reference)
    assert guided.shape == plain.shape
    assert (guided - plain).abs().max() > 1e-3
    assert torch.allclose(guided, again)


def test_reference_photo_replaces_the_inversion_image_in_the_alignment(monkeypatch):
    method = _method().eval()
    reference = torch.rand(1, 3, 64, 96)
    seen = []
    original = method.net.align.from_rgb
    monkeypatch.setattr(method.net.align, "from_rgb", lambda rgb: seen.append(rgb.clone()) or original(rgb))
    with torch.inference_mode():
        method.predict_ab(torch.rand(1, 1, 32, 32) * 100, class_index=5, reference_rgb=reference)
    # the photo's centre square at G's resolution, not G's output
    assert len(seen) == 1 and torch.allclose(seen[0], reference[..., 16:80], atol=1e-6)


def test_samples_differ_with_sigma_and_equal_without():
    method = _method().eval()
    lightness = torch.rand(1, 1, 32, 32) * 100

    def outputs(options):
        with torch.inference_mode():
            return [method.predict_ab(lightness, class_index=5, **o) for _, o in method.inference_variants(dict(options))]

    variants = method.inference_variants({"samples": 3})
    assert [s for s, _ in variants] == ["_s0", "_s1", "_s2"] and all(o["sigma"] == 0.5 for _, o in variants)
    diverse = outputs({"samples": 3, "sigma": 1.0})
    assert (diverse[0] - diverse[1]).abs().max() > 1e-3 and (diverse[1] - diverse[2]).abs().max() > 1e-3
    same = outputs({"samples": 3, "sigma": 0.0})
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])
    assert method.inference_variants({"samples": 1, "sigma": 0.3, "seed": 4, "class_index": 2}) == [("", {"class_index": 2})]


def test_sefa_directions_are_orthonormal_eigenvectors_of_the_first_layer():
    method = _method()
    g = method.net.generator
    directions, eigenvalues = sefa_directions(g)
    assert directions.shape == (g.z_chunk, g.z_dim)
    assert torch.allclose(directions @ directions.T, torch.eye(g.z_chunk), atol=1e-5)
    assert (directions[:, g.z_chunk:] == 0).all()  # only the chunk that the first layer maps
    w = g.linear.weight.detach()
    v = directions[:, : g.z_chunk]
    assert torch.allclose(v @ (w.T @ w), eigenvalues[:, None] * v, atol=1e-4)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all() and eigenvalues[0] > eigenvalues[-1]
    assert torch.equal(latent_directions(method.net), directions)

    lightness = torch.rand(1, 1, 32, 32) * 100
    with torch.inference_mode():
        base = method.eval().predict_ab(lightness, class_index=5)
        moved = method.predict_ab(lightness, class_index=5, direction=0, strength=3.0)
        still = method.predict_ab(lightness, class_index=5, direction=0, strength=0.0)
        none = method.predict_ab(lightness, class_index=5, direction=-1, strength=3.0)
        with pytest.raises(ValueError, match="direction 17 is out of range"):
            method.predict_ab(lightness, class_index=5, direction=17)
    assert (moved - base).abs().max() > 1e-3 and torch.equal(still, base) and torch.equal(none, base)


@pytest.mark.parametrize("align, spade", [(True, True), (False, True), (True, False), (False, False)])
def test_ablations_build_train_and_colorize(align, spade):
    method = _method(align=align, spade=spade).train()
    assert (method.net.align is not None) == align
    kinds = {type(m) for m in method.net.colorizer.modules()}
    assert (SPADE in kinds) == spade and (ConcatModulation in kinds) == (not spade)
    losses = method.train_step(_batch(), method.make_optimizers(), 0, contextlib.nullcontext)
    assert all(np.isfinite(v) for v in losses.values())
    assert (losses["dom"] == 0) == (not align)
    with torch.inference_mode():
        assert method.eval().predict_ab(torch.rand(1, 1, 30, 22) * 100, class_index=2).shape == (1, 2, 30, 22)


def test_bad_stage_is_a_clear_error():
    with pytest.raises(ValueError, match="'stage': 1 .* or 2"):
        _method(stage=3)
    with pytest.raises(ValueError, match="'image_size': 32 or more"):
        _method(image_size=16)


def test_stage2_starts_from_a_stage1_state_of_another_layout_but_not_another_generator():
    stage1 = _method(stage=1).state_dict()
    ablation = _method(stage=2, spade=False, align=False)
    ablation.load_state_dict(stage1, strict=False)  # C and the alignment of stage 1 are untrained: left out
    assert all(torch.equal(v, stage1[k]) for k, v in ablation.state_dict().items() if k.startswith("net.encoder."))
    with pytest.raises(ValueError, match="stage-1 run's image_size, width"):
        _method(stage=2, width=4).load_state_dict(stage1, strict=False)


def _exported(tmp_path, method):
    from tinct.train import save_checkpoint_atomic
    from tinct.weights import export_run

    # fp16 round trip first, so the exported (float16) model must reproduce these weights exactly
    state = {k: v.half().float() if v.is_floating_point() else v for k, v in method.net.state_dict().items()}
    method.net.load_state_dict(state)
    save_checkpoint_atomic(
        {"method": "gcp", "config": dataclasses.asdict(method.config), "step": 0, "model": method.state_dict(),
         "ema": method.net.state_dict(), "optimizers": {}, "data": ["synthetic"], "data_images": 0, "data_dropped_gray": 0},
        tmp_path / "checkpoint.pt",
    )
    return export_run(tmp_path, "tiny_gcp", dest=tmp_path / "w", working_size=48)


def test_export_then_load_round_trips(tmp_path):
    from tinct.weights import load_model

    method = _method().eval()
    path = _exported(tmp_path, method)
    loaded, info = load_model(str(path))
    assert info["method"] == "gcp" and info["working_size"] == 48
    lightness = torch.rand(1, 1, 36, 44) * 100
    with torch.inference_mode():
        for options in ({}, {"sigma": 0.7, "seed": 3}, {"direction": 2, "strength": -1.5}):
            expected = method.predict_ab(lightness, class_index=7, **options)
            assert torch.allclose(loaded.predict_ab(lightness, class_index=7, **options), expected, atol=1e-4), options


def test_api_options_and_transition_strip(tmp_path):
    import tinct

    model = str(_exported(tmp_path, _method().eval()))
    img = tmp_path / "in.png"
    color_image(50, 40).convert("L").save(img)
    colorizer = tinct.Colorizer(model, device="cpu")
    outputs = colorizer.colorize_all(img, samples=2, sigma=2.0, **{"class": "goldfish"})
    assert [s for s, _ in outputs] == ["_s0", "_s1"] and outputs[0][1].size == (50, 40)
    assert np.abs(np.asarray(outputs[0][1], np.int16) - np.asarray(outputs[1][1], np.int16)).max() > 0
    assert colorizer.colorize(img, direction=1, strength=4.0).size == (50, 40)
    with pytest.raises(ValueError, match="direction"):
        colorizer.colorize(img, direction=99)
    with pytest.raises(ValueError, match="no option 'temperature'"):
        colorizer.colorize(img, temperature=0.5)
    gray = np.asarray(Image.open(img), np.float32) / 255
    strip = transition_strip(colorizer, gray, 0, strengths=(-3.0, 0.0, 3.0))
    assert strip.size[0] == 4 + 4 * (50 + 4)  # input and three strengths
    cells = np.asarray(strip)[18:58]
    left, right = cells[:, 4 + 54:4 + 54 + 50], cells[:, 4 + 3 * 54:4 + 3 * 54 + 50]
    assert np.abs(left.astype(int) - right.astype(int)).max() > 0


def _train(method, data, out, *extra, steps=2):
    args = ["train", method, "--data", str(data), "--out", str(out), "--workers", "0", "--no-progress",
            "--set", "width=2", "--set", "batch_size=4", "--set", f"steps={steps}"]
    return main(args + list(extra))


def test_cli_prior_then_stage1_then_stage2_ablation_then_colorize(tmp_path, capsys):
    from tinct.train import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        color_image(72, 72, seed=i).save(data / f"{i:03d}_n0000000{i}_thing.png")
    prior = tmp_path / "prior"
    assert _train("prior", data, prior) == 0
    tiny = [x for k, v in TINY.items() if k not in ("width", "batch_size", "steps") for x in ("--set", f"{k}={json.dumps(v)}")]
    stage1 = tmp_path / "stage1"
    assert _train("gcp", data, stage1, "--set", f"prior={prior}", *tiny) == 0
    s1 = load_checkpoint(stage1)
    prior_ckpt = load_checkpoint(prior)
    assert all(torch.equal(v, s1["model"][f"net.generator.{k}"]) for k, v in prior_ckpt["ema"].items())  # G is the prior's
    d_keys = [k for k in prior_ckpt["model"] if k.startswith("discriminator.")]
    assert d_keys and all(torch.equal(prior_ckpt["model"][k], s1["model"][f"prior_{k}"]) for k in d_keys)  # and so is D

    stage2 = tmp_path / "stage2"  # the "without SPADE" ablation, from the same stage-1 run
    assert _train("gcp", data, stage2, "--set", "stage=2", "--set", "spade=false", "--init-from", str(stage1), *tiny) == 0
    s2 = load_checkpoint(stage2)
    encoder = [k for k in s1["ema"] if k.startswith("encoder.")]  # --init-from takes the run's EMA weights
    assert encoder and all(torch.equal(s1["ema"][k], s2["model"][f"net.{k}"]) for k in encoder)  # E from stage 1, then frozen
    assert any(not torch.equal(s1["model"][f"net.{k}"], s2["model"][f"net.{k}"]) for k in encoder if "running" not in k)
    log = (stage2 / "log.csv").read_text().splitlines()
    assert "ctx" in log[0] and len(log) == 2

    assert main(["export", str(stage2), "--name", "g", "--dest", str(tmp_path / "w")]) == 0
    img = tmp_path / "in.png"
    color_image(45, 33).convert("L").save(img)
    out = tmp_path / "out"
    model = str(tmp_path / "w" / "g.safetensors")
    assert main(["colorize", str(img), "-o", str(out), "--model", model, "--samples", "2", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in_s0.png", "in_s1.png"]
    ref = tmp_path / "ref.png"
    color_image(60, 60, seed=3).save(ref)
    assert main(["colorize", str(img), "-o", str(tmp_path / "o2"), "--model", model, "--reference", str(ref), "--no-progress"]) == 0
    assert Image.open(tmp_path / "o2" / "in.png").size == (45, 33)
    assert main(["colorize", str(img), "-o", str(tmp_path / "o3"), "--model", model, "--direction", "1", "--strength", "-4",
                 "--no-progress"]) == 0
    strip = tmp_path / "strip.png"
    assert main(["figure", "transition", str(img), "--direction", "0", "--strengths=-2,0,2", "--model", model,
                 "-o", str(strip)]) == 0
    assert Image.open(strip).size == (4 + 4 * (45 + 4), 18 + 33 + 4)
    assert main(["figure", "transition", str(img), "--direction", "40", "--model", model, "-o", str(tmp_path / "s2.png")]) == 2
    assert "out of range" in capsys.readouterr().err
