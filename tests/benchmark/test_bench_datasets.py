"""Dataset layouts, pairing by name, and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import DREALSR, make_capture, make_generic, save, smooth_image
from PIL import Image

from benchmark.datasets import DatasetError, load_dataset
from benchmark.images import ImageFormatError, read_image


def test_drealsr_crops_layout():
    ds = load_dataset(DREALSR)
    assert (ds.layout, ds.scale, len(ds)) == ("crops", 4, 19)
    assert all(p.hr.name == p.lr.name for p in ds)  # same file name on both sides
    assert ds.record().n_pairs == 19


def test_generic_pairs_by_name_not_sorted_order(tmp_path):
    rng = np.random.default_rng(1)
    # LR stems sort differently from HR stems' creation order; partners must still match by name
    for stem in ("b", "a", "10", "9"):
        hr = smooth_image(rng, 32, 32)
        save(tmp_path / "d" / "HR" / f"{stem}.png", hr)
        save(tmp_path / "d" / "LR" / f"{stem}.png", hr[::2, ::2])
    ds = load_dataset(tmp_path / "d")
    assert ds.layout == "generic" and ds.scale == 2
    for p in ds:
        assert p.hr.stem == p.lr.stem == p.id


def test_capture_layout_skips_rejected(tmp_path):
    root = make_capture(tmp_path / "cap", n=4, rejected=1)
    ds = load_dataset(root)
    assert ds.layout == "capture" and ds.n_rejected == 1 and len(ds) == 3
    assert ds.pairs[0].meta["status"] == "ok"
    assert ds.record().config["n_rejected"] == 1
    with pytest.raises(DatasetError, match="contradicts"):
        load_dataset(root, scale=2)


def test_realsr_and_drealsr_full_layouts(tmp_path):
    rng = np.random.default_rng(2)
    for cam in ("Canon", "Nikon"):
        for k in (1, 2):
            hr = smooth_image(rng, 32, 32)
            save(tmp_path / "RealSR" / cam / "Test" / "4" / f"{cam}_00{k}_HR.png", hr)
            save(tmp_path / "RealSR" / cam / "Test" / "4" / f"{cam}_00{k}_LR4.png", hr[::4, ::4])
    ds = load_dataset(tmp_path / "RealSR")
    assert ds.layout == "realsr" and ds.scale == 4
    assert [p.id for p in ds] == ["Canon_001", "Canon_002", "Nikon_001", "Nikon_002"]
    for k in ("a", "b"):
        hr = smooth_image(rng, 32, 32)
        save(tmp_path / "DRealSR" / "Test_x4" / "test_HR" / f"{k}_x1.png", hr)
        save(tmp_path / "DRealSR" / "Test_x4" / "test_LR" / f"{k}_x4.png", hr[::4, ::4])
    ds = load_dataset(tmp_path / "DRealSR")
    assert (ds.layout, ds.scale, [p.id for p in ds]) == ("drealsr", 4, ["a", "b"])


def test_nr_only_set(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(2):
        save(tmp_path / "nr" / f"x{k}.png", smooth_image(rng, 16, 16))
    ds = load_dataset(tmp_path / "nr", scale=4)
    assert ds.layout == "nr" and not ds.has_reference and all(p.hr is None for p in ds)


def test_named_dataset_under_screensr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    make_generic(tmp_path / "home" / "datasets" / "mini", n=2)
    assert load_dataset("mini").name == "mini"
    with pytest.raises(FileNotFoundError, match="no named dataset"):
        load_dataset("nosuchset")


def test_hf_datasets_folder(tmp_path, monkeypatch):
    import datasets as hfds

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(4)
    rows = {"id": [], "hr": [], "lr": []}
    for k in ("z1", "a2"):
        hr = smooth_image(rng, 32, 32)
        rows["id"].append(k)
        rows["hr"].append(Image.fromarray(hr))
        rows["lr"].append(Image.fromarray(hr[::4, ::4].copy()))
    feats = hfds.Features({"id": hfds.Value("string"), "hr": hfds.Image(), "lr": hfds.Image()})
    hfds.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp_path / "ScreenSR"))
    ds = load_dataset(f"hf:{tmp_path / 'ScreenSR'}")
    assert [p.id for p in ds] == ["a2", "z1"] and ds.scale == 4
    assert np.array_equal(read_image(ds.pairs[1].hr).array, np.asarray(rows["hr"][0]))
    again = load_dataset(f"hf:{tmp_path / 'ScreenSR'}")  # materialised once, reused
    assert again.root == ds.root


# ---------------------------------------------------------------------------- bad inputs
def test_missing_partner_named(generic_ds):
    (generic_ds / "hr" / "img_2.png").unlink()
    with pytest.raises(DatasetError, match=r"LR without HR: img_2\.png"):
        load_dataset(generic_ds)


def test_size_contradicting_scale_named(generic_ds):
    save(generic_ds / "hr" / "img_1.png", np.zeros((60, 64, 3), np.uint8))
    with pytest.raises(ImageFormatError, match=r"img_1.*60.*must be 64x64"):
        load_dataset(generic_ds, scale=4)
    with pytest.raises(ImageFormatError, match="must be"):
        load_dataset(generic_ds, scale=2)


def test_corrupt_truncated_image_named(generic_ds):
    f = generic_ds / "hr" / "img_0.png"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(ImageFormatError, match=r"img_0\.png.*(corrupt|truncated|readable)"):
        read_image(f)
    g = generic_ds / "lr" / "img_1.png"
    g.write_bytes(b"not a png at all")
    with pytest.raises(ImageFormatError, match="img_1.png"):
        load_dataset(generic_ds)


@pytest.mark.parametrize(
    ("mode", "arr", "match"),
    [
        ("RGBA", np.full((8, 8, 4), 128, np.uint8), "alpha"),
        ("L", np.full((8, 8), 128, np.uint8), "grayscale"),
        (None, np.full((8, 8), 4000, np.uint16), "16-bit"),
    ],
)
def test_wrong_image_modes_named(tmp_path, mode, arr, match):
    f = tmp_path / f"bad_{mode or 'I16'}.png"
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(f)
    with pytest.raises(ImageFormatError, match=rf"{f.name}.*{match}.*8-bit RGB"):
        read_image(f)


def test_16bit_rgb_png_named(tmp_path):
    import cv2

    f = tmp_path / "deep.png"
    cv2.imwrite(str(f), np.full((8, 8, 3), 40000, np.uint16))
    with pytest.raises(ImageFormatError, match=r"deep\.png.*16-bit"):
        read_image(f)


def test_not_a_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown layout"):
        load_dataset(DREALSR, layout="weird")
