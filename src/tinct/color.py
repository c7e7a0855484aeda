"""Color science on torch tensors: sRGB, linear RGB, XYZ, CIE Lab (D65), YUV, luminance.

All functions are batched (``[..., 3, H, W]`` channel-first; any leading dims) and
differentiable. Ranges:

- ``rgb``: sRGB in [0, 1] (gamma encoded)
- ``linear``: linear-light RGB in [0, 1]
- ``xyz``: CIE XYZ, D65 white, Y in [0, 1]
- ``lab``: L in [0, 100], a and b roughly in [-110, 110]
- ``yuv``: Y in [0, 1], U in [-0.436, 0.436], V in [-0.615, 0.615]

Constants follow scikit-image (``skimage.color``), which the tests use as reference.
Out-of-gamut Lab colors are handled in exactly one place: :func:`lab_to_rgb` clamps
linear RGB to [0, 1] before gamma encoding (``clamp=True``, the default).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "LUMA_WEIGHTS",
    "AB_SCALE",
    "srgb_to_linear",
    "linear_to_srgb",
    "rgb_to_xyz",
    "xyz_to_rgb",
    "xyz_to_lab",
    "lab_to_xyz",
    "rgb_to_lab",
    "lab_to_rgb",
    "lab_to_linear",
    "lab_to_srgb8",
    "rgb_to_yuv",
    "yuv_to_rgb",
    "luminance",
    "luminance_hwc",
    "gray_to_lightness",
    "lightness_to_gray",
    "colorfulness",
    "AB_GRID",
    "ab_lattice",
    "ab_bins",
    "srgb_gamut_bins",
    "nearest_bin",
]

#: Weights of the luminance formula used everywhere a gray image is made from RGB.
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)
#: Networks predict ab / AB_SCALE so that their targets lie in about [-1, 1].
AB_SCALE = 110.0

_XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

_YUV_FROM_RGB = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.14714119, -0.28886916, 0.43601035],
        [0.61497538, -0.51496512, -0.10001026],
    ],
    dtype=torch.float64,
)
_RGB_FROM_YUV = torch.linalg.inv(_YUV_FROM_RGB)

_LAB_EPSILON = 0.008856
_LAB_KAPPA = 7.787
_LAB_F_BREAK = 0.2068966


def _apply_matrix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multiply the channel axis (dim -3) of ``x`` [..., 3, H, W] by a 3x3 matrix."""
    m = matrix.to(dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Gamma-decode sRGB [0, 1] to linear RGB [0, 1]."""
    high = ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, high, rgb / 12.92)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Gamma-encode linear RGB to sRGB (no clamping; see :func:`lab_to_rgb`)."""
    high = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(linear > 0.0031308, high, 12.92 * linear)


def rgb_to_xyz(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [..., 3, H, W] in [0, 1] to CIE XYZ (D65)."""
    return _apply_matrix(_XYZ_FROM_RGB, srgb_to_linear(rgb))


def xyz_to_rgb(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ (D65) to sRGB, not clamped (colors for display go through :func:`lab_to_rgb`)."""
    return linear_to_srgb(_apply_matrix(_RGB_FROM_XYZ, xyz))


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    cube_root = t.clamp(min=_LAB_EPSILON) ** (1 / 3)
    return torch.where(t > _LAB_EPSILON, cube_root, _LAB_KAPPA * t + 16 / 116)


def _lab_f_inverse(f: torch.Tensor) -> torch.Tensor:
    cube = f.clamp(min=_LAB_F_BREAK)
    return torch.where(f > _LAB_F_BREAK, cube * cube * cube, (f - 16 / 116) / _LAB_KAPPA)


def xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ (D65) [..., 3, H, W] to Lab (L in [0, 100])."""
    white = _D65_WHITE.to(dtype=xyz.dtype, device=xyz.device).view(3, 1, 1)
    f = _lab_f(xyz / white)
    fx, fy, fz = f.unbind(dim=-3)
    lightness = 116 * fy - 16
    return torch.stack([lightness, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_xyz(lab: torch.Tensor) -> torch.Tensor:
    """Lab [..., 3, H, W] to CIE XYZ (D65); negative Z (impossible colors) is set to 0."""
    lightness, a, b = lab.unbind(dim=-3)
    fy = (lightness + 16) / 116
    fx = fy + a / 500
    fz = (fy - b / 200).clamp(min=0)
    white = _D65_WHITE.to(dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    return _lab_f_inverse(torch.stack([fx, fy, fz], dim=-3)) * white


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [..., 3, H, W] in [0, 1] to Lab: L in [0, 100], ab in about [-110, 110]."""
    return xyz_to_lab(rgb_to_xyz(rgb))


def lab_to_linear(lab: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Lab [..., 3, H, W] to linear RGB.

    Out-of-gamut colors: linear RGB is clipped to [0, 1] (``clamp=True``), which never
    produces values outside [0, 1]; the pipeline first bounds the chroma to what sRGB can
    show (:func:`bound_chroma`), so that clipping only removes rounding-level excess.
    """
    linear = _apply_matrix(_RGB_FROM_XYZ, lab_to_xyz(lab))
    return linear.clamp(0.0, 1.0) if clamp else linear


_HUE_STEPS = 360


@lru_cache(maxsize=1)
def max_chroma_table() -> torch.Tensor:
    """Largest chroma sRGB can show at each lightness and hue: [101, 360] float32 (L = 0..100 in
    steps of 1, hue 0..359 degrees), by bisection on ``lab_to_linear`` without clipping."""
    lightness = torch.arange(101, dtype=torch.float64)[:, None].expand(101, _HUE_STEPS)
    hue = torch.deg2rad(torch.arange(_HUE_STEPS, dtype=torch.float64))[None].expand(101, _HUE_STEPS)
    lo, hi = torch.zeros_like(lightness), torch.full_like(lightness, 200.0)
    for _ in range(30):
        mid = (lo + hi) / 2
        lab = torch.stack([lightness, mid * torch.cos(hue), mid * torch.sin(hue)])  # [3, 101, 360]
        linear = lab_to_linear(lab, clamp=False)
        inside = ((linear >= -1e-9) & (linear <= 1 + 1e-9)).all(dim=0)
        lo, hi = torch.where(inside, mid, lo), torch.where(inside, hi, mid)
    return lo.float()


def bound_chroma(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Scale ab down where its chroma exceeds what sRGB can show at that lightness and hue.

    This is where the color pipeline keeps predicted colors displayable: near L = 0 and
    L = 100 sRGB holds almost no chroma, and clipping an out-of-gamut color channel by channel
    (:func:`lab_to_linear`) turns a large predicted chroma in a dark corner into a saturated
    blotch of another hue. Hue and lightness are kept; only the chroma shrinks. The pipeline
    applies it to the prediction at the working resolution (regions; cheap), before the chroma
    is upsampled to the full resolution.

    Args:
        lightness: [B, 1, H, W], L in [0, 100].
        ab: [B, 2, H, W].
    Returns:
        ab [B, 2, H, W] with chroma <= the sRGB limit at (L, hue), looked up at the nearest
        integer L and degree of hue.
    """
    table = max_chroma_table().to(ab.device)
    chroma = torch.linalg.vector_norm(ab, dim=1, keepdim=True)  # [B, 1, H, W]
    hue = torch.rad2deg(torch.atan2(ab[:, 1:2], ab[:, 0:1])).round().long() % _HUE_STEPS
    row = lightness.round().long().clamp(0, 100)
    limit = table[row, hue]  # [B, 1, H, W]
    return ab * (limit / chroma.clamp(min=1e-6)).clamp(max=1.0)


def lab_to_rgb(lab: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Lab [..., 3, H, W] to sRGB in [0, 1] (out-of-gamut: see :func:`lab_to_linear`)."""
    return linear_to_srgb(lab_to_linear(lab, clamp=clamp))


_SRGB8_LUT_SIZE = 1 << 16
_srgb8_lut: torch.Tensor | None = None


def lab_to_srgb8(lab: torch.Tensor) -> torch.Tensor:
    """Lab [..., 3, H, W] to 8-bit sRGB (uint8), fast and not differentiable.

    Gamma encoding goes through a 65536-entry table over clamped linear RGB, exact to
    the 8-bit rounding for all but a handful of values.
    """
    global _srgb8_lut
    if _srgb8_lut is None:
        grid = torch.linspace(0, 1, _SRGB8_LUT_SIZE, dtype=torch.float64)
        _srgb8_lut = (linear_to_srgb(grid) * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    index = (lab_to_linear(lab) * (_SRGB8_LUT_SIZE - 1) + 0.5).long()
    return _srgb8_lut.to(lab.device)[index]


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [..., 3, H, W] to YUV (BT.601 analog, as ``skimage.color.rgb2yuv``)."""
    return _apply_matrix(_YUV_FROM_RGB, rgb)


def yuv_to_rgb(yuv: torch.Tensor) -> torch.Tensor:
    """YUV [..., 3, H, W] back to sRGB (not clamped)."""
    return _apply_matrix(_RGB_FROM_YUV, yuv)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Gray value ``0.2989 R + 0.5870 G + 0.1140 B`` of sRGB [..., 3, H, W] -> [..., 1, H, W]."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (rgb * w).sum(dim=-3, keepdim=True)


def luminance_hwc(rgb: np.ndarray) -> np.ndarray:
    """:func:`luminance` of a channel-last array [..., H, W, 3] -> [..., H, W] (same dtype, not clipped):
    how images read from files (:mod:`tinct.io`) and the evaluation's ground truth become gray."""
    return rgb[..., 0] * LUMA_WEIGHTS[0] + rgb[..., 1] * LUMA_WEIGHTS[1] + rgb[..., 2] * LUMA_WEIGHTS[2]


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """Lab lightness L in [0, 100] of a neutral gray sRGB value in [0, 1] (same shape).

    For R = G = B = g the XYZ Y component equals the linearized g, so L depends on g only.
    """
    return 116 * _lab_f(srgb_to_linear(gray)) - 16


def lightness_to_gray(lightness: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`gray_to_lightness`: Lab L in [0, 100] -> neutral sRGB gray in [0, 1]."""
    return linear_to_srgb(_lab_f_inverse((lightness + 16) / 116)).clamp(0.0, 1.0)


def colorfulness(rgb: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Hasler-Suesstrunk colorfulness per image: sRGB [B, 3, H, W] in [0, 1] -> [B] (0..255 scale).

    The one implementation: the evaluation and the data filter call it through
    :func:`tinct.data.colorfulness` with ``eps`` = 0 (the exact statistic); losses keep the
    default ``eps``, added under the square roots so they stay differentiable on gray images.
    """
    rgb = rgb * 255.0
    rg = (rgb[:, 0] - rgb[:, 1]).abs().flatten(1)
    yb = (0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]).abs().flatten(1)
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False) + eps).sqrt()
    mean = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + eps).sqrt()
    return spread + 0.3 * mean


# --- ab quantization: CIC's bins, the evaluation's AuC prior ---------------------------------------
#: spacing of the ab quantization grid
AB_GRID = 10.0


#: The paper's Q = 313 bins (Zhang et al.'s released set) as the b-range of each a-column:
#: a -> (b_min, b_max); every multiple of 10 from b_min to b_max is a bin center.
_PAPER_B_RANGES = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100),
    -40: (-40, 100), -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100),
    10: (-80, 90), 20: (-80, 90), 30: (-90, 90), 40: (-100, 90), 50: (-100, 80),
    60: (-110, 80), 70: (-110, 80), 80: (-110, 70), 90: (-110, 70), 100: (-90, 0),
}


