"""The contact sheet of `tinct figure sheet`, on tiny synthetic images with the shipped models."""

import numpy as np
from PIL import Image

from conftest import color_image
from tinct.cli import main
from tinct.figures import model_sheet


def test_model_sheet_layout_with_shipped_models(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    color_image(48, 32, seed=1).convert("L").save(a)  # 3:2, gray
    color_image(24, 40, seed=2).save(b)  # 3:5, color (its luminance is used)
    sheet = model_sheet([a, b], ["default", "cic"], height=40, device="cpu")
    pad, label_h, col_w = 4, 18, 60  # widest row: 48 x 32 scaled to height 40
    assert sheet.size == (pad + 3 * (col_w + pad), label_h + 2 * (40 + pad))
    arr = np.asarray(sheet).astype(int)
    x_in, x_def, x_cic = (pad + c * (col_w + pad) for c in range(3))
    top = label_h
    cell_in = arr[top:top + 40, x_in:x_in + col_w]
    assert np.array_equal(cell_in[..., 0], cell_in[..., 1]) and np.array_equal(cell_in[..., 1], cell_in[..., 2])  # input in gray
    for x in (x_def, x_cic):  # model columns are colorized: not gray everywhere
        cell = arr[top:top + 40, x:x + col_w]
        assert np.abs(cell[..., 0] - cell[..., 2]).max() > 3
    # the narrower second row (24 x 40 -> 24 x 40) is centred, white beside it
    row2 = arr[top + 44:top + 84, x_in:x_in + col_w]
    assert (row2[:, :18] == 255).all() and (row2[:, -18:] == 255).all()
    assert not (row2[:, 18:42] == 255).all()
    assert (arr[:label_h, x_def:x_def + col_w] < 128).any()  # a label on top


def test_figure_sheet_command(tmp_path, capsys):
    src = tmp_path / "x.png"
    color_image(40, 40, seed=3).convert("L").save(src)
    out = tmp_path / "sheet.jpg"
    argv = ["figure", "sheet", str(src), str(src), "-o", str(out), "--models", "default", "--height", "32", "--device", "cpu"]
    assert main(argv) == 0
    assert Image.open(out).size == (4 + 2 * (32 + 4), 18 + 2 * (32 + 4))
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # never overwritten without --force
    assert main(["figure", "sheet", str(tmp_path / "missing.png"), "-o", str(tmp_path / "y.jpg")]) == 2
    assert not (tmp_path / "y.jpg").exists()
