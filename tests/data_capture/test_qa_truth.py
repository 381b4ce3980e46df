"""The QA shift map measures what it claims (issue 13.7): on simulated pairs the simulator knows the
true residual misalignment, and the QA's p50 / p95 must agree with it within 0.1 px. Plus the
report plots' legibility (ECC tick labels that do not overlap, labelled axes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_capture.canvas import CanvasConfig, plan_layout, render_canvas
from data_capture.geometry import apply_h
from data_capture.pair import PairConfig, process_pair
from data_capture.quality import shift_map, summary_figure
from data_capture.register import PolyField, Registration
from data_capture.simulate import preset_config, simulate_photo, truth_photo_to_canvas


def _registration_from_record(rec: dict, layout) -> Registration:
    """The estimated map P rebuilt from the manifest record alone (what a user of the dataset has)."""
    res = rec["residual_correction"]
    field = None if res is None else PolyField(res["degree"], tuple(res["size"]), np.asarray(res["coef"], float))
    return Registration(np.asarray(rec["photo_to_canvas"], float), layout.S, tuple(layout.source_size), residual=field)


def _true_tile_shifts(rec: dict, layout, truth: dict) -> np.ndarray:
    """(N, 2): the true displacement of the aligned photo's content at each QA tile, source px.

    The aligned image at q shows source point S^-1 T(P(q)), so its content sits at q - e(q) with
    e(q) = S^-1 T(P(q)) - q; averaged over a 7x7 grid spanning each tile.
    """
    sm = rec["qa"]["shift_map"]
    reg = _registration_from_record(rec, layout)
    tw, th = sm["tile_size"]
    out = []
    for x, y in zip(sm["x"], sm["y"], strict=True):
        gx, gy = np.meshgrid(np.linspace(x - (tw - 1) / 2, x + (tw - 1) / 2, 7), np.linspace(y - (th - 1) / 2, y + (th - 1) / 2, 7))
        q = np.stack([gx, gy], -1)
        back = apply_h(np.linalg.inv(layout.S), truth_photo_to_canvas(truth, reg.source_to_photo(q)))
        out.append(-(back - q).reshape(-1, 2).mean(0))
    return np.array(out)


@pytest.mark.parametrize("preset,seed", [("mild", 3), ("typical", 5)])
def test_qa_shift_map_agrees_with_the_true_residual(source_images, preset, seed):
    for name, src in source_images.items():
        layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=800, height=600))
        photo, truth = simulate_photo(render_canvas(src, layout),
                                      preset_config(preset, photo_width=1024, photo_height=768), seed)
        rec = process_pair(photo, src, layout, PairConfig(scale=4), truth).record
        assert rec["status"] == "ok", rec["reason"]
        sm = rec["qa"]["shift_map"]
        est = np.stack([np.asarray(sm["dx"], float), np.asarray(sm["dy"], float)], -1)
        ok = np.isfinite(est[:, 0])
        assert ok.sum() >= 0.5 * sm["tiles_total"] and sm["tiles"] == ok.sum(), (name, sm["tiles"])
        tru = _true_tile_shifts(rec, layout, truth)[ok]
        em, tm = np.linalg.norm(est[ok], axis=1), np.linalg.norm(tru, axis=1)
        assert sm["p50"] == pytest.approx(np.median(em), abs=1e-3) and sm["p95"] == pytest.approx(np.percentile(em, 95), abs=1e-3)
        assert abs(np.median(em) - np.median(tm)) <= 0.1, (name, np.median(em), np.median(tm))
        assert abs(np.percentile(em, 95) - np.percentile(tm, 95)) <= 0.1, (name, np.percentile(em, 95), np.percentile(tm, 95))
        # tile by tile, not only in distribution: the vectors agree (median error a few hundredths)
        assert np.median(np.linalg.norm(est[ok] - tru, axis=1)) < 0.06, name
        # the record carries the same truth figures (the report's "truth shift" column)
        assert rec["qa"]["truth_shift_p50_px"] == pytest.approx(np.median(tm), abs=2e-3)
        assert rec["qa"]["truth_shift_p95_px"] == pytest.approx(np.percentile(tm, 95), abs=2e-3)
        # the QA's own unit is the source pixel, whatever the scale
        assert rec["qa"]["shift_map"]["units"].startswith("source px")


def test_qa_reports_a_real_misalignment(source_images):
    """A pair aligned 0.6 px off (in x) shows it in the QA shift map, not hidden under noise."""
    src = source_images["coffee"]
    layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=800, height=600))
    photo, truth = simulate_photo(render_canvas(src, layout), preset_config("mild", photo_width=1024, photo_height=768), 2)
    rec = process_pair(photo, src, layout, PairConfig(scale=4), truth).record
    base = np.nanmedian(rec["qa"]["shift_map"]["dx"])
    # shift the photo by 0.6 source px to the right *after* registration: re-warp with a shifted photo
    px_per_src = np.linalg.norm(np.asarray(truth["canvas_to_ideal"])[:2, :2] @ layout.S[:2, :2] @ [1.0, 0.0])
    M = np.float32([[1, 0, 0.6 * px_per_src], [0, 1, 0]])
    moved = cv2.warpAffine(photo, M, (photo.shape[1], photo.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    from data_capture.register import registration_plane as plane
    from data_capture.register import warp_to_grid

    reg = _registration_from_record(rec, layout)
    aligned = warp_to_grid(plane(moved), reg, tuple(layout.source_size), np.eye(3))
    sm = shift_map(plane(src), aligned)
    assert np.nanmedian(sm["dx"]) - base == pytest.approx(0.6, abs=0.05)
    assert abs(np.nanmedian(sm["dy"])) < 0.05


def _fourier_shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` with its content moved by (dx, dy) px, exactly (a phase ramp; the image wraps around).

    Not cv2.warpAffine: OpenCV's INTER_CUBIC (a = -0.75) does not reproduce linear ramps, so it
    moves content by 0.297 px when asked for 0.25 (its weights' centroid), which would blur the test.
    """
    f = np.fft.fft2(img)
    fy, fx = np.fft.fftfreq(img.shape[0])[:, None], np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(f * np.exp(-2j * np.pi * (fx * dx + fy * dy)))).astype(np.float32)


