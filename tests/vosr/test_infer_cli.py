"""``screensr vosr infer`` end to end: LR images in, SR images of the right size out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from screensr.cli import main


@pytest.fixture(scope="module")
def weights(tiny_weights) -> dict:
    return tiny_weights


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
    # the released layout: one-step overlap max(32 px // 8, 4 // 8) = 4, at most tile - 1
    assert (settings["tile"], settings["tile_overlap"], settings["vae_tile"]) == (4, 3, 64)
    assert settings["tile_layout"] == "release" and settings["quantize"] == "release"
    assert settings["steps"] == 1 and settings["color_fix"] == "none"


def test_cli_errors_are_one_line(weights: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gray.png")
    base = ["vosr", "infer", "-c", str(weights["checkpoint_os"]), "-o", str(tmp_path / "o"),
            "--weights-dir", str(weights["root"])]  # fmt: skip
    assert main([*base, "-i", str(tmp_path / "gray.png")]) == 2
    err = capsys.readouterr().err
    assert (
        "gray.png: image mode 'L' (grayscale)" in err and "--convert-inputs" in err and "Traceback" not in err
    )
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
        "--preset",
        "--weak-strength",
        "--tile",
        "--tile-layout",
        "--vae-tile",
        "--color-fix",
        "--quantize",
        "--noise",
        "--convert-inputs",
        "--weights-dir",
    ):
        assert flag in res.stdout
    text = " ".join(res.stdout.split())
    # the guidance default and why it differs from the released script's CLI default
    assert "Default 0.5, the released README's practical default" in text and "2.0" in text
    assert "realsr = -0.5" in text and "screensr = 0.5" in text
    assert "gemm_4bit" not in res.stderr and res.stderr == ""


def test_no_bitsandbytes_warning_on_inference(weights: dict, tmp_path: Path) -> None:
    """diffusers would import bitsandbytes (and its CPU kernel warning) with its model classes."""
    write_lr(tmp_path / "lr")
    code = (
        "import sys; from screensr.cli import main; "
        f"rc = main(['vosr', 'infer', '-c', {str(weights['checkpoint_os'])!r}, '-i', {str(tmp_path / 'lr' / 'a.png')!r}, "
        f"'-o', {str(tmp_path / 'sr')!r}, '--weights-dir', {str(weights['root'])!r}]); "
        "print('BNB', 'bitsandbytes' in sys.modules); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "BNB False" in res.stdout
    assert "gemm_4bit" not in res.stderr and "bitsandbytes" not in res.stderr
    assert (tmp_path / "sr" / "a.png").is_file()


def test_cli_release_options_and_presets(weights: dict, tmp_path: Path) -> None:
    write_lr(tmp_path / "lr")
    out = tmp_path / "sr"
    assert main(["vosr", "infer", "-c", str(weights["checkpoint_ms"]), "-i", str(tmp_path / "lr" / "a.png"),
                 "-o", str(out), "--steps", "1", "--preset", "realsr", "--quantize", "round",
                 "--tile", "8", "--tile-layout", "rect", "--weights-dir", str(weights["root"])]) == 0  # fmt: skip
    s = json.loads((out / "vosr_infer_settings.json").read_text())["sampling"]
    assert (s["guidance"], s["quantize"], s["tile_layout"], s["tile"], s["tile_overlap"]) == (
        -0.5,
        "round",
        "rect",
        8,
        2,
    )
    assert (s["noise"], s["seed"]) == ("per-image", 0)
    files = json.loads((out / "vosr_infer_settings.json").read_text())["files"]
    assert set(files) == {"backbone", "autoencoder_config", "autoencoder", "semantic_encoder"}
    assert all(len(h) == 64 for h in files.values())


def test_cli_release_noise_reproduces_after_a_partial_run(weights: dict, tmp_path: Path) -> None:
    """--noise release: files in sorted order share one generator; a rerun that skips finished
    outputs advances the generator past them, so the missing ones come out as in a full run."""
    write_lr(tmp_path / "lr")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "lr" / "c.png")
    base = ["vosr", "infer", "-c", str(weights["checkpoint_ms"]), "-i", str(tmp_path / "lr"), "--steps", "2",
            "--noise", "release", "--weights-dir", str(weights["root"])]  # fmt: skip
    full = tmp_path / "full"
    assert main([*base, "-o", str(full)]) == 0
    assert json.loads((full / "vosr_infer_settings.json").read_text())["sampling"]["seed"] == 42
    first = {n: np.asarray(Image.open(full / n)) for n in ("a.png", "b.png", "c.png")}
    (full / "b.png").unlink()  # a partial run: the middle file is missing
    assert main([*base, "-o", str(full)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(full / "b.png")), first["b.png"])
    # only the last file: the generator first advances past a.png and b.png
    only_c = tmp_path / "only_c"
    only_c.mkdir()
    for n in ("a.png", "b.png"):
        (only_c / n).write_bytes((full / n).read_bytes())
    (only_c / "vosr_infer_settings.json").write_bytes((full / "vosr_infer_settings.json").read_bytes())
    assert main([*base, "-o", str(only_c)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(only_c / "c.png")), first["c.png"])


def test_16bit_gray_and_alpha_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    from vosr.infer_cli import read_rgb8

    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    gray16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray16.png"), gray16)
    gray = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name, what in (("deep.png", "16-bit per channel"), ("gray16.png", "16-bit per channel"),
                       ("gray.png", "grayscale"), ("rgba.png", "alpha")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"{name}: image mode .*{what}.*--convert-inputs"):
            read_rgb8(tmp_path / name)
    # explicit conversion: 16-bit rounded to 8 bits (not Pillow's dropped low byte), gray
    # replicated, alpha dropped; a note names each file
    round8 = lambda v: ((v.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)  # noqa: E731
    deep = read_rgb8(tmp_path / "deep.png", convert=True)
    np.testing.assert_array_equal(deep, round8(rgb16))
    assert not np.array_equal(deep, (rgb16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(
        read_rgb8(tmp_path / "gray16.png", convert=True), np.repeat(round8(gray16)[..., None], 3, 2)
    )
    np.testing.assert_array_equal(
        read_rgb8(tmp_path / "gray.png", convert=True), np.repeat(gray[..., None], 3, 2)
    )
    np.testing.assert_array_equal(read_rgb8(tmp_path / "rgba.png", convert=True), rgba[..., :3])
    err = capsys.readouterr().err
    assert "deep.png: converted to 8-bit RGB: 16-bit -> 8-bit (rounded)" in err
    assert "gray.png: converted to 8-bit RGB: grayscale -> RGB" in err and "alpha channel dropped" in err
    # 8-bit RGB and palette images pass through unchanged and silently
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_rgb8(tmp_path / "rgb.png"), rgba[..., :3])
