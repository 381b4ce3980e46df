"""The released 8-bit conversion and colour fixes, against independent one-line formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_pil_image, to_tensor

from vosr.colorfix import adain_color_fix, finish, gaussian_color_fix, to_uint8_round, to_uint8_truncate
from vosr.config import ConfigError


def decoded_and_reference(seed: int = 0, h: int = 48, w: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """A smooth decoded image in [0, 1] (3, H, W) with detail, and an 8-bit reference (H, W, 3)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack([0.2 + 0.5 * yy, 0.3 + 0.4 * xx, 0.5 * (yy + xx)]) + 0.08 * torch.rand(
        3, h, w, generator=g
    )
    ref = torch.stack([0.6 * xx, 0.3 + 0.5 * yy, 0.7 - 0.4 * xx]) + 0.1 * torch.rand(3, h, w, generator=g)
    ref_u8 = (ref.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return x.clamp(0, 1), ref_u8


def test_release_uint8_conversion_truncates() -> None:
    x, _ = decoded_and_reference()
    out = to_uint8_truncate(x)
    np.testing.assert_array_equal(out, (x * 255).to(torch.uint8).permute(1, 2, 0).numpy())
    # what the released script does: ToPILImage on the decoded float image
    np.testing.assert_array_equal(out, np.asarray(to_pil_image(x)))
    rounded = to_uint8_round(x)
    np.testing.assert_array_equal(rounded, np.rint(x.numpy() * 255).astype(np.uint8).transpose(1, 2, 0))
    diff = rounded.astype(int) - out
    # truncation is never above rounding, and about half the values differ by one level
    assert diff.min() == 0 and diff.max() == 1 and 0.3 < (diff != 0).mean() < 0.7


def test_adain_equals_the_released_formula() -> None:
    x, ref_u8 = decoded_and_reference(1)
    sr_u8 = to_uint8_truncate(x)
    # the released adain_color_fix, written out: to_tensor floats, torch.std (unbiased) + eps
    t, s = to_tensor(Image.fromarray(sr_u8))[None], to_tensor(Image.fromarray(ref_u8))[None]
    tm, ts = t.mean(dim=[2, 3], keepdim=True), t.std(dim=[2, 3], keepdim=True) + 1e-5
    sm, ss = s.mean(dim=[2, 3], keepdim=True), s.std(dim=[2, 3], keepdim=True) + 1e-5
    expected = np.asarray(to_pil_image(torch.clamp(((t - tm) / ts * ss + sm)[0], 0, 1)))
    np.testing.assert_array_equal(finish(x, ref_u8, "adain", "release"), expected)
    # the old formula sqrt(var + eps) in float with rounding gives other pixels
    old_std = lambda v: (v.flatten(2).var(-1, unbiased=True) + 1e-5).sqrt()[..., None, None]  # noqa: E731
    xf, rf = x[None], torch.from_numpy(ref_u8).permute(2, 0, 1)[None].float() / 255
    old = (xf - xf.mean((2, 3), keepdim=True)) / old_std(xf) * old_std(rf) + rf.mean((2, 3), keepdim=True)
    old_u8 = (old.clamp(0, 1)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert (old_u8 != expected).mean() > 0.2
    # float path: the same statistics, one rounding at the end
    fixed = adain_color_fix(x, torch.from_numpy(ref_u8).permute(2, 0, 1).float() / 255)
    f_mean = fixed.mean(dim=[2, 3])[0]
    torch.testing.assert_close(f_mean, s.mean(dim=[2, 3])[0], rtol=0, atol=3e-3)  # clamping moves it slightly
    np.testing.assert_array_equal(finish(x, ref_u8, "adain", "round"), to_uint8_round(fixed[0]))


def _blur41(img: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Gaussian blur with OpenCV's kernel for sigma 5 on float images: 41 taps (radius 20)
    (ksize = round(sigma * 4 * 2 + 1) | 1), reflect-101 borders, separable, in float64."""
    r = 20
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")  # reflect-101
    rows = sum(k[i] * pad[i : i + img.shape[0]] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, i : i + img.shape[1]] for i in range(2 * r + 1))


def test_wavelet_equals_the_released_gaussian_split() -> None:
    x, ref_u8 = decoded_and_reference(2)
    sr_u8 = to_uint8_truncate(x)
    t, s = sr_u8.astype(np.float32) / 255.0, ref_u8.astype(np.float32) / 255.0
    expected = np.clip(_blur41(s) + (t - _blur41(t)), 0, 1)
    got = gaussian_color_fix(sr_u8, ref_u8)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    out = finish(x, ref_u8, "wavelet", "release")
    ref_levels = expected * 255.0
    assert np.abs(out - ref_levels).max() < 1.0 + 1e-3 and (out <= ref_levels + 1e-3).all()  # truncated

    # a radius-15 kernel (the old split) is measurably different near edges and structure
    def blur31(a: np.ndarray) -> np.ndarray:
        r, sigma = 15, 5.0
        k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
        k /= k.sum()
        pad = np.pad(a.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
        rows = sum(k[i] * pad[i : i + a.shape[0]] for i in range(2 * r + 1))
        return sum(k[i] * rows[:, i : i + a.shape[1]] for i in range(2 * r + 1))

    old = np.clip(blur31(s) + (t - blur31(t)), 0, 1)
    assert np.abs(old - expected).max() > 1e-4
    # the support really is 41 pixels: a unit impulse spreads over exactly 41 columns
    impulse = np.zeros((1, 101, 3), np.float32)
    impulse[0, 50] = 1.0
    import cv2

    spread = cv2.GaussianBlur(impulse, (0, 0), 5)[0, :, 0]
    assert (spread > 0).sum() == 41


def test_wavelet_resizes_a_reference_of_another_size_with_lanczos() -> None:
    x, ref_u8 = decoded_and_reference(3, 40, 56)
    small = np.asarray(Image.fromarray(ref_u8).resize((28, 20), Image.BICUBIC))
    sr_u8 = to_uint8_truncate(x)
    resized = np.asarray(Image.fromarray(small).resize((56, 40), Image.LANCZOS)).astype(np.float32) / 255.0
    t = sr_u8.astype(np.float32) / 255.0
    import cv2

    expected = np.clip(cv2.GaussianBlur(resized, (0, 0), 5) + (t - cv2.GaussianBlur(t, (0, 0), 5)), 0, 1)
    np.testing.assert_array_equal(gaussian_color_fix(sr_u8, small), expected)


def test_none_and_errors() -> None:
    x, ref_u8 = decoded_and_reference(4)
    np.testing.assert_array_equal(finish(x, ref_u8, "none", "release"), to_uint8_truncate(x))
    np.testing.assert_array_equal(finish(x[None], ref_u8, "none", "round"), to_uint8_round(x))
    with pytest.raises(ConfigError, match="color fix 'ada' unknown"):
        finish(x, ref_u8, "ada", "release")
    with pytest.raises(ConfigError, match="quantize 'floor' unknown"):
        finish(x, ref_u8, "none", "floor")
