"""Fixtures of the user-study tests: synthetic studies on disk, and PostgreSQL databases.

``make_study_files`` (a factory fixture) writes LR/HR/SR PNG folders and a study YAML; every SR
output carries the method's index in its red channel, so ``method_of_png`` can tell from served
pixels which method a candidate is, without names ever being served.

``pg_url`` (a fresh, empty PostgreSQL database per test) comes from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image


def _make_study_files(
    root: Path,
    methods: tuple[str, ...] = ("alpha", "beta", "gamma"),
    n_images: int = 4,
    lr_size: int = 8,
    scale: int = 4,
    seed: int = 0,
    **yaml_overrides: object,
) -> Path:
    """Write ``root/{lr,hr,<method>}/img_XX.png`` and ``root/study.yaml``; returns the YAML path.

    Pixel (0, 0)'s red value of method ``i``'s outputs is ``10 * (i + 1)``; HR has 250 there.
    """
    rng = np.random.default_rng(seed)
    ids = [f"img_{i:02d}" for i in range(n_images)]
    for folder in ("lr", "hr", *methods):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        lr = rng.integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8)
        Image.fromarray(lr).save(root / "lr" / f"{image_id}.png")
        hr = np.kron(lr, np.ones((scale, scale, 1), dtype=np.uint8))
        hr[0, 0, 0] = 250
        Image.fromarray(hr).save(root / "hr" / f"{image_id}.png")
        for i, m in enumerate(methods):
            sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
            sr[0, 0, 0] = 10 * (i + 1)
            Image.fromarray(sr).save(root / m / f"{image_id}.png")
    definition: dict[str, object] = {
        "name": "toy-study",
        "images": {"lr": "lr", "hr": "hr"},
        "methods": {m: m for m in methods},
        "criteria": [
            {"key": "perceptual", "question": "Which result has the best perceptual quality?"},
            {"key": "consistency", "question": "Which result is most consistent with the LR input?"},
        ],
        "seed": 7,
        "crop": 16,
    }
    definition.update(yaml_overrides)
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False), encoding="utf-8")
    return path


def _method_of_png(png: bytes, methods: tuple[str, ...]) -> str:
    """Which candidate a served full-resolution PNG is, from its marker pixel."""
    import io

    red = Image.open(io.BytesIO(png)).getpixel((0, 0))[0]
    if red == 250:
        return "__hr__"
    return methods[red // 10 - 1]


@pytest.fixture(scope="session")
def make_study_files() -> Callable[..., Path]:
    """``make_study_files(root, methods=..., n_images=4, lr_size=8, scale=4, seed=0, **yaml)``:
    write a synthetic study under ``root``; returns the YAML path (see ``_make_study_files``)."""
    return _make_study_files


@pytest.fixture(scope="session")
def method_of_png() -> Callable[[bytes, tuple[str, ...]], str]:
    """``method_of_png(png, methods)``: which candidate a served full-resolution PNG is."""
    return _method_of_png


# --------------------------------------------------------------------------- PostgreSQL


