"""Dataset build end to end: contract, resume, crash safety, bad inputs, exports, CLI, demo helper."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data_capture.build import (
    BuildConfig,
    build_dataset,
    export_imagefolder,
    export_webdataset,
    read_manifest,
)
from data_capture.imageio import read_image
from data_capture.pair import PairConfig


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources_dir, canvases_dir, photos_dir) -> Path:
    out = tmp_path_factory.mktemp("ds")
    return build_dataset(sources_dir, canvases_dir, photos_dir, out, BuildConfig(pair=PairConfig(scale=4)), progress=False)


def test_dataset_contract(built, source_images):
    meta = json.loads((built / "dataset.json").read_text())
    assert meta["kind"] == "screensr-capture" and meta["scale"] == 4
    assert meta["counts"]["pairs"] == 3 and meta["counts"]["ok"] == 3, [r.get("reason") for r in read_manifest(built)]
    assert meta["config"]["pair"]["scale"] == 4
    for rec in read_manifest(built):
        for key in ("id", "status", "reason", "scale", "photo_to_canvas", "qa", "colour_fix", "residual_correction"):
            assert key in rec, key
        assert np.asarray(rec["photo_to_canvas"]).shape == (3, 3)
        hr, lr = read_image(built / rec["hr"]).rgb, read_image(built / rec["lr"]).rgb
        src = source_images[rec["id"]]
        np.testing.assert_array_equal(hr, src[: hr.shape[0], : hr.shape[1]])  # HR is the clean source
        assert lr.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)
        # LR is pixel-aligned with the area-downscaled HR: the QA (pre colour fix) and truth agree
        assert rec["qa"]["truth_error_px"]["median"] < 0.1
        assert rec["qa"]["psnr_y"] > 20
        assert rec["colour_fix"]["method"] == "wavelet"
    assert (built / "report.md").read_text().count("## ") == 3
    assert any(p.suffix == ".png" for p in (built / "report").iterdir())


def test_lr_is_aligned_to_the_downscaled_hr(built):
    """After the colour fix the LR matches the area-downscaled HR closely (sub-pixel alignment)."""
    for rec in read_manifest(built):
        hr, lr = read_image(built / rec["hr"]).rgb, read_image(built / rec["lr"]).rgb
        ref = cv2.resize(hr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32)
        a = lr.astype(np.float32)
        err = np.abs(a - ref)[4:-4, 4:-4].mean()
        # a one-LR-pixel shift would be far worse than the aligned result
        shifted = np.abs(np.roll(a, 1, axis=1) - ref)[4:-4, 4:-4].mean()
        assert err < 0.6 * shifted, (rec["id"], err, shifted)


def test_rerun_recomputes_nothing(built, sources_dir, canvases_dir, photos_dir):
    stamps = {p: p.stat().st_mtime_ns for p in (built / "records").iterdir()}
    stamps.update({p: p.stat().st_mtime_ns for p in (built / "lr").iterdir()})
    build_dataset(sources_dir, canvases_dir, photos_dir, built, BuildConfig(pair=PairConfig(scale=4)), progress=False)
    now = {p: p.stat().st_mtime_ns for p in (built / "records").iterdir()}
    now.update({p: p.stat().st_mtime_ns for p in (built / "lr").iterdir()})
    assert now == stamps


def test_imagefolder_export_loads_with_datasets(built, tmp_path):
    import datasets

    out = export_imagefolder(built, tmp_path / "hf")
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    split = ds["test"]
    assert len(split) == 3 and {"hr", "lr", "id", "psnr_y"} <= set(split.column_names)
    row = split[0]
    hr = read_image(built / f"hr/{row['id']}.png").rgb
    np.testing.assert_array_equal(np.asarray(row["hr"].convert("RGB")), hr)
    assert row["lr"].size == (hr.shape[1] // 4, hr.shape[0] // 4)


def test_webdataset_export(built, tmp_path):
    shards = export_webdataset(built, tmp_path / "wds")
    with tarfile.open(shards[0]) as tf:
        names = sorted(tf.getnames())
    ids = sorted(r["id"] for r in read_manifest(built))
    assert names == sorted(f"{i}.{ext}" for i in ids for ext in ("hr.png", "json", "lr.png"))


def _bad_photos(tmp: Path, sources_dir: Path, canvases_dir: Path, photos_dir: Path) -> Path:
    """A photo folder with one good photo and one of each kind of bad input."""
    d = tmp / "photos"
    d.mkdir()
    shutil.copy(photos_dir / "astronaut.jpg", d / "astronaut.jpg")  # good
    # EXIF-rotated: pixels stored rotated, tag 6 ("rotate 90 CW to display") restores the upright photo
    up = read_image(photos_dir / "chelsea.jpg").rgb
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(np.rot90(up, 1)).save(d / "chelsea.jpg", quality=95, exif=ex)
    # wrong canvas: coffee's name, chelsea's photo (other marker ids)
    shutil.copy(photos_dir / "astronaut.jpg", d / "coffee.jpg")
    # corrupt, grayscale 16-bit, and a photo with no canvas
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    shutil.copy(canvases_dir / "astronaut.layout.json", canvases_dir.parent / "unused.json")
    return d


def test_bad_inputs_are_handled_or_rejected_with_reasons(tmp_path, sources_dir, canvases_dir, photos_dir):
    cdir = tmp_path / "canvases"
    shutil.copytree(canvases_dir, cdir)
    shutil.copy(cdir / "astronaut.layout.json", cdir / "broken.layout.json")
    shutil.copy(cdir / "astronaut.layout.json", cdir / "gray16.layout.json")
    shutil.copy(cdir / "astronaut.layout.json", cdir / "occluded.layout.json")
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(photos_dir / "astronaut.jpg", d / "astronaut.jpg")
    up = read_image(photos_dir / "chelsea.jpg").rgb
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(np.rot90(up, 1)).save(d / "chelsea.jpg", quality=95, exif=ex)
    shutil.copy(photos_dir / "astronaut.jpg", d / "coffee.jpg")  # wrong canvas
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")  # corrupt
    gray = cv2.cvtColor(read_image(photos_dir / "astronaut.jpg").rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(d / "gray16.png"), gray.astype(np.uint16) * 257)  # grayscale 16-bit
    shutil.copy(cdir / "astronaut.layout.json", cdir / "rgb16.layout.json")
    rgb16 = cv2.cvtColor(read_image(photos_dir / "astronaut.jpg").rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    cv2.imwrite(str(d / "rgb16.png"), rgb16)  # 16-bit colour
    occl = read_image(photos_dir / "astronaut.jpg").rgb.copy()
    occl[: occl.shape[0] // 2] = 0  # top half covered: two markers and half the content gone
    cv2.imwrite(str(d / "occluded.png"), cv2.cvtColor(occl, cv2.COLOR_RGB2BGR))
    shutil.copy(photos_dir / "astronaut.jpg", d / "stray.jpg")  # no canvas of that name
    out = build_dataset(sources_dir, cdir, d, tmp_path / "ds", BuildConfig(), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["astronaut"]["status"] == "ok"
    # EXIF orientation applied deliberately: same geometry as the upright photo
    assert recs["chelsea"]["status"] == "ok" and recs["chelsea"]["orientation"] == 6
    assert "EXIF orientation 6 applied" in recs["chelsea"]["input_notes"]
    assert recs["coffee"]["status"] == "rejected" and "another canvas" in recs["coffee"]["reason"]
    assert recs["broken"]["status"] == "rejected" and "could not be decoded" in recs["broken"]["reason"]
    assert recs["gray16"]["status"] == "rejected" and "grayscale" in recs["gray16"]["reason"]
    assert recs["rgb16"]["status"] == "ok" and "16-bit input reduced to 8 bit" in recs["rgb16"]["input_notes"]
    assert recs["occluded"]["status"] == "rejected" and recs["occluded"]["reason"], recs["occluded"]
    assert recs["stray"]["status"] == "rejected" and "no canvas layout" in recs["stray"]["reason"]
    for r in recs.values():
        if r["status"] == "rejected":
            assert r["hr"] is None and not (out / "lr" / f"{r['id']}.png").exists()
    report = (out / "report.md").read_text()
    assert "another canvas" in report and "could not be decoded" in report


def test_exif_rotated_photo_gives_the_upright_geometry(tmp_path, sources_dir, canvases_dir, photos_dir, built):
    d = tmp_path / "p"
    d.mkdir()
    up = read_image(photos_dir / "chelsea.jpg").rgb
    ex = Image.Exif()
    ex[0x0112] = 8  # stored rotated 90 CW; tag 8 = rotate 90 CCW to display
    Image.fromarray(np.rot90(up, -1)).save(d / "chelsea.png", exif=ex)
    out = build_dataset(sources_dir, canvases_dir, d, tmp_path / "ds", BuildConfig(report=False), progress=False)
    rot = read_manifest(out)[0]
    ref = {r["id"]: r for r in read_manifest(built)}["chelsea"]
    np.testing.assert_allclose(np.asarray(rot["photo_to_canvas"]), np.asarray(ref["photo_to_canvas"]), atol=2e-3)


def test_crash_mid_pair_leaves_no_record_and_resume_completes(tmp_path, sources_dir, canvases_dir, photos_dir,
                                                             monkeypatch):
    import data_capture.build as build_mod

    real = build_mod.write_image
    calls = {"n": 0}

    def flaky(path, *a, **k):
        if "/lr/" in str(path).replace("\\", "/"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt("simulated crash while writing an LR image")
        return real(path, *a, **k)

    monkeypatch.setattr(build_mod, "write_image", flaky)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        build_dataset(sources_dir, canvases_dir, photos_dir, out, BuildConfig(report=False), progress=False)
    assert len(list((out / "records").glob("*.json"))) == 1  # the finished pair only
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(build_mod, "write_image", real)
    first = next((out / "records").glob("*.json"))
    stamp = first.stat().st_mtime_ns
    build_dataset(sources_dir, canvases_dir, photos_dir, out, BuildConfig(report=False), progress=False)
    assert first.stat().st_mtime_ns == stamp  # the finished pair was not redone
    assert sum(r["status"] == "ok" for r in read_manifest(out)) == 3


def _cli_main(argv: list[str]) -> int:
    """``screensr capture ...`` through this package's ``add_commands`` (as screensr.cli wires it),
    mapping user errors to exit status 2 like the real entry point."""
    import argparse

    from data_capture.cli import add_commands

    root = argparse.ArgumentParser(prog="screensr")
    sub = root.add_subparsers(dest="command")
    add_commands(sub.add_parser("capture"))
    args = root.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError):
        return 2


def test_cli_end_to_end(tmp_path, sources_dir):
    main = _cli_main

    c, p, o = tmp_path / "c", tmp_path / "p", tmp_path / "o"
    assert main(["capture", "canvas", str(sources_dir), "--out", str(c), "--size", "800x600", "--no-progress"]) == 0
    assert main(["capture", "simulate", str(c), "--out", str(p), "--preset", "mild", "--photo-size", "1024x768",
                 "--no-progress"]) == 0
    assert main(["capture", "build", "--sources", str(sources_dir), "--canvases", str(c), "--photos", str(p),
                 "--out", str(o), "--scale", "2", "--colour", "adain", "--export-wds", str(tmp_path / "w"),
                 "--no-progress"]) == 0
    recs = read_manifest(o)
    assert {r["status"] for r in recs} == {"ok"} and recs[0]["scale"] == 2
    assert recs[0]["colour_fix"]["method"] == "adain"
    assert main(["capture", "align", str(p / "coffee.jpg"), "--canvases", str(c), "--sources", str(sources_dir),
                 "--out", str(tmp_path / "a"), "--scale", "2"]) == 0
    assert (tmp_path / "a" / "coffee.lr.png").is_file()
    assert main(["capture", "show", str(c), "--list"]) == 0
    # user errors: exit status 2 with a message, no traceback
    assert main(["capture", "build", "--sources", str(sources_dir), "--canvases", str(tmp_path / "nope"),
                 "--photos", str(p), "--out", str(o)]) == 2
    assert main(["capture", "simulate", str(c), "--out", str(p), "--preset", "typcal"]) == 2


def test_make_simulated_dataset(tmp_path, sources_dir):
    from data_capture.pipeline import make_simulated_dataset

    out = make_simulated_dataset(sources_dir, tmp_path / "demo", scale=4, preset="mild", seed=0, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["counts"]["ok"] == 3 and meta["kind"] == "screensr-capture"
    assert all((out / r["lr"]).is_file() for r in read_manifest(out))


def test_extreme_angle_is_rejected_with_reason(source_images):
    """A strongly oblique view (far side sampled much coarser than the near side) is rejected."""
    from data_capture.canvas import CanvasConfig, plan_layout, render_canvas
    from data_capture.pair import process_pair
    from data_capture.simulate import preset_config, simulate_photo

    src = source_images["coffee"]
    layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=800, height=600))
    canvas = render_canvas(src, layout)
    cfg = preset_config("mild", photo_width=1024, photo_height=768, fill=0.95)
    photo, truth = simulate_photo(canvas, cfg, 0)
    # re-project the photo as if seen at a steep angle: squeeze one side to a third of its height
    h, w = photo.shape[:2]
    quad = np.float32([[0, 0], [w, h * 0.33], [w, h * 0.67], [0, h]])
    M = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), quad)
    steep = cv2.warpPerspective(photo, M, (w, h), flags=cv2.INTER_AREA)
    rec = process_pair(steep, src, layout, PairConfig(scale=4)).record
    assert rec["status"] == "rejected"
    assert rec["qa"].get("anisotropy", 0) > 2.5 or "markers detected" in rec["reason"]
    assert rec["reason"]


def test_changed_settings_rebuild_and_removed_photo_is_dropped(tmp_path, sources_dir, canvases_dir, photos_dir):
    photos = tmp_path / "p"
    shutil.copytree(photos_dir, photos)
    out = tmp_path / "ds"
    build_dataset(sources_dir, canvases_dir, photos, out, BuildConfig(report=False), progress=False)
    (photos / "chelsea.jpg").unlink()
    build_dataset(sources_dir, canvases_dir, photos, out,
                  BuildConfig(pair=PairConfig(scale=2), report=False), progress=False)
    recs = read_manifest(out)
    assert [r["id"] for r in recs] == ["astronaut", "coffee"] and {r["scale"] for r in recs} == {2}
    assert not (out / "hr" / "chelsea.png").exists() and not (out / "records" / "chelsea.json").exists()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["canvases_without_photo"] == ["chelsea"] and meta["scale"] == 2
