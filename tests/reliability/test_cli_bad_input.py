"""Every bad-input class of the README's datasets, methods and command line, through the real
console script: the first line of stderr is one ``error: ...`` naming the file or value and the
fix, the exit status is 2, and there is no traceback.

Most cases fail while the command checks its arguments and reads headers (under a second each);
the few that need the harness to decode an image or score run a one-pair dataset with PSNR.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

OTHER_FORMS = "other forms: folder:PATH, cmd:TEMPLATE, py:MODULE:FUNCTION, vosr:CKPT"
LAYOUTS = (
    "hr/ + lr/ (generic), manifest.jsonl + hr/ + lr/ (capture), test_HR/ + test_LR/ (crops), "
    "<Camera>/Test/<scale>/*_HR.png (realsr), Test_x<scale>/test_HR/ + test_LR/ (drealsr), LR images only (nr)"
)
FIX_8BIT = "convert it to 8-bit RGB (e.g. `convert IN -alpha off -depth 8 -type TrueColor OUT`)"


def _run(screensr, tmp_path, *args, metrics="psnr", methods="bicubic", env=None):
    """``bench run`` into a store under ``tmp_path``."""
    return screensr("bench", "run", *args, "--methods", methods, "--metrics", metrics,
                    "--store", f"sqlite:///{tmp_path / 'r.db'}", "--no-progress", env=env)  # fmt: skip


# ---------------------------------------------------------------------------- typos (checked first)
def test_method_typo_is_reported_before_the_dataset_is_read(tmp_path, assert_user_error, screensr):
    # the dataset does not exist either: the name is what the user sees first
    res = _run(screensr, tmp_path, "--dataset", str(tmp_path / "nope"), methods="bicubc")
    assert_user_error(res, f"error: unknown method 'bicubc' (did you mean 'bicubic'?); {OTHER_FORMS}")


def test_builtin_method_option_typo(tmp_path, assert_user_error, drealsr_dir, screensr):
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), methods="realesrgan@tiles=128")
    assert_user_error(
        res,
        "error: unknown option 'tiles' for realesrgan in 'realesrgan@tiles=128' (did you mean 'tile'?); "
        "realesrgan takes tile, tile_pad, threads",
    )
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), methods="bicubic@foo=1")
    assert_user_error(res, "error: unknown option 'foo' for bicubic in 'bicubic@foo=1': bicubic takes no options")


def test_metric_option_typo(tmp_path, assert_user_error, drealsr_dir, screensr):
    # (a metric name typo goes through the same check: see the demo test below)
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), metrics="psnr@crop_bordr=4")
    assert_user_error(
        res,
        "error: unknown option 'crop_bordr' for metric psnr (did you mean 'crop_border'?); "
        "pyiqa's psnr takes test_y_channel, crop_border, data_range, eps, color_space",
    )


def test_layout_typo(tmp_path, assert_user_error, drealsr_dir, screensr):
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), "--layout", "crop")
    assert_user_error(
        res,
        "error: unknown layout 'crop' (did you mean 'crops'?); `screensr bench datasets` describes each",
    )


def test_demo_typos_are_reported_before_anything_is_built(tmp_path, assert_user_error, screensr):
    out = tmp_path / "demo"
    res = screensr("demo", "--methods", "bicubc,lanczos", "--out", out)
    assert_user_error(res, f"error: unknown method 'bicubc' (did you mean 'bicubic'?); {OTHER_FORMS}")
    res = screensr("demo", "--metrics", "psnr,nique", "--out", out)
    assert res.first.startswith("error: unknown metric 'nique' (did you mean 'niqe'?); registered: psnr, ssim, ")
    assert_user_error(res, res.first)
    res = screensr("demo", "--preset", "milld", "--out", out)
    assert_user_error(res, "error: unknown simulator preset 'milld' (did you mean 'mild'?); choose one of clean, mild, typical, hard")
    assert not out.exists()  # nothing was built


# ---------------------------------------------------------------------------- datasets
def test_missing_folder_and_file_given_as_folder(tmp_path, assert_user_error, drealsr_dir, screensr):
    res = _run(screensr, tmp_path, "--dataset", str(tmp_path / "nope"))
    assert_user_error(res, f"error: dataset {tmp_path / 'nope'}: no such folder; check the path")
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir / "README.md"))
    assert_user_error(res, f"error: dataset {drealsr_dir / 'README.md'}: is a file, not a folder; give the dataset's folder")


def test_known_dataset_not_downloaded_says_where_it_comes_from(tmp_path, assert_user_error, cli_env, screensr):
    home = tmp_path / "home"
    res = _run(screensr, tmp_path, "--dataset", "DRealSR_crops", env=cli_env(SCREENSR_HOME=str(home)))
    assert_user_error(
        res,
        "error: dataset DRealSR_crops is not on this machine: DRealSR test set centre-cropped by StableSR "
        "(Wei et al. ECCV 2020; Wang et al. 2023), 93 pairs. Get it: StableSR_testsets.zip from the Hugging "
        "Face dataset Iceclear/StableSR-TestSets (folder DrealSRVal_crop128/), or OSEDiff's repository "
        "(github.com/cswry/OSEDiff), preset/datasets/benchmark_drealsr/; put its test_HR/ and test_LR/ folders "
        f"in {home / 'datasets' / 'DRealSR_crops'}/, or pass any folder with --dataset DIR",
    )


def test_unknown_name_points_at_the_listing(tmp_path, assert_user_error, cli_env, screensr):
    home = tmp_path / "home"
    res = _run(screensr, tmp_path, "--dataset", "mydata", env=cli_env(SCREENSR_HOME=str(home)))
    assert_user_error(
        res,
        f"error: dataset mydata: no such folder, and no named dataset {home / 'datasets' / 'mydata'}; give a "
        f"dataset folder, or a name under {home / 'datasets'} (`screensr bench datasets` lists the known ones "
        "and what is present)",
    )


def test_empty_folder_lists_the_layouts(tmp_path, assert_user_error, screensr):
    (tmp_path / "empty").mkdir()
    res = _run(screensr, tmp_path, "--dataset", str(tmp_path / "empty"))
    assert_user_error(
        res,
        f"error: {tmp_path / 'empty'}: not a dataset folder (the folder is empty); expected one of {LAYOUTS} "
        "(`screensr bench datasets` shows each layout; --layout forces one)",
    )


def test_empty_hr_and_lr_folders_name_the_expected_layout(tmp_path, assert_user_error, screensr):
    (tmp_path / "d" / "hr").mkdir(parents=True)
    (tmp_path / "d" / "lr").mkdir()
    res = _run(screensr, tmp_path, "--dataset", str(tmp_path / "d"))
    assert_user_error(
        res,
        f"error: {tmp_path / 'd'}: no images found; the generic layout (an HR and an LR folder whose files pair "
        "by stem) expects hr/NAME.png (or gt/, test_HR/); lr/NAME.png (or lq/, test_LR/), same NAMEs as hr/",
    )


def test_missing_partner(tmp_path, assert_user_error, pairs, screensr):
    root = pairs(tmp_path / "d", n=3)
    (root / "hr" / "img_2.png").unlink()
    res = _run(screensr, tmp_path, "--dataset", str(root))
    assert_user_error(
        res,
        f"error: {root}: pairs are matched by file name and some have no partner (LR without HR: img_2.png); "
        "add or remove those files",
    )


def test_wrong_size_pair(tmp_path, assert_user_error, pairs, rgb, save_png, screensr):
    root = pairs(tmp_path / "d", n=2)
    save_png(root / "hr" / "img_1.png", rgb(60, 64))
    res = _run(screensr, tmp_path, "--dataset", str(root))
    assert_user_error(
        res,
        f"error: pair 'img_1': HR {root / 'hr' / 'img_1.png'} is 64x60 but LR {root / 'lr' / 'img_1.png'} is "
        "16x16; at x4 the HR must be 64x64. Fix the files or pass the right --scale.",
    )


def test_not_an_image(tmp_path, assert_user_error, pairs, screensr):
    root = pairs(tmp_path / "d", n=2)
    bad = root / "lr" / "img_1.png"
    bad.write_bytes(b"this is not a png")
    res = _run(screensr, tmp_path, "--dataset", str(root))
    assert res.first.startswith(f"error: {bad}: not a readable image (") and res.first.endswith(
        "); re-export or remove it"
    )
    assert_user_error(res, res.first)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("gray", "is grayscale (mode L); SR metrics need RGB: "), ("rgba", "has an alpha channel (mode RGBA); "),
     ("deep", "is a 16-bit image (16 bits per channel); ")],
)  # fmt: skip
def test_grayscale_rgba_16bit_images(tmp_path, kind, problem, assert_user_error, pairs, save_png, screensr):
    import cv2

    root = pairs(tmp_path / "d", n=2)
    bad = root / "hr" / "img_0.png"
    if kind == "gray":
        save_png(bad, np.asarray(Image.open(bad).convert("L")))
    elif kind == "rgba":
        save_png(bad, np.asarray(Image.open(bad).convert("RGBA")))
    else:
        cv2.imwrite(str(bad), np.full((64, 64, 3), 40000, np.uint16))
    res = _run(screensr, tmp_path, "--dataset", str(root))
    assert_user_error(res, f"error: {bad}: {problem}{FIX_8BIT}")


def test_pixel_bomb_stand_in(tmp_path, assert_user_error, cli_env, pairs, screensr):
    # the same header check that stops a 20000x20000 PNG, at a limit the 64x64 HR exceeds
    root = pairs(tmp_path / "d", n=1)
    res = _run(screensr, tmp_path, "--dataset", str(root), env=cli_env(SCREENSR_MAX_PIXELS="1000"))
    # the LR (256 px) passes, the HR (4096 px) does not
    assert_user_error(
        res,
        f"error: {root / 'hr' / 'img_0.png'}: 64x64 = 0.0 MP exceeds the pixel limit of 0.0 MP; downscale or "
        "crop the image, or raise the limit with SCREENSR_MAX_PIXELS (pixels) if it is genuine",
    )


def test_corrupt_capture_manifest(tmp_path, assert_user_error, pairs, screensr):
    root = pairs(tmp_path / "cap", n=2)
    (root / "manifest.jsonl").write_text(json.dumps({"id": "img_0", "status": "ok", "scale": 4}) + "\n{oops\n")
    res = _run(screensr, tmp_path, "--dataset", str(root))
    assert res.first.startswith(f"error: {root / 'manifest.jsonl'}:2: not a manifest entry with an 'id' (")
    assert_user_error(res, res.first)


def test_truncated_image_found_when_decoded(tmp_path, assert_user_error, pairs, screensr):
    # the header is intact, so only decoding finds it: the run stops at that pair, naming the file
    root = pairs(tmp_path / "d", n=1)
    bad = root / "lr" / "img_0.png"
    bad.write_bytes(bad.read_bytes()[:120])
    res = _run(screensr, tmp_path, "--dataset", str(root), "--no-gt")
    assert res.first.startswith(f"error: {bad}: cannot be decoded (") and res.first.endswith(
        "); the file is corrupt or truncated, re-export or re-download it"
    ), res.stderr
    assert_user_error(res, res.first)


# ---------------------------------------------------------------------------- methods
def test_precomputed_outputs_missing_or_incomplete(tmp_path, assert_user_error, drealsr_dir, screensr):
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), methods=f"folder:{tmp_path / 'outs'}")
    assert_user_error(
        res,
        f"error: folder:{tmp_path / 'outs'}: no such folder of SR outputs; give the folder that holds one SR "
        "image per LR image, named like the LR file (e.g. folder:results/osediff)",
    )
    part = tmp_path / "partial"
    part.mkdir()
    for name in ("Canon_10_x1.png", "DSC_0988_x1.png"):
        (part / name).write_bytes((drealsr_dir / "osediff" / name).read_bytes())
    res = _run(screensr, tmp_path, "--dataset", str(drealsr_dir), methods=f"folder:{part}")
    missing = sorted(p.stem for p in (drealsr_dir / "test_LR").glob("*.png") if not (part / p.name).exists())
    assert len(missing) == 17
    assert_user_error(
        res,
        f"error: folder:{part}: no SR output for 17 of the 19 pairs of drealsr_osediff ({', '.join(missing[:5])}, "
        "...); outputs are matched by file stem (the pair id or the LR file name)",
    )


def test_precomputed_output_of_the_wrong_size(tmp_path, assert_user_error, pairs, rgb, save_png, screensr):
    root = pairs(tmp_path / "d", n=1)
    save_png(tmp_path / "outs" / "img_0.png", rgb(60, 64))
    res = _run(screensr, tmp_path, "--dataset", str(root), "--no-gt", methods=f"folder:{tmp_path / 'outs'}")
    assert_user_error(
        res,
        f"error: method 'outs': SR output {tmp_path / 'outs' / 'img_0.png'} is 64x60 but HR "
        f"{root / 'hr' / 'img_0.png'} is 64x64; outputs are never resized: fix the method or its outputs",
    )


def test_command_and_python_method_specs(tmp_path, assert_user_error, drealsr_dir, screensr):
    res = screensr("bench", "run", "--dataset", drealsr_dir, "--method", "cmd:echo {input}")
    assert_user_error(
        res,
        "error: cmd:'echo {input}': the template needs {input} and {output}, e.g. cmd:python my_sr.py {input} "
        "{output} --scale {scale}",
    )
    res = screensr("bench", "run", "--dataset", drealsr_dir, "--methods", "py:no_such_module:sr")
    assert_user_error(res, "error: py:no_such_module:sr: cannot import module 'no_such_module' (No module named 'no_such_module')")


# ---------------------------------------------------------------------------- weights
def test_missing_weights_name_file_path_and_fix(tmp_path, monkeypatch, assert_user_error, pairs, screensr):
    from benchmark.weights import metric_weight_files

    # empty caches of its own: other tests write random LPIPS weights into the session's caches
    for var in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    root = pairs(tmp_path / "d", n=1)
    res = _run(screensr, tmp_path, "--dataset", str(root), "--no-gt", metrics="psnr,lpips")
    assert res.returncode == 0 and "Traceback" not in res.stderr  # PSNR is scored, LPIPS skipped
    assert res.first == "warning: metric lpips unavailable, not computed:"
    for wf in metric_weight_files("lpips"):
        assert f"  - {wf.name} -> {wf.path} (download: {wf.url})" in res.stderr
    assert "`screensr weights --from DIR`" in res.stderr
    res = screensr("weights", "--from", tmp_path / "no-such-dir")
    assert_user_error(
        res, f"error: --from {tmp_path / 'no-such-dir'}: not a folder; give the folder that holds the weight files"
    )
