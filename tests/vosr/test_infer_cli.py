"""``screensr vosr infer`` end to end: LR images in, SR images of the right size out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _vosr_helpers import tiny_weights
from PIL import Image

from screensr.cli import main


@pytest.fixture(scope="module")
def weights() -> dict:
    return tiny_weights()


def write_lr(folder: Path) -> dict[str, tuple[int, int]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"a.png": (20, 28), "b.jpg": (17, 23)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return sizes


def test_cli_folder_to_sr_images(weights: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = write_lr(tmp_path / "lr")
    out = tmp_path / "sr"
    args = ["vosr", "infer", "-c", str(weights["checkpoint_ms"]), "-i", str(tmp_path / "lr"), "-o", str(out),
            "-u", "4", "--steps", "2", "--guidance", "-0.5", "--weak-strength", "0.1", "--color-fix", "wavelet", "--posterior", "mean",
            "--weights-dir", str(weights["root"])]  # fmt: skip
    assert main(args) == 0
    for name, (h, w) in sizes.items():
        with Image.open(out / (Path(name).stem + ".png")) as im:
            assert im.size == (w * 4, h * 4) and im.mode == "RGB"
    settings = json.loads((out / "vosr_infer_settings.json").read_text())
    assert settings["sampling"]["guidance"] == -0.5 and settings["sampling"]["weak_strength"] == 0.1
    assert settings["sampling"]["steps"] == 2 and settings["upscale"] == 4
    assert (
        settings["sampling"]["sample_posterior"] is False and settings["sampling"]["color_fix"] == "wavelet"
    )
    assert "4 network evaluations per image" in capsys.readouterr().out
    # rerun: nothing recomputed
    before = (out / "a.png").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "a.png").stat().st_mtime_ns == before
    assert "2 output(s) exist" in capsys.readouterr().out
    # other settings into the same folder: refused instead of mixing results
    (out / "b.png").unlink()
    assert main([*args[:-2], "--seed", "3", "--weights-dir", str(weights["root"])]) == 2
    assert "differing: sampling" in capsys.readouterr().err


def test_cli_single_file_one_step_with_tiles(weights: dict, tmp_path: Path) -> None:
    write_lr(tmp_path / "lr")
    out = tmp_path / "sr"
    assert main(["vosr", "infer", "-c", str(weights["checkpoint_os"]), "-i", str(tmp_path / "lr" / "a.png"),
                 "-o", str(out), "-u", "2", "--tile", "4", "--vae-tile", "64", "--color-fix", "none",
                 "--weights-dir", str(weights["root"])]) == 0  # fmt: skip
    with Image.open(out / "a.png") as im:
        assert im.size == (56, 40)
    settings = json.loads((out / "vosr_infer_settings.json").read_text())["sampling"]
    assert (settings["tile"], settings["tile_overlap"], settings["vae_tile"]) == (4, 1, 64)
    assert settings["steps"] == 1 and settings["color_fix"] == "none"


def test_cli_errors_are_one_line(weights: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gray.png")
    base = ["vosr", "infer", "-c", str(weights["checkpoint_os"]), "-o", str(tmp_path / "o"),
            "--weights-dir", str(weights["root"])]  # fmt: skip
    assert main([*base, "-i", str(tmp_path / "gray.png")]) == 2
    err = capsys.readouterr().err
    assert "gray.png: image mode 'L' (grayscale)" in err and "Traceback" not in err
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert main([*base, "-i", str(tmp_path / "bad.png")]) == 2
    assert "bad.png: not a readable image" in capsys.readouterr().err
    assert main([*base, "-i", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main([*base, "-i", str(tmp_path / "gray.png"), "--guidance", "2"]) == 2
    assert "one-step" in capsys.readouterr().err


def test_help_has_examples() -> None:
    res = subprocess.run([sys.executable, "-m", "screensr.cli", "vosr", "infer", "--help"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0
    assert "screensr vosr infer -c vosr-0.5b-os -i lr/ -o sr/ -u 4" in res.stdout
    for flag in (
        "--steps",
        "--guidance",
        "--weak-strength",
        "--tile",
        "--vae-tile",
        "--color-fix",
        "--weights-dir",
    ):
        assert flag in res.stdout