def ab_bins() -> torch.Tensor:
    """The paper's Q = 313 in-gamut ab bins: centers [313, 2] (a, b) on the grid-10 lattice,
    sorted by a then b.

    309 of them are exactly :func:`srgb_gamut_bins` (derived from the sRGB gamut); Zhang et
    al.'s released set adds 4 edge bins that no sRGB color's cell touches: (40, 90), (100, -90),
    (100, -10), (100, 0). tinct uses the released set so that its 313-way output means what
    the paper's does; ``tests/test_cic.py`` re-derives the 309 and checks the relation.
    """
    centers = [(a, b) for a, (lo, hi) in sorted(_PAPER_B_RANGES.items()) for b in range(lo, hi + 1, 10)]
    return torch.tensor(centers, dtype=torch.float32)


def srgb_gamut_bins() -> torch.Tensor:
    """Bins derived from the sRGB gamut: centers [309, 2], sorted by a then b.

    A grid point is a bin when it is a corner of a grid-10 cell that holds the ab of an
    8-bit sRGB color (at any lightness): every bin a soft-encoding or an interpolation of an
    in-gamut color can lean on. The colors tried are the cube's six faces at full 8-bit
    resolution (the chroma extremes of every hue lie there) and its interior at a step of 8;
    enumerating all 16.7 M colors gives the same 309 bins.
    """
    return _srgb_gamut_bins_cached().clone()


