"""Issue 14 (hardening): what a hostile tester or an unattended batch on odd files ran into."""

import numpy as np
import pytest
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.io import input_identity, output_source
from tinct.pipeline import Colorizer, colorize_files


@pytest.fixture(scope="module")
def colorizer(tiny_model):
    return Colorizer(str(tiny_model), device="cpu", size=32)


# item 6: the Python API


def test_gray_arrays_of_every_type_are_read_in_their_own_range(colorizer):
    """A uint16 array, or a float array in 0..255, used to give an all-white image."""
    gray8 = np.asarray(color_image(40, 30).convert("L"))
    reference = np.asarray(colorizer.colorize(gray8), dtype=int)
    assert reference.std() > 10  # not a flat white image
    for arr in (gray8.astype(np.uint16) * 257, gray8.astype(np.float32) / 255, gray8.astype(np.int64)):
        assert np.abs(np.asarray(colorizer.colorize(arr), dtype=int) - reference).max() <= 2, arr.dtype
    with pytest.raises(ValueError, match=r"float gray array holds \d+\.\.2\d\d; expected values in \[0, 1\]"):
        colorizer.colorize(gray8.astype(np.float32))
    with pytest.raises(ValueError, match="use uint16 for 16-bit data"):
        colorizer.colorize(gray8.astype(np.int32) * 257)
    with pytest.raises(ValueError, match="NaN"):
        colorizer.colorize(np.full((8, 8), np.nan, np.float32))


def test_options_that_give_several_images_are_not_cut_to_the_first():
    """`samples=3` used to return only the first image."""
    import tinct

    bigcolor = Colorizer("bigcolor", device="cpu", size=32)
    gray = np.asarray(color_image(32, 32).convert("L"))
    with pytest.raises(ValueError, match="give 3 images .* use colorize_all"):
        bigcolor.colorize(gray, samples=3)
    outputs = bigcolor.colorize_all(gray, samples=3)
    assert [suffix for suffix, _ in outputs] == ["_s0", "_s1", "_s2"]
    assert not np.array_equal(np.asarray(outputs[0][1]), np.asarray(outputs[1][1]))
    assert len(tinct.colorize_all(gray, model="bigcolor", size=32, device="cpu", samples=2)) == 2
    assert isinstance(bigcolor.colorize(gray, samples=1), Image.Image)


# item 9: output names


def _two_cats(tmp_path):
    for i, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        color_image(30, 20, seed=i).convert("L").save(tmp_path / folder / "cat.jpg")
    return str(tmp_path / "a" / "cat.jpg"), str(tmp_path / "b" / "cat.jpg")


