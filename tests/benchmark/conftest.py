"""Fixtures of the benchmark tests: reference data, small synthetic datasets, random metric weights.

The helpers that build images and datasets are fixtures returning the function (``make_generic``,
``make_capture``, ``smooth_image``, ``save_png``), so a test asks for what it uses by name.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish (smooth + texture) ``(h, w, 3)`` uint8 RGB image, so metrics have something to measure."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    img = 0.5 + 0.35 * base + 0.08 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _save_png(path: Path, arr: np.ndarray) -> Path:
    """Write ``arr`` with PIL (format from the suffix), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _make_generic(root: Path, n: int = 4, lr_size: int = 16, scale: int = 4, seed: int = 0) -> Path:
    """``root/hr`` + ``root/lr``: HR random-smooth, LR its area downsample (stems ``img_k``)."""
    import cv2

    rng = np.random.default_rng(seed)
    for k in range(n):
        hr = _smooth_image(rng, lr_size * scale, lr_size * scale)
        lr = cv2.resize(hr, (lr_size, lr_size), interpolation=cv2.INTER_AREA)
        _save_png(root / "hr" / f"img_{k}.png", hr)
        _save_png(root / "lr" / f"img_{k}.png", lr)
    return root


def _make_capture(root: Path, n: int = 4, rejected: int = 1) -> Path:
    """A folder as ``screensr capture build`` writes it (manifest with ok/rejected pairs)."""
    _make_generic(root, n=n, lr_size=16)
    lines = [
        {"id": f"img_{k}", "status": "rejected" if k < rejected else "ok", "scale": 4, "psnr_align": 30.0}
        for k in range(n)
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "scale": 4}))
    return root


@pytest.fixture(scope="session")
def drealsr_dir() -> Path:
    """The shipped DRealSR x OSEDiff pairs (19 crops, with OSEDiff's outputs and published scores)."""
    return DATA / "drealsr_osediff"


@pytest.fixture(scope="session")
def calibration_dir() -> Path:
    """The shipped calibration images (TID2013 subset with reference scores)."""
    return DATA / "calibration"


@pytest.fixture(scope="session")
def smooth_image() -> Callable[..., np.ndarray]:
    return _smooth_image


@pytest.fixture(scope="session")
def save_png() -> Callable[..., Path]:
    return _save_png


@pytest.fixture(scope="session")
def make_generic() -> Callable[..., Path]:
    return _make_generic


@pytest.fixture(scope="session")
def make_capture() -> Callable[..., Path]:
    return _make_capture


@pytest.fixture
def generic_ds(tmp_path: Path) -> Path:
    return _make_generic(tmp_path / "toy")


@pytest.fixture
def drealsr_copy(tmp_path: Path, drealsr_dir: Path) -> Path:
    dst = tmp_path / "drealsr_osediff"
    shutil.copytree(drealsr_dir, dst)
    return dst


@pytest.fixture(scope="session")
def lpips_random_weights() -> None:
    """Random LPIPS (AlexNet + linear layers) weights at the exact cache paths pyiqa reads."""
    import torch
    import torchvision
    from pyiqa.archs.lpips_arch import LPIPS

    from benchmark.weights import metric_weight_files

    files = {f.name: f.path for f in metric_weight_files("lpips")}
    torch.manual_seed(0)
    alex = files["alexnet-owt-7be5be79.pth"]
    alex.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), alex)
    lin = files["LPIPS_v0.1_alex-df73285e.pth"]
    lin.parent.mkdir(parents=True, exist_ok=True)
    net = LPIPS(pretrained=False, net="alex")
    # random positive linear weights (LPIPS' calibrated layers are non-negative)
    sd = {k: (v.abs() + 0.01 if k.startswith("lin") else v) for k, v in net.state_dict().items()}
    torch.save(sd, lin)
