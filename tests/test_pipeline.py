"""Inference pipeline and batch behaviour of `tinct colorize` (tiny random-weight model)."""

import numpy as np
import pytest
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.pipeline import Colorizer, colorize_files, guided_upsample
import torch


@pytest.fixture(scope="module")
def colorizer(tiny_model):
    return Colorizer(str(tiny_model), device="cpu")


def test_output_keeps_size_and_lightness(colorizer):
    gray = np.asarray(color_image(97, 61).convert("L"))
    out = colorizer.colorize(gray)
    assert out.size == (97, 61) and out.mode == "RGB"
    # the output's luminance is the input's (chroma is added, lightness kept)
    lum = np.asarray(out, dtype=np.float32) @ np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
    assert np.abs(lum - gray).mean() < 6


def test_alpha_kept(colorizer):
    im = color_image().convert("LA")
    alpha = np.zeros((40, 48), np.uint8)
    alpha[:, :20] = 255
    im.putalpha(Image.fromarray(alpha))
    out = colorizer.colorize(im)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)


def test_large_image_in_strips(colorizer, monkeypatch):
    import tinct.pipeline as pipeline

    gray = np.asarray(color_image(300, 200).convert("L"))
    whole = np.asarray(colorizer.colorize(gray))
    monkeypatch.setattr(pipeline, "_CHUNK_PIXELS", 300 * 7)  # 7-row strips
    strips = np.asarray(colorizer.colorize(gray))
    assert np.abs(whole.astype(int) - strips.astype(int)).max() <= 1


def test_guided_upsample_is_exact_for_linear_chroma():
    # chroma that is a linear function of the guide is reproduced exactly at full resolution
    guide_full = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 1, 32, 64).contiguous()
    guide_low = torch.nn.functional.interpolate(guide_full, size=(8, 16), mode="area")
    src_low = torch.cat([3 * guide_low - 1, -2 * guide_low], 1)
    up = guided_upsample(guide_low, src_low, (32, 64), eps=1e-8)(0, 32, guide_full)
    assert torch.allclose(up, torch.cat([3 * guide_full - 1, -2 * guide_full], 1), atol=2e-2)


def test_guided_upsample_keeps_edges_sharper_than_bilinear():
    guide_full = torch.zeros(1, 1, 32, 64)
    guide_full[..., 29:] = 1.0  # an edge that falls inside one low-res pixel
    guide_low = torch.nn.functional.interpolate(guide_full, size=(8, 16), mode="area")
    src_low = 40 * guide_low  # chroma follows the edge
    truth = 40 * guide_full
    guided = guided_upsample(guide_low, src_low, (32, 64))(0, 32, guide_full)
    bilinear = torch.nn.functional.interpolate(src_low, size=(32, 64), mode="bilinear", align_corners=False)
    assert (guided - truth).abs().mean() < 0.5 * (bilinear - truth).abs().mean()


def test_api_colorize_path(tiny_model, tmp_path):
    import tinct

    path = tmp_path / "p.png"
    color_image().convert("L").save(path)
    out = tinct.colorize(path, model=str(tiny_model), device="cpu")
    assert isinstance(out, Image.Image) and out.size == (48, 40)


