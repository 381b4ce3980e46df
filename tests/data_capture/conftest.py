"""Shared fixtures: small sources (skimage's bundled images), canvases and simulated photos.

Sizes are small (320 px sources, 800x600 canvases, 1024x768 photos) so the default run stays fast;
the 12 MP figures live in tests/perf/bench_capture.py and the slow-marked test.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data_capture.canvas import CanvasConfig

SMALL_CANVAS = CanvasConfig(width=800, height=600)
SMALL_PHOTO = {"photo_width": 1024, "photo_height": 768}


def _sources() -> dict[str, np.ndarray]:
    from skimage import data

    imgs = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    out = {}
    for k, v in imgs.items():
        v = v[..., :3]
        s = 320 / max(v.shape[:2])
        v = cv2.resize(v, (round(v.shape[1] * s) // 4 * 4, round(v.shape[0] * s) // 4 * 4), interpolation=cv2.INTER_AREA)
        out[k] = v
    return out


@pytest.fixture(scope="session")
def source_images() -> dict[str, np.ndarray]:
    """name -> (H, W, 3) uint8 RGB, sides <= 320 px and multiples of 4."""
    return _sources()


@pytest.fixture(scope="session")
def sources_dir(tmp_path_factory, source_images) -> Path:
    d = tmp_path_factory.mktemp("sources")
    for k, v in source_images.items():
        cv2.imwrite(str(d / f"{k}.png"), cv2.cvtColor(v, cv2.COLOR_RGB2BGR))
    return d


@pytest.fixture(scope="session")
def canvases_dir(tmp_path_factory, sources_dir) -> Path:
    from data_capture.canvas import make_canvases

    d = tmp_path_factory.mktemp("canvases")
    make_canvases(sources_dir, d, SMALL_CANVAS, progress=False)
    return d


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory, canvases_dir) -> Path:
    from data_capture.simulate import simulate_folder

    d = tmp_path_factory.mktemp("photos")
    simulate_folder(canvases_dir, d, preset="mild", seed=0, overrides=SMALL_PHOTO, progress=False)
    return d