@lru_cache(maxsize=1)
def _srgb_gamut_bins_cached() -> torch.Tensor:
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    u, v = (x.reshape(-1) for x in torch.meshgrid(levels, levels, indexing="ij"))
    colors = []
    for axis in range(3):
        for value in (0.0, 1.0):
            channels = [u, v]
            channels.insert(axis, torch.full_like(u, value))
            colors.append(torch.stack(channels))
    coarse = levels[::8]
    colors.append(torch.stack([x.reshape(-1) for x in torch.meshgrid(coarse, coarse, coarse, indexing="ij")]))
    ab = rgb_to_lab(torch.cat(colors, dim=1)[:, :, None])[1:, :, 0]  # [2, N]
    low = torch.unique(torch.floor(ab / AB_GRID).long().T, dim=0)  # lower-left corner of each cell
    corners = torch.cat([low + torch.tensor([da, db]) for da in (0, 1) for db in (0, 1)])
    return torch.unique(corners, dim=0).float() * AB_GRID  # unique sorts by a, then b


@lru_cache(maxsize=4)
def _grid_lookup(bins_key: tuple) -> torch.Tensor:
    """Nearest bin index for every cell of the grid-10 lattice over [-120, 120]^2: [25, 25]."""
    bins = torch.tensor(bins_key, dtype=torch.float32)
    axis = torch.arange(-120, 121, 10, dtype=torch.float32)
    cells = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).view(-1, 2)
    return torch.cdist(cells, bins).argmin(dim=1).view(25, 25)


def ab_lattice(ab: torch.Tensor, reach: int) -> torch.Tensor:
    """The one ab quantization: integer coordinates of the nearest grid-``AB_GRID`` lattice point
    of each ab value (any shape), clamped to ``-reach..reach`` and shifted to ``0..2 reach`` (long)."""
    return torch.round(ab / AB_GRID).long().clamp(-reach, reach) + reach


def nearest_bin(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Index [B, H, W] of the nearest bin for ab [B, 2, H, W]; bins [Q, 2] on the grid-10 lattice.

    Rounds to the lattice and looks the cell up, which is the nearest bin whenever the rounded
    cell is itself a bin (always, for ab of sRGB colors); other cells map to their nearest bin.
    """
    lookup = _grid_lookup(tuple(map(tuple, bins.tolist()))).to(ab.device)
    cell = ab_lattice(ab, 12)  # [B, 2, H, W]
    return lookup[cell[:, 0], cell[:, 1]]
