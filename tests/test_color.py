import numpy as np
import pytest
import torch
from skimage import color as skcolor

from tinct import color


@pytest.fixture
def random_rgb():
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 3))


def to_t(arr):
    return torch.from_numpy(arr).permute(2, 0, 1)[None].double()


def to_np(t):
    return t[0].permute(1, 2, 0).numpy()


def test_rgb_to_lab_matches_skimage(random_rgb):
    ours = to_np(color.rgb_to_lab(to_t(random_rgb)))
    assert np.abs(ours - skcolor.rgb2lab(random_rgb)).max() <= 1e-4


def test_lab_to_rgb_matches_skimage():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (16, 16)), rng.uniform(-110, 110, (16, 16)), rng.uniform(-110, 110, (16, 16))], -1)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skcolor.lab2rgb(lab)
    ours = to_np(color.lab_to_rgb(to_t(lab)))
    assert np.abs(ours - ref).max() <= 1e-4
    assert ours.min() >= 0 and ours.max() <= 1  # out-of-gamut colors are clamped


def test_xyz_and_yuv_match_skimage(random_rgb):
    assert np.abs(to_np(color.rgb_to_xyz(to_t(random_rgb))) - skcolor.rgb2xyz(random_rgb)).max() <= 1e-4
    assert np.abs(to_np(color.rgb_to_yuv(to_t(random_rgb))) - skcolor.rgb2yuv(random_rgb)).max() <= 1e-4


def test_round_trips(random_rgb):
    x = to_t(random_rgb)
    assert torch.allclose(color.lab_to_rgb(color.rgb_to_lab(x)), x, atol=1e-6)
    assert torch.allclose(color.yuv_to_rgb(color.rgb_to_yuv(x)), x, atol=1e-6)
    assert torch.allclose(color.linear_to_srgb(color.srgb_to_linear(x)), x, atol=1e-7)
    assert torch.allclose(color.xyz_to_rgb(color.rgb_to_xyz(x)), x, atol=1e-6)


def test_batched_and_float32():
    x = torch.rand(2, 4, 3, 8, 8)
    lab = color.rgb_to_lab(x)
    assert lab.shape == x.shape and lab.dtype == torch.float32
    assert torch.allclose(color.rgb_to_lab(x[1, 2]), lab[1, 2], atol=1e-5)


def test_differentiable_everywhere():
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    x[..., 0, 0] = 0.0  # black: the pow branches must not produce NaN gradients
    x.requires_grad_(True)
    color.rgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    lab = torch.tensor([[[[50.0]], [[90.0]], [[-100.0]]]], requires_grad=True)
    color.lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_luminance_and_gray_lightness():
    rgb = torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1)
    assert color.luminance(rgb).item() == pytest.approx(0.2989 + 0.5870 * 0.5 + 0.1140 * 0.25)
    gray = torch.linspace(0, 1, 11).view(1, 11, 1)
    neutral = gray.expand(3, 11, 1)
    lab = color.rgb_to_lab(neutral)
    assert torch.allclose(color.gray_to_lightness(gray), lab[:1], atol=1e-5)
    # neutral gray has (almost) no chroma; skimage's matrix rows and white point differ by 1e-4
    assert lab[1:].abs().max() < 1e-2


def test_fast_8bit_output_matches_exact_path():
    rng = np.random.default_rng(2)
    lab = torch.from_numpy(np.stack([rng.uniform(0, 100, (64, 64)), rng.uniform(-90, 90, (64, 64)), rng.uniform(-90, 90, (64, 64))])).float()
    exact = (color.lab_to_rgb(lab.double()) * 255 + 0.5).floor()
    fast = color.lab_to_srgb8(lab).double()
    assert fast.dtype == torch.float64 and (fast - exact).abs().max() <= 1


def test_differentiable_colorfulness_matches_the_evaluation_statistic():
    from tinct.color import colorfulness
    from tinct.data import colorfulness as colorfulness_8bit

    rgb8 = torch.randint(0, 256, (3, 3, 24, 40), generator=torch.Generator().manual_seed(0))
    rgb8[1, 2] = rgb8[1, 0]  # a less colorful image
    rgb8[2] = rgb8[2, :1]  # a gray one
    got = colorfulness(rgb8.double() / 255)
    expected = [colorfulness_8bit(img.permute(1, 2, 0).numpy().astype("uint8")) for img in rgb8]
    assert got.tolist() == pytest.approx(expected, abs=1e-2)
    assert expected[2] == 0 and expected[1] < expected[0]
    gray = (torch.full((1, 3, 8, 8), 0.5)).requires_grad_()
    colorfulness(gray).sum().backward()
    assert torch.isfinite(gray.grad).all()


def test_bound_chroma_keeps_colors_displayable_and_leaves_displayable_ones_alone():
    """Dark regions used to get saturated blotches of another hue from per-channel clipping."""
    from tinct.color import bound_chroma, lab_to_linear, max_chroma_table, rgb_to_lab

    table = max_chroma_table()
    assert table[0].max() < 0.01 and table[100].max() < 0.01  # black and white hold no chroma
    assert table[50].min() > 25 and table[50].max() > 100
    lightness = torch.tensor([2.0, 5.0, 50.0, 97.0]).view(1, 1, 1, 4)
    ab = torch.tensor([[60.0, -60.0, 60.0, 60.0], [60.0, 60.0, 60.0, 60.0]]).view(1, 2, 1, 4)
    bounded = bound_chroma(lightness, ab)
    linear = lab_to_linear(torch.cat([lightness, bounded], 1), clamp=False)
    assert linear.min() > -0.02 and linear.max() < 1.02  # displayable up to the table's 1-degree steps
    hue_before = torch.atan2(ab[:, 1], ab[:, 0])
    hue_after = torch.atan2(bounded[:, 1], bounded[:, 0])
    assert torch.allclose(hue_before, hue_after, atol=1e-5)  # only the chroma shrinks
    assert bounded[..., :2].norm(dim=1).max() < 15  # dark pixels: far less chroma than asked
    rgb = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)[None]
    kept = bound_chroma(lab[:, :1], lab[:, 1:])
    assert (kept - lab[:, 1:]).abs().max() < 2.0  # real sRGB colors: (nearly) untouched
