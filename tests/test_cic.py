"""CIC: ab bins, soft-encoding, prior and rebalancing, annealed mean, network, training, CLI."""

import contextlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.methods import build_method
from tinct.methods.cic import (
    AB_GRID, CICNet, ab_bins, ab_prior, annealed_mean, hue_consistency, nearest_bin, rebalancing_weights, soft_encode,
    srgb_gamut_bins, undo_rebalancing,
)

TINY_CIC = {"width": 0.125, "image_size": 32, "batch_size": 4, "steps": 3, "prior_images": 10}


def _all_8bit_surface_colors() -> np.ndarray:
    """The six faces of the 8-bit sRGB cube, [N, 3] uint8."""
    v = np.arange(256, dtype=np.uint8)
    a, b = np.meshgrid(v, v, indexing="ij")
    a, b = a.ravel(), b.ravel()
    faces = []
    for axis in range(3):
        for value in (0, 255):
            cols = [a, b]
            cols.insert(axis, np.full_like(a, value))
            faces.append(np.stack(cols, 1))
    return np.concatenate(faces)


def test_gamut_bins_reproduced_with_scikit_image():
    from skimage.color import rgb2lab

    rgb = _all_8bit_surface_colors()
    interior = np.stack(np.meshgrid(*[np.arange(0, 256, 8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lab = rgb2lab(np.concatenate([rgb, interior])[None].astype(np.float64) / 255.0)[0]
    low = np.floor(lab[:, 1:] / 10).astype(int)
    expected = {(10 * (a + da), 10 * (b + db)) for a, b in set(map(tuple, low)) for da in (0, 1) for db in (0, 1)}
    got = {tuple(x) for x in srgb_gamut_bins().numpy().astype(int)}
    assert got == expected
    assert len(got) == 309


def test_paper_bins_are_the_gamut_bins_plus_four_edge_bins():
    bins = ab_bins()
    got = {tuple(x) for x in bins.numpy().astype(int)}
    assert len(got) == bins.shape[0] == 313
    gamut = {tuple(x) for x in srgb_gamut_bins().numpy().astype(int)}
    assert gamut <= got
    assert got - gamut == {(40, 90), (100, -90), (100, -10), (100, 0)}
    # the grid: every center is a multiple of 10, sorted by a then b
    assert torch.all(bins.remainder(AB_GRID) == 0) and bins.abs().max() <= 110
    assert [tuple(x) for x in bins.tolist()] == sorted(tuple(x) for x in bins.tolist())


def test_bins_cover_every_srgb_color():
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.integers(0, 256, (4000, 3)).astype(np.float64) / 255.0).T[:, :, None, None]
    from tinct.color import rgb_to_lab

    ab = rgb_to_lab(rgb.permute(1, 0, 2, 3))[:, 1:].float()  # [N, 2, 1, 1]
    bins = ab_bins()
    nearest = bins[nearest_bin(ab, bins).view(-1)]
    # each color lies in its nearest bin's 10x10 cell
    assert (nearest - ab.view(-1, 2)).abs().max() <= AB_GRID / 2 + 1e-4


def test_soft_encoding_sums_to_one_and_nearest_bin_dominates():
    bins = ab_bins()
    ab = torch.tensor([[13.0, -27.0], [0.0, 0.0], [61.0, 44.0], [-33.3, 71.2]]).T.reshape(1, 2, 2, 2)
    z, nearest = soft_encode(ab, bins, neighbours=5, sigma=5.0)
    assert z.shape == (1, bins.shape[0], 2, 2)
    assert torch.allclose(z.sum(1), torch.ones(1, 2, 2), atol=1e-6)
    assert (z >= 0).all() and ((z > 0).sum(1) == 5).all()
    assert torch.equal(z.argmax(1), nearest)
    assert torch.equal(nearest, nearest_bin(ab, bins))
    # exactly on a bin center: the Gaussian gives it weight 1 / (1 + 4 exp(-2)) against its 4 neighbours
    center = int(((bins - torch.tensor([0.0, 0.0])).abs().sum(1) == 0).nonzero())
    assert z[0, center, 0, 1] == pytest.approx(1 / (1 + 4 * np.exp(-100 / 50)), rel=1e-4)


def test_prior_and_rebalancing_weights():
    bins = ab_bins()
    q = bins.shape[0]
    counts = torch.zeros(q)
    gray_bin = int(((bins).abs().sum(1) == 0).nonzero())
    counts[gray_bin] = 1000
    counts[:20] = 1
    prior = ab_prior(counts, bins, sigma=5.0)
    assert prior.sum() == pytest.approx(1.0, abs=1e-5) and (prior >= 0).all()
    assert prior.argmax() == gray_bin  # smoothing keeps the mode
    w = rebalancing_weights(prior, 0.5)
    assert float((prior * w).sum()) == pytest.approx(1.0, abs=1e-5)  # E_p[w] = 1
    assert w[gray_bin] < 1 < w.max()  # common colors down-weighted, rare ones up
    assert torch.allclose(rebalancing_weights(prior, 1.0), torch.ones(q))  # lambda = 1: no rebalancing
    uniform = torch.full((q,), 1.0 / q)
    assert torch.allclose(rebalancing_weights(uniform, 0.5), torch.ones(q), atol=1e-5)


def test_annealed_mean_limits():
    torch.manual_seed(0)
    bins = ab_bins()
    logits = torch.randn(2, bins.shape[0], 3, 4) * 3
    mode = bins[logits.argmax(1)].permute(0, 3, 1, 2)
    assert torch.allclose(annealed_mean(logits, bins, 1e-4), mode, atol=1e-3)
    assert torch.equal(annealed_mean(logits, bins, 0), mode)
    mean = torch.einsum("bqhw,qc->bchw", torch.softmax(logits, 1), bins)
    assert torch.allclose(annealed_mean(logits, bins, 1.0), mean, atol=1e-4)
    # lower temperature: the estimate moves away from the mean towards the mode
    d = [float((annealed_mean(logits, bins, t) - mode).abs().mean()) for t in (1.0, 0.38, 0.1)]
    assert d[0] > d[1] > d[2]


def test_network_follows_table_1():
    net = CICNet(width=1.0)
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 12 + [256, 256]
    assert [c.stride[0] for c in convs].count(2) == 3  # conv1_2, conv2_2, conv3_3
    assert [c.dilation[0] for c in convs][10:16] == [2] * 6  # conv5, conv6
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.body) == 7  # conv1..conv7
    assert net.classifier.out_channels == net.num_bins and net.classifier.kernel_size == (1, 1)
    assert 31e6 < sum(p.numel() for p in net.parameters()) < 33e6  # about 32 M, as the paper's
    small = CICNet(width=0.125)
    assert small(torch.rand(2, 1, 48, 40) * 100).shape == (2, small.num_bins, 12, 10)  # 1/4 resolution


def test_predict_ab_any_size_and_temperature():
    torch.manual_seed(0)
    method = build_method("cic", TINY_CIC).eval()
    lightness = torch.rand(1, 1, 37, 53) * 100
    with torch.no_grad():
        hot = method.predict_ab(lightness, temperature=1.0)
        cold = method.predict_ab(lightness, temperature=0.14)
    assert hot.shape == cold.shape == (1, 2, 37, 53)
    assert hot.abs().max() <= 110 and not torch.allclose(hot, cold)


def test_undoing_the_rebalancing_recovers_the_data_distribution():
    torch.manual_seed(0)
    bins = ab_bins()
    prior = torch.softmax(torch.randn(bins.shape[0]) * 2, 0)
    weights = rebalancing_weights(prior, 0.5)
    p_data = torch.softmax(torch.randn(1, bins.shape[0], 2, 3), 1)
    trained = (p_data * weights.view(1, -1, 1, 1)).log()  # what weighted training converges to, unnormalized
    undone = torch.softmax(undo_rebalancing(trained, weights, 1.0), 1)
    assert torch.allclose(undone, p_data, atol=1e-5)
    assert undo_rebalancing(trained, weights, 0.0) is trained
    half = torch.softmax(undo_rebalancing(trained, weights, 0.5), 1)
    assert torch.allclose(half, torch.softmax((p_data * weights.sqrt().view(1, -1, 1, 1)).log(), 1), atol=1e-5)


def test_hue_consistency_is_one_for_one_hue_and_zero_for_opposite_hues():
    bins = ab_bins()
    index = {tuple(b): i for i, b in enumerate(bins.tolist())}
    logits = torch.full((1, bins.shape[0], 1, 3), -1e4)
    logits[0, index[(30.0, 30.0)], 0, 0] = 0  # all mass on one bin
    logits[0, index[(30.0, 30.0)], 0, 1] = 0  # split between opposite hues
    logits[0, index[(-30.0, -30.0)], 0, 1] = 0
    logits[0, index[(30.0, 30.0)], 0, 2] = 0  # split between two nearby hues
    logits[0, index[(40.0, 20.0)], 0, 2] = 0
    c = hue_consistency(logits, bins)[0, 0, 0]
    assert c.shape == (3,) and abs(float(c[0]) - 1) < 1e-5 and float(c[1]) < 1e-5 and 0.9 < float(c[2]) < 1


def test_decoding_options_keep_the_default_and_move_the_colors():
    torch.manual_seed(0)
    method = build_method("cic", TINY_CIC).eval()
    prior = torch.softmax(torch.randn(method.network.num_bins) * 2, 0)
    method.set_prior(prior)
    lightness = torch.rand(1, 1, 24, 40) * 100
    with torch.no_grad():
        base = method.predict_ab(lightness)
        assert torch.equal(method.predict_ab(lightness, rebalance=1.0, shrink=0.0), base)
        undone = method.predict_ab(lightness, rebalance=0.0)
        faded = method.predict_ab(lightness, shrink=2.0)
    assert not torch.allclose(undone, base)
    assert (faded.norm(dim=1) <= base.norm(dim=1) + 1e-4).all() and faded.norm(dim=1).mean() < base.norm(dim=1).mean()


def test_train_step_reduces_the_loss_on_a_batch(shard):
    from tinct.data import ColorizationDataset, DataConfig

    torch.manual_seed(0)
    method = build_method("cic", {**TINY_CIC, "lr": 1e-2, "lr_batch": 4})
    method.prepare_data([str(shard)])
    assert method.network.prior.sum() == pytest.approx(1.0, abs=1e-5)
    assert float((method.network.prior * method.network.class_weights).sum()) == pytest.approx(1.0, abs=1e-4)
    ds = ColorizationDataset([str(shard)], DataConfig(image_size=32))
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("rgb", "gray", "label")}
    opts = method.make_optimizers()
    first = method.train_step(batch, opts, 0, contextlib.nullcontext)["ce"]
    for step in range(1, 15):
        last = method.train_step(batch, opts, step, contextlib.nullcontext)["ce"]
    assert np.isfinite(first) and last < first


def test_optimizer_follows_the_paper():
    method = build_method("cic", {**TINY_CIC, "batch_size": 20})
    opt = method.make_optimizers()["network"]
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["weight_decay"] == 1e-3
    assert group["lr"] == pytest.approx(3.16e-5 * 20 / 40)


def test_cli_prior_train_export_colorize_and_sweep(shard, tmp_path, capsys, tiny_model):
    prior_file = tmp_path / "prior.json"
    assert main(["prior", "--data", str(shard), "-o", str(prior_file), "--images", "0", "--no-progress"]) == 0
    saved = json.loads(prior_file.read_text())
    assert len(saved["prior"]) == 313 and saved["images"] == 12 and sum(saved["prior"]) == pytest.approx(1, abs=1e-5)

    run = tmp_path / "run"
    args = ["train", "cic", "--data", str(shard), "--out", str(run), "--workers", "0", "--no-progress",
            "--set", f"prior_file={prior_file}"]
    for k, v in TINY_CIC.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    weights = tmp_path / "weights"
    assert main(["export", str(run), "--name", "tiny_cic", "--dest", str(weights), "--working-size", "32"]) == 0
    model = weights / "tiny_cic.safetensors"

    from tinct.pipeline import Colorizer

    colorizer = Colorizer(str(model), device="cpu")
    assert torch.allclose(colorizer.method.network.prior, torch.tensor(saved["prior"]), atol=1e-3)  # saved with the model

    src = tmp_path / "in.png"
    color_image(40, 32).convert("L").save(src)
    out = tmp_path / "out"
    assert main(["colorize", str(src), "-o", str(out), "--model", str(model), "--temperature", "0.2", "--no-progress"]) == 0
    assert Image.open(out / "in.png").size == (40, 32)

    sweep = tmp_path / "sweep.png"
    assert main(["figure", "temperature", str(src), "-o", str(sweep), "--model", str(model)]) == 0
    im = Image.open(sweep)
    assert im.width > 8 * 40 and im.height > 32  # input + 7 decodings side by side
    capsys.readouterr()
    # a non-cic model is refused with a clear message
    assert main(["figure", "temperature", str(src), "-o", str(tmp_path / "x.png"), "--model", str(tiny_model)]) == 2
    assert "needs a cic model" in capsys.readouterr().err