@pytest.mark.parametrize("shift", [(0.25, -0.15), (0.5, 0.0), (-0.1, 0.4)])
def test_shift_map_recovers_an_exact_subpixel_shift(source_images, shift):
    a = source_images["chelsea"][..., 1].astype(np.float32)
    sm = shift_map(a, _fourier_shift(a, *shift), (6, 4))
    assert sm["tiles"] >= 12
    assert np.nanmedian(sm["dx"]) == pytest.approx(shift[0], abs=0.02)
    assert np.nanmedian(sm["dy"]) == pytest.approx(shift[1], abs=0.02)
    assert shift_map(a, a, (6, 4))["p95"] < 1e-3


def test_flat_tiles_and_the_image_border_do_not_count():
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((200, 300)) * 255).astype(np.float32), (0, 0), 1.5)
    # right half flat (no shift can be told there), faded in smoothly over x = 110..140 so that the
    # shifted copy below is an exact translation (a hard step would ring under cubic interpolation)
    fade = np.clip((140 - np.arange(300)) / 30, 0, 1).astype(np.float32)
    a = 128 + (tex - 128) * (0.5 - 0.5 * np.cos(np.pi * fade))[None, :]
    b = _fourier_shift(a, 0.25, -0.15)
    b += rng.normal(0, 1.0, b.shape).astype(np.float32)  # sensor noise: the flat tiles see only this
    sm = shift_map(a, b, (6, 4))
    xs, dx = np.asarray(sm["x"]), np.asarray(sm["dx"], float)
    assert np.isnan(dx[xs > 160]).all()  # flat tiles: NaN, not confident noise
    assert {st for st, x in zip(sm["status"], xs, strict=True) if x > 160} <= {"flat", "uncertain", "photometric"}
    assert np.isfinite(dx[xs < 140]).all()
    assert np.nanmedian(dx) == pytest.approx(0.25, abs=0.02)
    assert np.nanmedian(np.asarray(sm["dy"], float)) == pytest.approx(-0.15, abs=0.02)
    assert sm["tiles"] == int(np.isfinite(dx).sum()) and sm["tiles_total"] == 24
    assert all(np.isnan(se) or se < 0.1 for se, d in zip(sm["se"], dx, strict=True) if np.isfinite(d))
    # the outer 6 px are never inside a tile: the photo's canvas margin bleeds into them
    assert min(sm["x"]) - (sm["tile_size"][0] - 1) / 2 == 6 and min(sm["y"]) - (sm["tile_size"][1] - 1) / 2 == 6
    # an image too small for one 32 px tile gives no figures instead of a made-up one
    tiny = shift_map(a[:40, :40], b[:40, :40])
    assert tiny["tiles"] == 0 and tiny["p50"] is None


