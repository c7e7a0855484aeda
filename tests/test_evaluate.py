"""Golden values for the evaluation protocol's metrics."""

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import color_image
from tinct.cli import main
from tinct.evaluate import ab_auc, classification_crop, frechet_distance, psnr, ssim


def test_psnr_ssim_equal_skimage():
    a = np.asarray(color_image(64, 48, seed=1))
    b = np.asarray(color_image(64, 48, seed=2))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, channel_axis=2, data_range=255))
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(200, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    shifted = feats + 1.0  # mean shift only: FD = |mu1 - mu2|^2 = 16
    assert frechet_distance(feats, shifted) == pytest.approx(16.0, rel=1e-6)


def test_auc_perfect_is_one_and_gray_is_lower():
    gt = np.asarray(color_image(32, 32))
    assert ab_auc(gt, gt) == pytest.approx(1.0)
    gray = np.repeat(np.asarray(Image.fromarray(gt).convert("L"))[..., None], 3, 2)
    assert ab_auc(gray, gt) < 1.0


def test_classification_crop_geometry():
    crop = classification_crop(np.zeros((300, 500, 3), np.uint8))
    assert crop.shape == (224, 224, 3)


def test_pred_vs_gt_folders_recovery_bounds(tmp_path, capsys, monkeypatch):
    """Scoring the ground truth itself gives recovery 1; scoring the gray inputs gives 0."""
    import json
    import shutil

    from conftest import DEV_SET
    from tinct.evaluate import gray_of

    monkeypatch.setenv("TINCT_CACHE", str(tmp_path / "cache"))

    if not DEV_SET.exists():
        pytest.skip("dev set not present")
    gt = tmp_path / "gt"
    gt.mkdir()
    for f in sorted(DEV_SET.glob("*.jpg"))[:12]:
        shutil.copy(f, gt / f.name)
    gray = tmp_path / "gray"
    gray.mkdir()
    for f in gt.iterdir():
        g = gray_of(np.asarray(Image.open(f).convert("RGB")))
        Image.fromarray((g * 255 + 0.5).astype(np.uint8)).save(gray / f"{f.stem}.png")
    for pred, expected in ((gt, 1.0), (gray, 0.0)):
        assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        row = result["rows"][pred.name]
        if result["rows"]["gt"]["top1"] != result["rows"]["gray"]["top1"]:
            assert row["recovery"] == pytest.approx(expected, abs=1e-9)
        assert row["n"] == 12
    assert list((tmp_path / "cache").glob("reference-*.npz"))  # ground-truth features cached
