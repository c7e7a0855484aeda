"""Image I/O survives real files: every mode and format, EXIF, alpha, bombs, broken files."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import color_image
from tinct.io import ImageReadError, read_image, write_image


def save(im, path, **kw):
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("suffix", ["jpg", "png", "tif", "webp", "bmp"])
def test_formats(tmp_path, suffix):
    path = save(color_image().convert("L"), tmp_path / f"x.{suffix}")
    loaded = read_image(path)
    assert loaded.gray.shape == (40, 48) and loaded.gray.dtype == np.float32
    assert 0 <= loaded.gray.min() and loaded.gray.max() <= 1
    assert not loaded.was_color


def test_modes(tmp_path):
    base = color_image()
    gray8 = np.asarray(base.convert("L"))
    cases = {
        "L": base.convert("L"),
        "LA": base.convert("LA"),
        "RGB": base,
        "RGBA": base.convert("RGBA"),
        "P": base.convert("P"),
        "CMYK": base.convert("CMYK"),
        "I;16": Image.fromarray(gray8.astype(np.uint16) * 257),
        "I": Image.fromarray(gray8.astype(np.int32) * 257),
        "F": Image.fromarray(gray8.astype(np.float32) / 255.0),
    }
    for mode, im in cases.items():
        suffix = "jpg" if mode == "CMYK" else "tif" if mode in ("I", "F") else "png"
        path = save(im, tmp_path / f"{mode.replace(';', '')}.{suffix}")
        loaded = read_image(path)
        assert loaded.size == (48, 40), mode
        # every mode yields the same luminance, up to 8-bit and JPEG rounding
        tol = 0.08 if mode in ("CMYK", "P") else 0.01
        assert np.abs(loaded.gray - gray8 / 255.0).mean() < tol, mode
        assert (loaded.alpha is not None) == (mode in ("LA", "RGBA")), mode
        assert loaded.was_color == (mode in ("RGB", "RGBA", "P", "CMYK")), mode


def test_exif_orientation_applied(tmp_path):
    im = color_image(48, 40).convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes())
    assert read_image(path).size == (40, 48)


def test_decompression_bomb_guard(tmp_path):
    path = save(Image.new("L", (400, 300)), tmp_path / "big.png")
    with pytest.raises(ImageReadError) as err:
        read_image(path, max_pixels=100_000)
    assert "big.png" in str(err.value) and "over the limit" in str(err.value) and "max-pixels" in str(err.value)
    assert read_image(path, max_pixels=200_000).size == (400, 300)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is not an image at all", "not an image"),
    ],
)
def test_bad_files_name_file_and_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert name in str(err.value) and reason in str(err.value)


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    color_image(200, 200).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert "cut.png" in str(err.value) and ("truncated" in str(err.value) or "decode" in str(err.value))


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    target = tmp_path / "out" / "x.png"
    write_image(color_image(), target)
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        write_image(color_image(seed=3), target)
    assert target.read_bytes() == before
    write_image(color_image(seed=3), target, force=True)
    assert target.read_bytes() != before
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.png"]  # no temp files left


def test_write_failure_leaves_nothing(tmp_path):
    class Broken:
        mode = "RGB"

        def save(self, *a, **k):
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_image(Broken(), tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []
