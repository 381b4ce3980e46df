"""Colour alignment bands and QA figures against synthetic ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from data_capture.colorfix import ColorFixConfig, adain, color_fix, low_band, wavelet_transfer
from data_capture.quality import QAConfig, judge, shift_map, y_psnr_ssim


@pytest.fixture(scope="module")
def pair(source_images):
    src = source_images["astronaut"]
    h, w = src.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    # a "photo": the source with a smooth colour cast + vignetting, and fine noise (the degradation)
    cast = np.stack([1.1 - 0.3 * (xx / w), 0.9 + 0.0 * yy, 0.8 + 0.2 * (yy / h)], -1)
    vign = 1 - 0.4 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    noise = np.random.default_rng(0).normal(0, 6, src.shape)
    photo = np.clip(src * cast * vign[..., None] + noise, 0, 255).astype(np.uint8)
    return src, photo


def test_low_band_approximates_a_gaussian_of_13px():
    img = np.zeros((257, 257, 1), np.float32)
    img[128, 128] = 1.0
    lb = low_band(img, 5)[..., 0] if low_band(img, 5).ndim == 3 else low_band(img, 5)
    yy, xx = np.mgrid[0:257, 0:257] - 128
    var = float((lb * xx**2).sum() / lb.sum())
    # variance of the a-trous cascade: sum over levels of 2 * (2^i)^2 / 4 = (4^5 - 1) / 6
    assert var == pytest.approx((4**5 - 1) / 6, rel=1e-3)
    assert np.sqrt(var) == pytest.approx(13.06, abs=0.05)


def test_wavelet_takes_low_band_from_source_and_keeps_photo_high_band(pair):
    src, photo = pair
    out = wavelet_transfer(photo, src, levels=5).astype(np.float32)
    lo_out, lo_src = low_band(out, 5), low_band(src.astype(np.float32), 5)
    hi_out = out - lo_out
    hi_photo = photo.astype(np.float32) - low_band(photo.astype(np.float32), 5)
    m = (slice(40, -40), slice(40, -40))  # away from clipping at the borders
    assert np.abs(lo_out - lo_src)[m].mean() < 1.5  # the cast and vignetting are gone
    assert np.abs(low_band(photo.astype(np.float32), 5) - lo_src)[m].mean() > 10
    assert np.corrcoef(hi_out[m].ravel(), hi_photo[m].ravel())[0, 1] > 0.98  # the degradation is kept


def test_adain_matches_statistics_but_not_vignetting(pair):
    src, photo = pair
    out = adain(photo, src).astype(np.float32)
    np.testing.assert_allclose(out.mean((0, 1)), src.mean((0, 1)), atol=1.0)
    np.testing.assert_allclose(out.std((0, 1)), src.std((0, 1)), rtol=0.03)
    # a global transfer cannot remove the spatially varying cast: the wavelet fix can
    wav = wavelet_transfer(photo, src).astype(np.float32)
    assert np.abs(low_band(wav, 5) - low_band(src.astype(np.float32), 5)).mean() < \
        np.abs(low_band(out, 5) - low_band(src.astype(np.float32), 5)).mean()


def test_color_fix_records_settings_and_checks_input():
    a = np.zeros((100, 100, 3), np.uint8)
    out, meta = color_fix(a, a, ColorFixConfig(method="wavelet", levels=4))
    assert meta["method"] == "wavelet" and meta["levels"] == 4
    with pytest.raises(ValueError, match="equal shapes"):
        color_fix(a, a[:50], ColorFixConfig())
    # an image smaller than the 5-level support (64 px) gets fewer levels, recorded
    assert color_fix(a[:20, :20], a[:20, :20], ColorFixConfig(levels=5))[1]["levels"] == 3
    with pytest.raises(ConfigError, match="unknown"):
        ColorFixConfig(method="histogram").validate()


@pytest.mark.parametrize("shift", [(0.3, -0.2), (-0.45, 0.15)])
def test_shift_map_recovers_a_known_subpixel_shift(source_images, shift):
    a = source_images["chelsea"][..., 1]
    M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    b = cv2.warpAffine(a, M, (a.shape[1], a.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    sm = shift_map(a, b, (4, 3))
    assert sm["tiles"] >= 6
    assert np.nanmedian(sm["dx"]) == pytest.approx(shift[0], abs=0.06)
    assert np.nanmedian(sm["dy"]) == pytest.approx(shift[1], abs=0.06)
    assert shift_map(a, a, (4, 3))["p95"] < 0.01


def test_psnr_ssim_on_y():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[..., :] = 110
    p, s = y_psnr_ssim(a, b)
    assert p == pytest.approx(20 * np.log10(255 / 10), abs=0.05)
    assert y_psnr_ssim(a, a)[1] == pytest.approx(1.0)


def test_judge_gives_the_first_failed_threshold():
    cfg = QAConfig()
    good = {"marker_max_px": 1.0, "ecc_correlation": 0.99, "marker_content_px": 1.0, "residual_rms_px": 0.1,
            "shift_p50_px": 0.05, "psnr_y": 28.0, "photo_px_per_lr_px_min": 4.0, "anisotropy": 1.1}
    assert judge(good, cfg) is None
    assert "content correlation 0.400" in judge({**good, "ecc_correlation": 0.4}, cfg)
    assert "extreme viewing angle" in judge({**good, "anisotropy": 3.2}, cfg)
    assert "shift-map median" in judge({**good, "shift_p50_px": 0.8}, cfg)
    assert "PSNR(Y)" in judge({**good, "psnr_y": 9.0}, cfg)
    assert "photo too coarse" in judge({**good, "photo_px_per_lr_px_min": 0.5}, cfg)