def test_same_names_from_two_folders_do_not_depend_on_the_order_of_the_inputs(colorizer, tmp_path):
    a, b = _two_cats(tmp_path)
    first = colorize_files(colorizer, [a, b], tmp_path / "o1", progress=False)
    second = colorize_files(colorizer, [b, a], tmp_path / "o2", progress=False)
    assert [p.name for p in first.outputs] == ["cat.png", "cat_jpg.png"]
    assert [p.name for p in second.outputs] == ["cat_jpg.png", "cat.png"]  # b's output is cat_jpg.png both times
    for name in ("cat.png", "cat_jpg.png"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    assert output_source(tmp_path / "o1" / "cat.png") == input_identity(a)
    assert output_source(tmp_path / "o1" / "cat_jpg.png") == input_identity(b)


def test_a_later_run_never_takes_another_inputs_output_for_its_own(colorizer, tmp_path):
    """A later run with only b/cat.jpg used to be 'skipped' because of a/cat.jpg's cat.png."""
    a, b = _two_cats(tmp_path)
    out = tmp_path / "out"
    s = colorize_files(colorizer, [a], out, progress=False)
    assert [p.name for p in s.outputs] == ["cat.png"]
    a_output = (out / "cat.png").read_bytes()
    s = colorize_files(colorizer, [b], out, progress=False)
    assert (s.done, s.skipped) == (1, 0) and [p.name for p in s.outputs] == ["cat_jpg.png"]
    assert (out / "cat.png").read_bytes() == a_output
    s = colorize_files(colorizer, [b, a], out, progress=False)  # both again: each finds its own output
    assert (s.done, s.skipped) == (0, 2)
    s = colorize_files(colorizer, [b], out, force=True, progress=False)  # --force redoes b's own output only
    assert [p.name for p in s.outputs] == ["cat_jpg.png"] and (out / "cat.png").read_bytes() == a_output
    jpg = colorize_files(colorizer, [b], tmp_path / "j", fmt="jpg", progress=False)  # JPEG outputs record it too
    assert output_source(jpg.outputs[0]) == input_identity(b)


# item 10: what used to be accepted silently


def test_an_empty_folder_a_pattern_without_match_and_an_output_file_are_said(tiny_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    argv = ["--model", str(tiny_model), "--size", "32", "--no-progress"]
    assert main(["colorize", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), *argv]) == 1  # was "done 0", exit 0
    captured = capsys.readouterr()
    assert "empty: no images in this folder" in captured.err
    assert captured.out.strip().splitlines()[-1] == "done 0, skipped 0, failed 1"
    assert main(["colorize", str(tmp_path / "*.png"), "-o", str(tmp_path / "o"), *argv]) == 1
    assert "no file matches this pattern" in capsys.readouterr().err
    src = tmp_path / "a.png"
    color_image(20, 20).convert("L").save(src)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert main(["colorize", str(src), str(src), "-o", str(out), *argv]) == 2  # was one FileExistsError per input
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a file, not a folder" in err[0]


def test_gif_files_in_a_folder_are_colorized_and_extra_frames_are_said(colorizer, tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    frames = [color_image(30, 20, seed=i).convert("L").convert("P") for i in range(4)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    color_image(30, 20).convert("L").save(src / "still.gif")
    with caplog.at_level("WARNING"):
        s = colorize_files(colorizer, [str(src)], tmp_path / "out", progress=False)
    assert s.done == 2 and sorted(p.name for p in s.outputs) == ["anim.png", "still.png"]
    warned = [r.getMessage() for r in caplog.records if "frames" in r.getMessage()]
    assert len(warned) == 1 and "anim.gif: 4 frames" in warned[0] and "only the first is colorized" in warned[0]
    with caplog.at_level("WARNING"):
        colorizer.colorize(Image.open(src / "anim.gif"))  # the Python API says it too
    assert any("4 frames" in r.getMessage() for r in caplog.records[len(warned):])


# item 12: the minor ones


def test_version_and_verbose_after_the_subcommand(capsys):
    from tinct import __version__
    from tinct.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"tinct {__version__}"
    parser = build_parser()
    assert parser.parse_args(["colorize", "x", "-o", "y", "-v"]).verbose is True
    assert parser.parse_args(["-v", "colorize", "x", "-o", "y"]).verbose is True  # not reset by the subcommand
    assert parser.parse_args(["colorize", "x", "-o", "y"]).verbose is False
    assert parser.parse_args(["eval", "--pred", "p", "--gt", "g", "--no-progress"]).no_progress is True
    eval_help = next(a.help for a in parser._subparsers._group_actions[0].choices["eval"]._actions if a.dest == "report")
    assert "per_image.csv" in eval_help


def test_training_counts_its_data_once_and_resumes_without_data(shard, tmp_path, caplog):
    from conftest import TINY_UNET

    import json

    sets = []
    for k, v in {**TINY_UNET, "steps": 2}.items():
        sets += ["--set", f"{k}={json.dumps(v)}"]
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert main(["train", "unet_gan", "--data", str(shard), "--out", str(out), "--workers", "0", "--no-progress", *sets]) == 0
    assert sum(r.getMessage().startswith("data: ") for r in caplog.records) == 1  # was printed twice
    # --resume alone takes the run's data from its checkpoint (it used to need --data again)
    assert main(["train", "unet_gan", "--out", str(out), "--resume", "--workers", "0", "--no-progress", "--set", "steps=3"]) == 0
    from tinct.train import load_checkpoint

    assert load_checkpoint(out)["step"] == 3
    assert main(["train", "unet_gan", "--out", str(tmp_path / "new"), "--workers", "0", "--no-progress"]) == 2  # no data, no run


def test_eval_pred_says_what_is_missing_resized_or_gray_and_scores_the_rest(tmp_path, capsys):
    import json

    gt, pred = tmp_path / "gt", tmp_path / "mytool"
    gt.mkdir()
    pred.mkdir()
    for i in range(5):
        color_image(64, 48, seed=i).save(gt / f"img{i}.jpg")
    color_image(64, 48, seed=0).save(pred / "img0.png")
    color_image(32, 24, seed=1).save(pred / "img1.png")  # another size
    color_image(64, 48, seed=2).convert("L").save(pred / "img2.png")  # no color
    # img3 and img4: no prediction (it used to stop at the first missing one)
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 3
    err = captured.err
    assert "no prediction for 2 of 5 ground-truth images (img3, img4); scoring the 3 that have one" in err
    assert "1 prediction(s) are not the size of their ground truth" in err and "img1.png 32x24 (ground truth 64x48)" in err
    assert "1 prediction(s) are gray" in err and "img2.png" in err


# item 13: colors the image cannot carry


@pytest.mark.parametrize("model", ["tiny", "cic", "unet_gan"])
def test_a_flat_gray_image_stays_gray(tiny_model, model):
    """A flat gray image used to come out bluish (the models' tint for a blank input)."""
    c = Colorizer(str(tiny_model) if model == "tiny" else model, device="cpu")
    rng = np.random.default_rng(0)
    for level in (0.05, 0.2, 0.5, 0.8):
        flat = np.full((64, 80), level, np.float32) + rng.integers(-1, 2, (64, 80)) / 255.0  # +-1 level of noise
        out = np.asarray(c.colorize(flat.astype(np.float32)), dtype=int)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all(), (model, level)
        assert np.abs(out[..., 0] - np.round(flat * 255)).max() <= 1
    textured = np.asarray(color_image(80, 64).convert("L"))
    out = np.asarray(c.colorize(textured), dtype=int)
    assert np.abs(out[..., 0] - out[..., 2]).max() > 3  # an image with detail is still colorized


def test_ctrl_c_outside_a_batch_is_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the model loads used to print a double traceback."""
    import tinct.pipeline

    def interrupted(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(tinct.pipeline, "load_model", interrupted)
    src = tmp_path / "a.png"
    color_image(20, 20).convert("L").save(src)
    try:
        code = main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", str(tiny_model), "--no-progress"])
    except KeyboardInterrupt:  # a regression must fail this test, not stop the whole session
        pytest.fail("KeyboardInterrupt escaped tinct.cli.main")
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["tinct colorize: interrupted"]


# item 2: the model card names the data as given


def test_the_model_card_shows_a_data_folder_given_with_a_trailing_slash():
    """`--data train200/` used to be shown as "Data: /train200"."""
    from tinct.weights import _short_path

    assert _short_path("train200/") == "train200"
    assert _short_path("/data/photos/") == "data/photos"
    assert _short_path("shards/train-0001.tar") == "shards/train-0001.tar"
