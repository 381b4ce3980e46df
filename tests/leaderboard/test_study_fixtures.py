"""Synthetic user studies for the study tests and benchmarks (helpers, plus checks of the helpers).

``make_study_files`` writes LR/HR/SR PNG folders and a study YAML; every SR output carries the
method's index in its red channel, so tests can tell from served pixels which method a
candidate is, without names ever being served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

PAPER_MULTISTEP = {"VOSR-1.4B-ms": 70, "SeeSR": 61, "PASD": 55, "VOSR-0.5B-ms": 54, "StableSR": 40, "ResShift": 20}
PAPER_ONESTEP = {"VOSR-1.4B-os": 80, "PiSA-SR": 67, "OSEDiff": 64, "VOSR-0.5B-os": 62, "SinSR": 27}


def make_study_files(
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


def method_of_png(png: bytes, methods: tuple[str, ...]) -> str:
    """Which candidate a served full-resolution PNG is, from its marker pixel."""
    import io

    red = Image.open(io.BytesIO(png)).getpixel((0, 0))[0]
    if red == 250:
        return "__hr__"
    return methods[red // 10 - 1]


def test_fixture_writes_a_valid_study(tmp_path: Path) -> None:
    from leaderboard.study import load_study

    config = load_study(make_study_files(tmp_path, n_images=3))
    assert config.images == ("img_00", "img_01", "img_02")
    assert config.method_names == ("alpha", "beta", "gamma")
    assert sum(PAPER_MULTISTEP.values()) == 300 and sum(PAPER_ONESTEP.values()) == 300
