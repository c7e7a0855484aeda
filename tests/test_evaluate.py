"""Golden values for the evaluation protocol's metrics."""

import numpy as np
import torch
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import color_image
from tinct.data import colorfulness
from tinct.cli import main
from tinct.evaluate import AucAccumulator, ab_auc, ab_prior, classification_crop, frechet_distance, psnr, ssim


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


def test_auc_golden_values_and_rebalancing():
    acc = AucAccumulator()
    acc.add(np.full(100, 10.0))  # every pixel within t exactly for t >= 10
    assert acc.value() == pytest.approx(141 / 151)
    acc = AucAccumulator()
    acc.add(np.array([0.0, 200.0]), weights=np.array([3.0, 1.0]))  # 3/4 of the weight is perfect
    assert acc.value() == pytest.approx(0.75)
    gt = np.asarray(color_image(32, 32))
    prior = ab_prior([gt])
    assert prior.sum() == pytest.approx(1.0) and prior.shape == (23 * 23,)
    assert ab_auc(gt, gt, prior) == pytest.approx(1.0)


def test_rebalanced_auc_weights_rare_colors_up():
    """Wrong on the rare color only: the rebalanced AuC punishes it more than the raw one."""
    gt = np.zeros((20, 20, 3), np.uint8)
    gt[:] = (120, 120, 120)  # common: neutral gray
    gt[:2, :2] = (200, 30, 30)  # rare: red
    pred = gt.copy()
    pred[:2, :2] = (30, 30, 200)
    prior = ab_prior([gt])
    assert ab_auc(pred, gt, prior) < ab_auc(pred, gt) < 1.0


def test_classification_crop_geometry():
    crop = classification_crop(np.zeros((300, 500, 3), np.uint8))
    assert crop.shape == (224, 224, 3)


def test_recovery_interval_is_paired_seeded_and_brackets_the_estimate():
    from tinct.evaluate import recovery_interval

    rng = np.random.default_rng(1)
    gt_ok = rng.random(400) < 0.85
    gray_ok = gt_ok & (rng.random(400) < 0.8)  # gray loses some of what gt gets right
    assert recovery_interval(gt_ok, gray_ok, gt_ok) == [1.0, 1.0]  # the same draw for every row
    assert recovery_interval(gray_ok, gray_ok, gt_ok) == [0.0, 0.0]
    out_ok = gray_ok | (gt_ok & (rng.random(400) < 0.3))  # recovers about 30% of the gap
    point = (out_ok.mean() - gray_ok.mean()) / (gt_ok.mean() - gray_ok.mean())
    low, high = recovery_interval(out_ok, gray_ok, gt_ok)
    assert low < point < high and high - low < 0.3
    assert recovery_interval(out_ok, gray_ok, gt_ok) == [low, high]
    wide = recovery_interval(out_ok[:100], gray_ok[:100], gt_ok[:100])
    assert wide[1] - wide[0] > high - low  # fewer images, wider interval
    assert recovery_interval(gray_ok, gray_ok, gray_ok) is None  # gt never beats gray


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
        assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json", "--report", str(tmp_path / "r")]) == 0
        result = json.loads(capsys.readouterr().out)
        row = result["rows"][pred.name]
        per_image = (tmp_path / "r" / "per_image.csv").read_text().splitlines()[1:]
        for name in (pred.name, "gray", "gt"):  # the per-image table adds up to the summary row
            correct = [line.split(",")[6] for line in per_image if line.split(",")[2] == name]
            assert len(correct) == 12 and correct.count("1") == round(result["rows"][name]["top1"] * 12)
        if result["rows"]["gt"]["top1"] != result["rows"]["gray"]["top1"]:
            assert row["recovery"] == pytest.approx(expected, abs=1e-9)
            assert row["recovery_ci95"] == [expected, expected]
        assert row["n"] == 12
        assert row["hue_agreement"] == pytest.approx(expected)  # ground truth 1, gray 0
    assert list((tmp_path / "cache").glob("reference-*.npz"))  # ground-truth features cached