def test_a_phantom_shift_from_a_blurred_high_contrast_edge_does_not_count():
    """A lens blurs in linear light; in gamma-encoded values a blurred bright/dark edge then leans
    towards the dark side. A tile whose structure is such an edge corner shows a shift of about
    0.7 px where there is none: measured again in linear light it vanishes, so the tile is
    marked photometric instead of reporting the phantom."""
    yy, xx = np.mgrid[0:140, 0:140]
    src = np.where((xx > 60) & (yy > 60), 240.0, 15.0).astype(np.float32)  # a bright corner region
    photo = (cv2.GaussianBlur((src / 255) ** 2.2, (0, 0), 2.0) ** (1 / 2.2) * 255).astype(np.float32)
    unchecked = shift_map(src, photo, (1, 1), max_photometric=10.0)
    assert unchecked["status"] == ["ok"] and unchecked["dx"][0] < -0.5 and unchecked["dy"][0] < -0.5
    checked = shift_map(src, photo, (1, 1))
    assert checked["status"] == ["photometric"] and checked["tiles"] == 0 and checked["p95"] is None
    # a real displacement of the same content is seen alike in both encodings: it counts
    moved = shift_map(photo, _fourier_shift(photo, 0.3, -0.2), (1, 1))
    assert moved["status"] == ["ok"]
    assert moved["dx"][0] == pytest.approx(0.3, abs=0.02) and moved["dy"][0] == pytest.approx(-0.2, abs=0.02)


def _tick_overlaps(ax) -> list[tuple[str, str]]:
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    lo, hi = sorted(ax.get_xlim())
    labels = [t for t, loc in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
              if t.get_text() and lo - 1e-12 <= loc <= hi + 1e-12]
    boxes = [t.get_window_extent(r) for t in labels]
    return [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].overlaps(boxes[j])]


@pytest.mark.parametrize("eccs", [
    np.random.default_rng(0).uniform(0.9950, 0.9990, 6),  # overlapped with the default ticks
    np.random.default_rng(1).uniform(0.99931, 0.99987, 9),
    np.array([0.97, 0.985, 0.9991]),
    np.random.default_rng(2).uniform(0.88, 0.999, 40),
])
def test_summary_plot_ticks_do_not_overlap_and_axes_are_labelled(eccs):
    import matplotlib.pyplot as plt

    recs = [{"status": "ok", "qa": {"shift_p95_px": float(1 - e) * 30, "ecc_correlation": float(e)}} for e in eccs]
    fig = summary_figure(recs)
    try:
        for ax in fig.axes:
            assert _tick_overlaps(ax) == []
            assert ax.get_xlabel() and ax.get_ylabel() == "pairs"
        assert fig.axes[1].get_xlabel() == "ECC correlation"
    finally:
        plt.close(fig)
