"""Helpers of the benchmark tests: reference data paths and small synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
DREALSR = DATA / "drealsr_osediff"
CALIBRATION = DATA / "calibration"


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish (smooth + texture) uint8 RGB image, so metrics have something to measure."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    img = 0.5 + 0.35 * base + 0.08 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_generic(root: Path, n: int = 4, lr_size: int = 16, scale: int = 4, seed: int = 0) -> Path:
    """``root/hr`` + ``root/lr``: HR random-smooth, LR its area downsample (stems ``img_k``)."""
    import cv2

    rng = np.random.default_rng(seed)
    for k in range(n):
        hr = smooth_image(rng, lr_size * scale, lr_size * scale)
        lr = cv2.resize(hr, (lr_size, lr_size), interpolation=cv2.INTER_AREA)
        save(root / "hr" / f"img_{k}.png", hr)
        save(root / "lr" / f"img_{k}.png", lr)
    return root


def make_capture(root: Path, n: int = 4, rejected: int = 1) -> Path:
    """A folder as ``screensr capture build`` writes it (manifest with ok/rejected pairs)."""
    make_generic(root, n=n, lr_size=16)
    lines = [
        {"id": f"img_{k}", "status": "rejected" if k < rejected else "ok", "scale": 4, "psnr_align": 30.0}
        for k in range(n)
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "scale": 4}))
    return root
