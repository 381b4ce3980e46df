"""Canvas layout geometry against detection on the rendered canvas, and detection robustness."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from data_capture.canvas import (
    CanvasConfig,
    load_layout,
    make_canvases,
    marker_ids_for,
    plan_layout,
    render_canvas,
)
from data_capture.detect import DetectConfig, detect_markers, to_gray
from data_capture.geometry import apply_h


def test_layout_corners_match_detection_on_the_canvas(source_images):
    src = source_images["astronaut"]
    layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=800, height=600))
    canvas = render_canvas(src, layout)
    det = detect_markers(to_gray(canvas), layout, DetectConfig(preblur_sigma=0))
    assert sorted(det.corners) == sorted(layout.markers) and not det.missing
    for mid, c in det.corners.items():
        # the layout's corner convention (outer edge at x0 - 0.5) agrees with ArUco's SUBPIX corners
        np.testing.assert_allclose(c, layout.markers[mid], atol=0.2)


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0])
def test_source_to_canvas_maps_pixels_where_they_are_drawn(scale):
    rng = np.random.default_rng(0)
    src = cv2.GaussianBlur((rng.random((60, 80, 3)) * 255).astype(np.uint8), (0, 0), 2)
    layout = plan_layout((80, 60), CanvasConfig(width=400, height=300, display_scale=scale))
    canvas = render_canvas(src, layout)
    # sample the canvas at the mapped source pixel centres: must reproduce the source
    gx, gy = np.meshgrid(np.arange(4, 76, dtype=np.float64), np.arange(4, 56, dtype=np.float64))
    c = apply_h(layout.S, np.stack([gx, gy], -1)).astype(np.float32)
    back = cv2.remap(canvas.astype(np.float32), c[..., 0], c[..., 1], cv2.INTER_LINEAR)
    assert np.abs(back - src[4:56, 4:76]).mean() < 2.0


def test_image_stays_inside_the_marker_frame(source_images):
    for name, src in source_images.items():
        layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=800, height=600))
        x0, y0, w, h = layout.image_rect
        for corners in layout.markers.values():
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            # markers lie entirely outside the image rectangle (so ECC never sees them)
            assert max(xs) < x0 or min(xs) > x0 + w or max(ys) < y0 or min(ys) > y0 + h, name


def test_each_canvas_gets_its_own_ids():
    seen = [tuple(marker_ids_for(k, "DICT_4X4_50")) for k in range(12)]
    assert len(set(seen)) == 12 and all(max(s) < 50 for s in seen)


def test_canvas_too_small_for_markers_is_a_clear_error():
    with pytest.raises(ConfigError, match="leaves no room"):
        plan_layout((100, 100), CanvasConfig(width=64, height=64, marker_fraction=0.3))
    with pytest.raises(ConfigError, match="display_scale"):
        plan_layout((300, 300), CanvasConfig(width=800, height=600, display_scale=3.0))


def test_make_canvases_is_idempotent(tmp_path, sources_dir):
    out = tmp_path / "c"
    paths = make_canvases(sources_dir, out, CanvasConfig(width=800, height=600), progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    make_canvases(sources_dir, out, CanvasConfig(width=800, height=600), progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    lay = load_layout(paths[0])
    assert lay.source.endswith(".png") and len(lay.markers) == 4


def test_missing_marker_is_recovered_or_reported(canvases_dir, photos_dir):
    from data_capture.imageio import read_image

    layout = load_layout(canvases_dir / "coffee.layout.json")
    photo = read_image(photos_dir / "coffee.jpg").rgb.copy()
    det = detect_markers(to_gray(photo), layout)
    assert len(det.corners) == 4
    # occlude one marker completely: it is reported missing, the others still found
    mid = sorted(det.corners)[0]
    x0, y0 = det.corners[mid].min(0).astype(int) - 3
    x1, y1 = det.corners[mid].max(0).astype(int) + 3
    photo[y0:y1, x0:x1] = 255
    det2 = detect_markers(to_gray(photo), layout)
    assert det2.missing == [mid] and len(det2.corners) == 3


def test_wrong_canvas_ids_are_reported_as_foreign(canvases_dir, photos_dir):
    from data_capture.imageio import read_image

    other = load_layout(canvases_dir / "astronaut.layout.json")
    photo = read_image(photos_dir / "coffee.jpg").rgb
    det = detect_markers(to_gray(photo), other)
    assert not det.corners and len(det.foreign) >= 3  # (no board recovery without a wanted marker)