def test_report_files_and_readme_table(tmp_path, capsys, monkeypatch):
    """--report writes the table, metrics, a contact sheet and a plot; the README table is regenerated."""
    import json

    from tinct.weights import README_TABLE_END, README_TABLE_START

    monkeypatch.setenv("TINCT_CACHE", str(tmp_path / "cache"))
    gt, pred = tmp_path / "gt", tmp_path / "mytool"
    gt.mkdir()
    pred.mkdir()
    for i in range(5):
        color_image(64, 48, seed=i).save(gt / f"img{i}.png")
        color_image(64, 48, seed=i + 10).save(pred / f"img{i}.png")
    Image.new("RGB", (40, 40), (90, 90, 90)).save(gt / "flat_gray.png")  # skipped and counted
    report = tmp_path / "report"
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json", "--report", str(report), "--sheet-images", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["skipped"] == 1 and set(printed["rows"]) == {"gray", "mytool", "gt"}
    for row in printed["rows"].values():
        assert {"n", "skipped", "psnr", "ssim", "colorfulness", "delta_colorfulness", "top1", "top5",
                "recovery", "fd_effnet", "auc_raw", "auc_rebalanced", "hue_agreement"} <= set(row)
    assert printed["rows"]["gray"]["hue_agreement"] == 0.0 and printed["rows"]["gt"]["hue_agreement"] == 1.0
    assert 0.0 <= printed["rows"]["mytool"]["hue_agreement"] <= 1.0
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["rows"] == printed["rows"]
    assert "| mytool |" in (report / "report.md").read_text()
    import csv

    with open(report / "per_image.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 * 3 and {r["row"] for r in table} == {"gray", "mytool", "gt"}
    mine = {r["image"]: r for r in table if r["row"] == "mytool"}
    assert set(mine) == {f"img{i}" for i in range(5)}
    for i in range(5):  # the per-image colorfulness is the prediction's own
        assert float(mine[f"img{i}"]["colorfulness"]) == pytest.approx(colorfulness(np.asarray(color_image(64, 48, seed=i + 10))), rel=1e-4)
    assert all(r["top1_correct"] == "" for r in table)  # these files carry no class label
    hues = {row: np.mean([float(r["hue_agreement"]) for r in table if r["row"] == row]) for row in ("gray", "mytool", "gt")}
    assert hues == pytest.approx({row: printed["rows"][row]["hue_agreement"] for row in hues})  # adds up to the summary
    assert "hue_agreement" in (report / "report.md").read_text()
    assert json.loads(json.dumps(printed)) == printed and "per_image" not in printed
    sheet = Image.open(report / "contact_sheet.png")
    assert sheet.size == (4 + 3 * (160 + 4), 18 + 3 * (160 + 4) + 4)  # columns gray | mytool | gt; 3 images
    assert Image.open(report / "plot.png").size[0] > 100

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_TABLE_START}\nold table\n{README_TABLE_END}\noutro\n")
    assert main(["models", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "| model | method |" in text and text.endswith("outro\n")


def test_fid_inception_matches_the_reference_architecture():
    from tinct.nets.inception import FIDInception

    net = FIDInception()
    # torchvision's Inception-v3 has 27,161,264 parameters; minus its auxiliary head (3,326,696)
    # and 1000-way classifier (2,049,000) that leaves the 21,785,568 of the FID feature network
    assert sum(p.numel() for p in net.parameters()) == 21_785_568
    keys = net.state_dict()
    assert {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_mean", "Mixed_7c.branch3x3dbl_3b.conv.weight"} <= set(keys)
    assert net.eval()(torch.rand(1, 3, 90, 120)).shape == (1, 2048)


def test_true_fid_only_with_user_weights(tmp_path, capsys, monkeypatch):
    import json

    from tinct.nets.inception import FIDInception

    monkeypatch.setenv("TINCT_CACHE", str(tmp_path / "cache"))
    gt, pred = tmp_path / "gt", tmp_path / "other"
    gt.mkdir()
    pred.mkdir()
    for i in range(4):
        color_image(48, 40, seed=i).save(gt / f"im{i}.png")
        color_image(48, 40, seed=i + 7).save(pred / f"im{i}.png")
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    assert "fid" not in json.loads(capsys.readouterr().out)["rows"]["other"]  # no weights: no FID
    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(FIDInception().state_dict(), weights)
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json", "--inception-weights", str(weights)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"]["gt"]["fid"] == 0.0 and result["rows"]["other"]["fid"] > 0
    assert len(result["inception_weights_sha256"]) == 64
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3)}, bad)
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--inception-weights", str(bad)]) == 2
    assert "not FID Inception-v3 weights" in capsys.readouterr().err