def make_batch(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    color_image(seed=1).convert("L").save(src / "a.jpg")
    color_image(seed=2).convert("L").save(src / "sub" / "b.png")
    (src / "empty.jpg").write_bytes(b"")
    (src / "fake.png").write_bytes(b"not a png")
    good = color_image(200, 200, seed=4)
    import io

    buf = io.BytesIO()
    good.save(buf, format="PNG")
    (src / "cut.png").write_bytes(buf.getvalue()[:500])
    return src


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_batch_goes_on_past_bad_files(colorizer, tmp_path, capsys):
    src = make_batch(tmp_path)
    before = snapshot(src)
    out = tmp_path / "out"
    summary = colorize_files(colorizer, [str(src)], out, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, 3)
    err = capsys.readouterr().err
    for name, reason in (("empty.jpg", "empty"), ("fake.png", "not an image"), ("cut.png", "truncated")):
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert snapshot(src) == before  # inputs untouched
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert outputs == ["a.png", "sub/b.png"]  # no partial outputs for the failures, no temp files


def test_resume_skips_existing_and_force_overwrites(colorizer, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    color_image(seed=1).convert("L").save(src / "a.jpg")
    color_image(seed=2).convert("L").save(src / "b.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"previous")
    s = colorize_files(colorizer, [str(src / "*.jpg")], out, progress=False)
    assert (s.done, s.skipped, s.failed) == (1, 1, 0)
    assert (out / "a.png").read_bytes() == b"previous"
    s = colorize_files(colorizer, [str(src / "*.jpg")], out, force=True, progress=False)
    assert (s.done, s.skipped) == (2, 0) and (out / "a.png").read_bytes() != b"previous"


def test_never_overwrites_an_input(colorizer, tmp_path):
    src = tmp_path / "x.png"
    color_image().convert("L").save(src)
    before = src.read_bytes()
    s = colorize_files(colorizer, [str(src)], tmp_path, force=True, progress=False)
    assert s.done == 1 and s.outputs == [tmp_path / "x_png.png"]  # the input's own name is never an output
    assert src.read_bytes() == before


def test_cli_exit_codes_and_summary(tiny_model, tmp_path, capsys):
    src = make_batch(tmp_path)
    out = tmp_path / "out"
    code = main(["colorize", str(src), "-o", str(out), "--model", str(tiny_model), "--no-progress", "--format", "jpg"])
    captured = capsys.readouterr()
    assert code == 1
    assert "done 2, skipped 0, failed 3" in captured.out
    assert (out / "a.jpg").exists()
    ok = tmp_path / "ok"
    ok.mkdir()
    color_image().convert("L").save(ok / "c.png")
    code = main(["colorize", str(ok / "c.png"), "-o", str(out), "--model", str(tiny_model), "--no-progress"])
    assert code == 0 and (out / "c.png").exists()


def test_color_input_warns(colorizer, tmp_path, caplog):
    path = tmp_path / "color.png"
    color_image().save(path)
    with caplog.at_level("WARNING"):
        colorize_files(colorizer, [str(path)], tmp_path / "o", progress=False)
    assert any("color input" in r.message for r in caplog.records)


def test_corrupt_weights_are_refused(tiny_model, tmp_path):
    import shutil

    from tinct.weights import WeightsError

    bad = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_model, bad)
    shutil.copy(tiny_model.with_suffix(".json"), tmp_path / "tiny.json")
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        Colorizer(str(bad), device="cpu")


def test_cli_refuses_huge_image_and_goes_on(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("L", (600, 500), 128).save(src / "huge.png")
    color_image().convert("L").save(src / "small.png")
    code = main(["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_model), "--no-progress", "--max-pixels", "100000"])
    captured = capsys.readouterr()
    assert code == 1 and "done 1, skipped 0, failed 1" in captured.out
    assert "huge.png" in captured.err and "over the limit" in captured.err
    assert not (tmp_path / "out" / "huge.png").exists()


def test_same_stem_inputs_get_distinct_outputs(colorizer, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        color_image().convert("L").save(tmp_path / d / "x.jpg")
    color_image().convert("L").save(tmp_path / "a" / "x.png")
    s = colorize_files(colorizer, [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), str(tmp_path / "a" / "x.png")], tmp_path / "out", progress=False)
    assert s.done == 3 and len({p.name for p in s.outputs}) == 3


def test_semantic_view_comes_from_the_full_resolution_image(tmp_path, monkeypatch):
    """The pipeline hands a model with a semantic branch a square view of the whole input,
    resized from full resolution (not from the working-resolution copy)."""
    import dataclasses

    from conftest import TINY_UNET
    from tinct.methods import build_method
    from tinct.pipeline import Colorizer
    from tinct.train import save_checkpoint_atomic
    from tinct.weights import export_run

    torch.manual_seed(0)
    method = build_method("unet_gan", {**TINY_UNET, "semantic_view": 64}, pretrained=False)
    torch.nn.init.normal_(method.generator.fuse.weight, std=0.1)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint_atomic({"method": "unet_gan", "config": dataclasses.asdict(method.config), "step": 0, "model": method.state_dict(),
                            "ema": method.generator.state_dict(), "data": [], "data_images": 0, "data_dropped_gray": 0}, run / "checkpoint.pt")
    colorizer = Colorizer(str(export_run(run, "sem", dest=tmp_path / "w", working_size=32)), device="cpu")
    seen = []
    original = type(colorizer.method).semantic_features

    def spy(self, gray):
        seen.append(gray.clone())
        return original(self, gray)

    monkeypatch.setattr(type(colorizer.method), "semantic_features", spy)
    gray = np.zeros((300, 200), np.float32)
    gray[:, 100:] = 1.0
    gray[:, 40:43] = 1.0  # a 3 px line: about 1 px wide in the 64 px view, under a pixel in the 32 px working copy
    out = colorizer.colorize_gray(gray)
    assert out.shape == (300, 200, 3) and len(seen) == 1
    view = seen[0][0, 0]
    assert view.shape == (64, 64)  # the whole image squeezed to the square view, not the 32 x 48 working copy
    assert view[:, 34:].min() > 0.99 and view[:, :10].max() < 0.01 and view[:, 16:28].max() < 0.01
    assert view[:, 12:15].max() > 0.6


@pytest.mark.parametrize("shape", [(3, 5000), (5000, 3), (1, 1), (300, 451)])
def test_working_image_is_bounded_for_thin_strips(tiny_model, shape):
    """A 3 x 50000 strip used to grow to ~1.6 M px at the working size (killed at 24 GB)."""
    from tinct.pipeline import MAX_WORKING_ASPECT, Colorizer, working_shape

    c = Colorizer(str(tiny_model), device="cpu", size=32)
    seen = []
    original = c.method.predict_ab
    c.method.predict_ab = lambda lightness, **kw: (seen.append(tuple(lightness.shape[-2:])), original(lightness, **kw))[1]
    out = c.colorize(np.linspace(0.2, 0.8, shape[0] * shape[1], dtype=np.float32).reshape(shape))  # not flat: flat stays gray
    assert out.size == (shape[1], shape[0])
    h, w = seen[0] if seen else working_shape(*shape, 32)  # 1 x 1 is flat: returned gray without the model
    assert max(h, w) <= MAX_WORKING_ASPECT * 32 and min(h, w) >= 1
    if max(shape) / min(shape) <= MAX_WORKING_ASPECT:
        assert min(h, w) == 32


@pytest.mark.parametrize("size", [0, 8, 5000])
def test_working_size_out_of_range_is_refused(tiny_model, size):
    from tinct.pipeline import Colorizer

    with pytest.raises(ValueError, match="out of range"):
        Colorizer(str(tiny_model), device="cpu", size=size)


def test_a_folder_colorized_into_itself_twice_never_takes_its_outputs_as_inputs(tiny_model, tmp_path, capsys):
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(2):
        color_image(30, 20, seed=i).convert("L").save(folder / f"p{i}.jpg")
    argv = ["colorize", str(folder), "-o", str(folder), "--model", str(tiny_model), "--size", "32", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "done 2, skipped 0, failed 0"
    assert main(argv) == 0  # used to colorize p0.png into p0_png.png and fail the real inputs
    assert capsys.readouterr().out.strip().splitlines()[-1] == "done 0, skipped 2, failed 0"
    assert sorted(p.name for p in folder.iterdir()) == ["p0.jpg", "p0.png", "p1.jpg", "p1.png"]


def test_unknown_ill_typed_or_out_of_range_options_are_refused(tiny_model, tmp_path, capsys):
    """`class_="goldfish"`, `temperature=-1` and `--samples` on a model without them used to be ignored."""
    c = Colorizer(str(tiny_model), device="cpu", size=32)  # unet_gan: no options
    with pytest.raises(ValueError, match="has no option 'class_'; its options: none"):
        c.colorize(np.zeros((8, 8), np.float32), class_="goldfish")
    cic = Colorizer("cic", device="cpu", size=32)
    with pytest.raises(ValueError, match="out of range"):
        cic.colorize(np.zeros((8, 8), np.float32), temperature=-1)
    with pytest.raises(ValueError, match="expected a number"):
        cic.colorize(np.zeros((8, 8), np.float32), temperature="hot")
    with pytest.raises(ValueError, match="its options: rebalance, shrink, temperature"):
        cic.colorize(np.zeros((8, 8), np.float32), samples=3)
    src = tmp_path / "a.png"
    color_image(20, 20).convert("L").save(src)
    assert main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", "cic", "--samples", "3", "--no-progress"]) == 2
    assert "has no option 'samples'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_rough_edges(tiny_model, tmp_path, capsys, shard):
    """--reference to a missing file, gray-only training data, --threads, `tinct models | head`."""
    import subprocess
    import sys

    src = tmp_path / "a.png"
    color_image(20, 20).convert("L").save(src)
    assert main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", "bigcolor", "--reference",
                 str(tmp_path / "missing.png"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.png" in err[0]
    gray_only = tmp_path / "gray"
    gray_only.mkdir()
    for i in range(3):
        color_image(40, 40, seed=i).convert("L").convert("RGB").save(gray_only / f"g{i}.png")
    assert main(["train", "unet_gan", "--data", str(gray_only), "--out", str(tmp_path / "run"), "--workers", "0",
                 "--no-progress", "--set", "steps=1"]) == 2
    assert "no color images to train on (3 dropped" in capsys.readouterr().err
    assert main(["colorize", str(src), "-o", str(tmp_path / "t"), "--model", str(tiny_model), "--threads", "1", "--no-progress"]) == 0
    proc = subprocess.run(f"{sys.executable} -m tinct models | true", shell=True, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_an_interrupted_batch_prints_its_summary_and_leaves_no_temporary_files(tiny_model, tmp_path, capsys, monkeypatch, how):
    import os
    import signal

    from tinct.pipeline import Colorizer as C

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        color_image(24, 24, seed=i).convert("L").save(src / f"p{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".p2.png.tmp-999999999"  # left by a killed earlier run (no such process)
    stale.write_bytes(b"partial")
    calls = []
    original = C.colorize_loaded

    def colorize_loaded(self, loaded, **opts):
        calls.append(1)
        if len(calls) == 2:  # the signal arrives while the second image is being colorized
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return original(self, loaded, **opts)

    monkeypatch.setattr(C, "colorize_loaded", colorize_loaded)
    code = main(["colorize", str(src), "-o", str(out), "--model", str(tiny_model), "--size", "32", "--no-progress"])
    assert code == (143 if how == "sigterm" else 130)  # 128 + the signal, as a shell reports it
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("interrupted: done 1, skipped 0, failed 0")
    assert sorted(p.name for p in out.iterdir()) == [".p2.png.tmp-999999999", "p0.png"]
    monkeypatch.setattr(C, "colorize_loaded", original)
    assert main(["colorize", str(src), "-o", str(out), "--model", str(tiny_model), "--size", "32", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]  # resumed; the stale file removed


def test_the_same_input_named_twice_is_colorized_once(tiny_model, tmp_path, capsys):
    src = tmp_path / "a.png"
    color_image(20, 20).convert("L").save(src)
    argv = ["colorize", str(src), str(src), str(tmp_path / "*.png"), "-o", str(tmp_path / "o"), "--model", str(tiny_model),
            "--size", "32", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "done 1, skipped 0, failed 0"
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]
