"""Dataset layouts, pairing by name, and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmark.datasets import DatasetError, load_dataset
from benchmark.images import ImageFormatError, read_image
from core.errors import UnknownNameError


def test_drealsr_crops_layout(drealsr_dir):
    ds = load_dataset(drealsr_dir)
    assert (ds.layout, ds.scale, len(ds)) == ("crops", 4, 19)
    assert all(p.hr.name == p.lr.name for p in ds)  # same file name on both sides
    assert ds.record().n_pairs == 19


def test_generic_pairs_by_name_not_sorted_order(tmp_path, save_png, smooth_image):
    rng = np.random.default_rng(1)
    # LR stems sort differently from HR stems' creation order; partners must still match by name
    for stem in ("b", "a", "10", "9"):
        hr = smooth_image(rng, 32, 32)
        save_png(tmp_path / "d" / "HR" / f"{stem}.png", hr)
        save_png(tmp_path / "d" / "LR" / f"{stem}.png", hr[::2, ::2])
    ds = load_dataset(tmp_path / "d")
    assert ds.layout == "generic" and ds.scale == 2
    for p in ds:
        assert p.hr.stem == p.lr.stem == p.id


def test_capture_layout_skips_rejected(tmp_path, make_capture):
    root = make_capture(tmp_path / "cap", n=4, rejected=1)
    ds = load_dataset(root)
    assert ds.layout == "capture" and ds.n_rejected == 1 and len(ds) == 3
    assert ds.pairs[0].meta["status"] == "ok"
    assert ds.record().config["n_rejected"] == 1
    with pytest.raises(DatasetError, match="contradicts"):
        load_dataset(root, scale=2)


def test_realsr_and_drealsr_full_layouts(tmp_path, save_png, smooth_image):
    rng = np.random.default_rng(2)
    for cam in ("Canon", "Nikon"):
        for k in (1, 2):
            hr = smooth_image(rng, 32, 32)
            save_png(tmp_path / "RealSR" / cam / "Test" / "4" / f"{cam}_00{k}_HR.png", hr)
            save_png(tmp_path / "RealSR" / cam / "Test" / "4" / f"{cam}_00{k}_LR4.png", hr[::4, ::4])
    ds = load_dataset(tmp_path / "RealSR")
    assert ds.layout == "realsr" and ds.scale == 4
    assert [p.id for p in ds] == ["Canon_001", "Canon_002", "Nikon_001", "Nikon_002"]
    for k in ("a", "b"):
        hr = smooth_image(rng, 32, 32)
        save_png(tmp_path / "DRealSR" / "Test_x4" / "test_HR" / f"{k}_x1.png", hr)
        save_png(tmp_path / "DRealSR" / "Test_x4" / "test_LR" / f"{k}_x4.png", hr[::4, ::4])
    ds = load_dataset(tmp_path / "DRealSR")
    assert (ds.layout, ds.scale, [p.id for p in ds]) == ("drealsr", 4, ["a", "b"])


def test_nr_only_set(tmp_path, save_png, smooth_image):
    rng = np.random.default_rng(3)
    for k in range(2):
        save_png(tmp_path / "nr" / f"x{k}.png", smooth_image(rng, 16, 16))
    ds = load_dataset(tmp_path / "nr", scale=4)
    assert ds.layout == "nr" and not ds.has_reference and all(p.hr is None for p in ds)


def test_named_dataset_under_screensr_home(tmp_path, monkeypatch, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    make_generic(tmp_path / "home" / "datasets" / "mini", n=2)
    assert load_dataset("mini").name == "mini"
    with pytest.raises(FileNotFoundError, match="no named dataset"):
        load_dataset("nosuchset")


def test_hf_datasets_folder(tmp_path, monkeypatch, smooth_image):
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


def test_size_contradicting_scale_named(generic_ds, save_png):
    save_png(generic_ds / "hr" / "img_1.png", np.zeros((60, 64, 3), np.uint8))
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


def test_not_a_dataset(tmp_path, drealsr_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(UnknownNameError, match="unknown layout 'crop' \\(did you mean 'crops'\\?\\)"):
        load_dataset(drealsr_dir, layout="crop")


# ---------------------------------------------------------------------------- layouts and sources
def test_empty_folder_says_which_layouts_are_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "empty")
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'empty'}: not a dataset folder (the folder is empty); expected one of ")
    for signature in ("hr/ + lr/ (generic)", "test_HR/ + test_LR/ (crops)", "manifest.jsonl + hr/ + lr/ (capture)",
                      "<Camera>/Test/<scale>/*_HR.png (realsr)", "Test_x<scale>/test_HR/ + test_LR/ (drealsr)",
                      "LR images only (nr)"):  # fmt: skip
        assert signature in msg
    assert "\n" not in msg  # one line on the terminal


def test_empty_hr_lr_folders_name_the_layout(tmp_path):
    (tmp_path / "d" / "hr").mkdir(parents=True)
    (tmp_path / "d" / "lr").mkdir()
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "d")
    assert str(exc.value) == (
        f"{tmp_path / 'd'}: no images found; the generic layout (an HR and an LR folder whose files pair by "
        "stem) expects hr/NAME.png (or gt/, test_HR/); lr/NAME.png (or lq/, test_LR/), same NAMEs as hr/"
    )
    (tmp_path / "c" / "test_HR").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no test_LR/ folder; the crops layout .* expects test_HR/NAME\.png"):
        load_dataset(tmp_path / "c", layout="crops")


def test_test_hr_lr_folders_read_as_generic_too(tmp_path, drealsr_dir):
    import shutil

    shutil.copytree(drealsr_dir / "test_HR", tmp_path / "d" / "test_HR")
    shutil.copytree(drealsr_dir / "test_LR", tmp_path / "d" / "test_LR")
    crops, generic = load_dataset(tmp_path / "d"), load_dataset(tmp_path / "d", layout="generic")
    assert crops.layout == "crops" and generic.layout == "generic"
    assert [(p.id, p.hr, p.lr) for p in crops] == [(p.id, p.hr, p.lr) for p in generic]


def test_parent_of_datasets_points_at_them(tmp_path, make_generic):
    # the StableSR zip unpacks to one folder per test set
    make_generic(tmp_path / "StableSR_testsets" / "RealSRVal_crop128", n=1)
    (tmp_path / "StableSR_testsets" / "README.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"these sub-folders are datasets: RealSRVal_crop128/ \(generic\)"):
        load_dataset(tmp_path / "StableSR_testsets")


def test_missing_known_dataset_says_where_it_comes_from(tmp_path, monkeypatch):
    from benchmark.datasets import DatasetNotFoundError

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset("DRealSR_crops")
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    assert msg.startswith("dataset DRealSR_crops is not on this machine: DRealSR test set centre-cropped by StableSR")
    for part in ("Iceclear/StableSR-TestSets", "DrealSRVal_crop128/", "preset/datasets/benchmark_drealsr/",
                 f"test_HR/ and test_LR/ folders in {tmp_path / 'home' / 'datasets' / 'DRealSR_crops'}/",
                 "--dataset DIR"):  # fmt: skip
        assert part in msg
    with pytest.raises(DatasetNotFoundError, match="github.com/csjcai/RealSR"):
        load_dataset("realsr")  # known names are case-insensitive
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset(str(tmp_path / "nowhere"))
    assert str(exc.value) == f"dataset {tmp_path / 'nowhere'}: no such folder; check the path"


def test_named_datasets_are_found_case_insensitively(tmp_path, monkeypatch, drealsr_dir):
    import shutil

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    shutil.copytree(drealsr_dir, tmp_path / "home" / "datasets" / "DRealSR_crops")
    assert len(load_dataset("DRealSR_crops")) == len(load_dataset("drealsr_crops")) == 19
    from benchmark.datasets import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"no named dataset .*DRealSR_crop \(did you mean 'DRealSR_crops'"):
        load_dataset("DRealSR_crop")  # close to the local folder's name


def test_survey_reports_known_local_and_given(tmp_path, monkeypatch, drealsr_dir, make_generic):
    import shutil

    from benchmark.datasets import survey

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    shutil.copytree(drealsr_dir, tmp_path / "home" / "datasets" / "DRealSR_crops")
    make_generic(tmp_path / "home" / "datasets" / "mine", n=3)
    (tmp_path / "home" / "datasets" / "broken").mkdir()
    found = survey([str(drealsr_dir), "hf:CSWRY/ScreenSR"])
    known = {st.given: st for st in found["known"]}
    assert known["DRealSR_crops"].pairs == 19 and known["DRealSR_crops"].layout == "crops"
    assert known["RealSR_crops"].path is None and known["RealSR_crops"].error is None  # absent
    local = {st.given: st for st in found["local"]}
    assert local["mine"].pairs == 3 and local["mine"].scale == 4
    assert "not a dataset folder (the folder is empty)" in local["broken"].error
    assert found["given"][0].pairs == 19
    # a hub dataset is never downloaded by the listing: only its local copy is looked at
    assert found["given"][1].path is None and "no local copy yet" in found["given"][1].note


def test_hf_hub_offline_fails_at_once_with_the_fix(tmp_path, monkeypatch):
    import time

    from benchmark.datasets import DatasetNotFoundError

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))  # HF_HUB_OFFLINE=1 (conftest)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset("hf:CSWRY/ScreenSR")
    assert time.perf_counter() - start < 10
    msg = str(exc.value)
    assert msg.startswith("hf:CSWRY/ScreenSR: offline mode is on (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set), "
                          f"and there is no local copy at {tmp_path / 'home' / 'datasets' / 'ScreenSR'}.")  # fmt: skip
    assert "hf download --repo-type dataset CSWRY/ScreenSR --local-dir DIR" in msg and "--dataset hf:DIR" in msg


def test_hf_hub_offline_uses_the_copy_made_earlier(tmp_path, monkeypatch, capsys, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    copy = make_generic(tmp_path / "home" / "datasets" / "ScreenSR", n=2)
    (copy / ".complete").write_text("fingerprint-of-the-release")
    ds = load_dataset("hf:CSWRY/ScreenSR")
    assert ds.root == copy and len(ds) == 2 and ds.name == "ScreenSR"
    assert "using the copy made earlier" in capsys.readouterr().err


def test_images_are_checked_before_scoring(generic_ds):
    # grayscale, alpha and 16-bit data are refused from the header, when the dataset is opened
    f = generic_ds / "lr" / "img_3.png"
    Image.fromarray(np.asarray(Image.open(f).convert("L"))).save(f)
    with pytest.raises(ImageFormatError, match=r"img_3\.png: is grayscale \(mode L\)"):
        load_dataset(generic_ds)
    load_dataset(generic_ds, validate=False)  # only the listing


def test_pixel_limit_is_checked_on_the_header(generic_ds, monkeypatch):
    from core.imagelimits import ImageTooLargeError

    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "1000")  # the HR images are 64x64 = 4096 px
    with pytest.raises(ImageTooLargeError, match=r"img_0\.png: 64x64 = 0\.0 MP exceeds the pixel limit"):
        load_dataset(generic_ds)


def test_hf_mistyped_local_path_is_not_reported_as_offline(tmp_path):
    from benchmark.datasets import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"^hf:/no/such/ScreenSR: no such folder on this machine, and not a hub"):
        load_dataset("hf:/no/such/ScreenSR")


def test_layout_and_known_dataset_registries_have_one_shape():
    import dataclasses

    from benchmark.dataset_sources import KNOWN_DATASETS, LAYOUT_GUIDE, get_known_dataset
    from benchmark.datasets import LAYOUTS, get_layout
    from core.errors import UnknownNameError

    # every layout the harness reads has its guide, and nothing else is described
    assert list(LAYOUTS) == list(LAYOUT_GUIDE)
    for name, layout in LAYOUTS.items():
        assert layout.name == name and layout.guide is LAYOUT_GUIDE[name] and get_layout(name) is layout
        with pytest.raises(dataclasses.FrozenInstanceError):
            layout.name = "x"  # type: ignore[misc]
    with pytest.raises(UnknownNameError, match=r"^unknown layout 'drealsrr' \(did you mean 'drealsr'\?\)"):
        get_layout("drealsrr")
    for name, known in KNOWN_DATASETS.items():
        assert known.name == name and get_known_dataset(name.lower()) is known  # case-insensitive
    with pytest.raises(UnknownNameError, match=r"^unknown public dataset 'RealSR_crop' \(did you mean 'RealSR_crops'\?\)"):
        get_known_dataset("RealSR_crop")