def test_ground_truth_from_a_shard_with_labels_and_a_corrupt_member(tmp_path, shard):
    import io
    import tarfile

    from tinct.evaluate import load_ground_truth

    broken = tmp_path / "val-0001.tar"
    with tarfile.open(broken, "w") as tar:
        for name, data in (("ok.jpg", _jpeg_bytes(color_image(32, 32, seed=1))), ("ok.cls", b"7"), ("bad.jpg", b"not a jpeg")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    samples, skipped, errors = load_ground_truth([str(shard), str(broken)])
    assert skipped == 3  # the shard fixture's 3 gray images
    assert [s.label for s in samples[:12]] == [i % 5 for i in range(12)]
    assert samples[-1].name == "ok" and samples[-1].label == 7 and samples[-1].gt.shape == (32, 32, 3)
    assert len(errors) == 1 and str(broken) in errors[0] and "bad" in errors[0] and "cannot decode" in errors[0]
    assert len(load_ground_truth(str(shard), limit=5)[0]) == 5


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _ab(hue_deg, chroma) -> torch.Tensor:
    """ab [2, 1, N] of pixels with these hues (degrees) and chromas."""
    h = torch.deg2rad(torch.as_tensor(hue_deg, dtype=torch.float64))
    c = torch.as_tensor(chroma, dtype=torch.float64).expand_as(h)
    return torch.stack([c * torch.cos(h), c * torch.sin(h)])[:, None, :]


def test_hue_agreement_golden_values():
    from tinct.evaluate import hue_agreement_ab

    gt = _ab([0.0, 60.0, 120.0, 240.0], 40.0)
    assert hue_agreement_ab(gt, gt) == 1.0
    assert hue_agreement_ab(torch.zeros_like(gt), gt) == 0.0  # gray prediction
    assert hue_agreement_ab(_ab([90.0, 150.0, 120.0, 240.0], 40.0), gt) == 0.5  # half rotated by 90 degrees
    assert hue_agreement_ab(_ab([-90.0, 60.0, 210.0, 240.0], 40.0), gt) == 0.5  # either way round
    assert hue_agreement_ab(_ab([29.9, 30.1, 150.1, 269.9], 40.0), gt) == 0.75  # 29.9 degrees off is within, 30.1 not
    # hue wrap-around: 350 vs 10 degrees are 20 apart
    assert hue_agreement_ab(_ab([350.0], 40.0), _ab([10.0], 40.0)) == 1.0
    assert hue_agreement_ab(_ab([10.0], 40.0), _ab([-10.0], 40.0)) == 1.0
    assert hue_agreement_ab(_ab([330.0], 40.0), _ab([10.0], 40.0)) == 0.0
    # a prediction of the right hue but chroma < 5 is a miss; chroma 5 counts
    assert hue_agreement_ab(_ab([0.0, 60.0, 120.0, 240.0], torch.tensor([4.9, 5.0, 40.0, 40.0])), gt) == 0.75
    # ground-truth pixels with chroma < 10 are left out, whatever is predicted there
    gt_mixed = _ab([0.0, 60.0, 120.0, 240.0], torch.tensor([9.9, 10.0, 40.0, 3.0]))
    assert hue_agreement_ab(_ab([180.0, 60.0, 300.0, 0.0], 40.0), gt_mixed) == 0.5
    # no chromatic ground-truth pixel: no score (left out of the average)
    assert hue_agreement_ab(gt, _ab([0.0, 90.0], 9.0)) is None


def test_hue_agreement_on_rgb_images():
    from tinct.evaluate import hue_agreement

    gt = np.zeros((4, 4, 3), np.uint8)
    gt[:2] = (200, 40, 40)  # red
    gt[2:] = (40, 160, 40)  # green
    pred = gt.copy()
    pred[2:] = (40, 40, 200)  # blue where green: far more than 30 degrees away
    assert hue_agreement(gt, gt) == 1.0 and hue_agreement(pred, gt) == 0.5
    gray = np.repeat(np.asarray(Image.fromarray(gt).convert("L"))[..., None], 3, 2)
    assert hue_agreement(gray, gt) == 0.0
    assert hue_agreement(gt, gray) is None
    faint = gt.copy()
    faint[:2] = (130, 125, 125)  # red, but chroma below 5
    assert hue_agreement(faint, gt) == 0.5


def test_hue_agreement_matches_skimage_lab():
    from skimage.color import rgb2lab

    from tinct.evaluate import hue_agreement

    rng = np.random.default_rng(3)
    gt = np.asarray(color_image(64, 48, seed=4))
    pred = np.clip(gt.astype(int) + rng.integers(-60, 61, gt.shape), 0, 255).astype(np.uint8)
    lab_gt, lab_pred = rgb2lab(gt), rgb2lab(pred)
    c_gt, c_pred = np.hypot(lab_gt[..., 1], lab_gt[..., 2]), np.hypot(lab_pred[..., 1], lab_pred[..., 2])
    dh = np.abs(np.degrees(np.arctan2(lab_pred[..., 2], lab_pred[..., 1]) - np.arctan2(lab_gt[..., 2], lab_gt[..., 1]))) % 360
    dh = np.minimum(dh, 360 - dh)
    scored = c_gt >= 10
    expected = ((c_pred >= 5) & (dh <= 30) & scored).sum() / scored.sum()
    assert 0.2 < expected < 0.95  # a case that exercises every condition
    assert hue_agreement(pred, gt) == pytest.approx(expected, abs=2 / scored.sum())
