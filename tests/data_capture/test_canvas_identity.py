"""Canvas identity (issue 12.7): marker ids are assigned once per source, recorded in the layout,
never renumbered by a rerun, never shared inside a folder; photos are attributed by their ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from data_capture.build import BuildConfig, build_dataset, read_manifest
from data_capture.canvas import (
    CanvasConfig,
    CanvasIdCollisionWarning,
    CanvasSet,
    load_layout,
    make_canvases,
    read_layouts,
)
from data_capture.simulate import simulate_folder

SMALL = CanvasConfig(width=800, height=600)
PHOTO = {"photo_width": 1024, "photo_height": 768}


def _write(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _ids(folder: Path) -> dict[str, list[int]]:
    return {stem: sorted(lay.markers) for stem, lay in read_layouts(folder).items()}


@pytest.fixture()
def first_source() -> np.ndarray:
    """A fourth source whose name sorts before the three of the session fixtures."""
    from skimage import data

    v = data.rocket()
    s = 320 / max(v.shape[:2])
    return cv2.resize(v, (round(v.shape[1] * s) // 4 * 4, round(v.shape[0] * s) // 4 * 4), interpolation=cv2.INTER_AREA)


def test_a_new_source_that_sorts_first_changes_no_canvas_and_old_photos_still_register(
        tmp_path, sources_dir, canvases_dir, photos_dir, first_source):
    src = tmp_path / "sources"
    shutil.copytree(sources_dir, src)
    canv = tmp_path / "canvases"
    shutil.copytree(canvases_dir, canv)  # made (and photographed) before the new source existed
    before = _snapshot(canv)
    ids_before = _ids(canv)
    _write(src / "aardvark.png", first_source)  # sorts before astronaut, chelsea, coffee
    paths = make_canvases(src, canv, SMALL, progress=False)
    assert [p.name for p in paths][0] == "aardvark.layout.json"
    after = _snapshot(canv)
    for name, data in before.items():  # every existing canvas (PNG and layout) byte-identical
        assert after[name] == data, name
    ids = _ids(canv)
    assert {k: v for k, v in ids.items() if k != "aardvark"} == ids_before
    taken = {i for k, v in ids_before.items() for i in v}
    assert len(ids["aardvark"]) == 4 and not taken & set(ids["aardvark"])  # ids no other canvas uses
    assert load_layout(canv / "aardvark.layout.json").source_sha1  # identity of the source recorded
    # the photos taken before the new source was added, plus a photo of the new canvas
    photos = tmp_path / "photos"
    shutil.copytree(photos_dir, photos)
    sim = tmp_path / "sim"
    simulate_folder(canv, sim, preset="mild", seed=3, overrides=PHOTO, progress=False)
    for f in ("aardvark.jpg", "aardvark.truth.json"):
        shutil.copy(sim / f, photos / f)
    out = build_dataset(src, canv, photos, tmp_path / "ds", BuildConfig(report=False), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert set(recs) == {"aardvark", "astronaut", "chelsea", "coffee"}
    assert all(r["status"] == "ok" for r in recs.values()), {k: r["reason"] for k, r in recs.items()}
    # a rerun of `capture canvas` (same settings) writes nothing
    make_canvases(src, canv, SMALL, progress=False)
    assert _snapshot(canv) == after


def test_a_rerun_with_other_settings_or_a_changed_source_is_refused_and_writes_nothing(
        tmp_path, sources_dir, canvases_dir, first_source):
    src = tmp_path / "sources"
    shutil.copytree(sources_dir, src)
    canv = tmp_path / "canvases"
    shutil.copytree(canvases_dir, canv)
    _write(src / "aardvark.png", first_source)
    before = _snapshot(canv)
    with pytest.raises(ConfigError, match=r"astronaut\.layout\.json was made with other settings \(height: 600 \(existing\) vs 2160"):
        make_canvases(src, canv, CanvasConfig(), progress=False)  # the 4k default instead of 800x600
    with pytest.raises(ConfigError, match="one folder holds one marker size"):
        make_canvases(src, canv, CanvasConfig(width=800, height=600, dictionary="DICT_5X5_50"), progress=False)
    img = cv2.imread(str(src / "coffee.png"))
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(src / "coffee.png"), img)
    with pytest.raises(ConfigError, match=r"source .*coffee\.png changed since its canvas"):
        make_canvases(src, canv, SMALL, progress=False)
    assert _snapshot(canv) == before  # refused before anything was written: no aardvark canvas either
    # two sources with one stem would need one canvas file each
    cv2.imwrite(str(src / "aardvark.jpg"), cv2.cvtColor(first_source, cv2.COLOR_RGB2BGR))
    with pytest.raises(ConfigError, match=r"share a stem .*aardvark"):
        make_canvases(src, canv, SMALL, progress=False)


def test_a_changed_source_rejects_its_pair_in_the_build(tmp_path, sources_dir, canvases_dir, photos_dir):
    src = tmp_path / "sources"
    shutil.copytree(sources_dir, src)
    img = cv2.imread(str(src / "chelsea.png"))
    cv2.imwrite(str(src / "chelsea.png"), cv2.flip(img, 1))  # same size, different picture
    out = build_dataset(src, canvases_dir, photos_dir, tmp_path / "ds", BuildConfig(report=False), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["chelsea"]["status"] == "rejected"
    assert "chelsea.png changed since canvas chelsea.layout.json was made" in recs["chelsea"]["reason"]
    assert recs["astronaut"]["status"] == "ok" and recs["coffee"]["status"] == "ok"


def _as_version1(folder: Path, order: list[str]) -> None:
    """Rewrite a folder's layouts as the version-1 code wrote them: ids 4k..4k+3 by sorted index,
    no source hash (the canvases PNGs are redrawn to match)."""
    from data_capture.canvas import render_canvas
    from data_capture.imageio import read_image, write_image

    for k, stem in enumerate(order):
        p = folder / f"{stem}.layout.json"
        d = json.loads(p.read_text())
        corners = [m["corners"] for m in d["markers"]]
        block = (k * 4) % 48
        d["markers"] = [{"id": block + j, "corners": c} for j, c in enumerate(corners)]
        d.pop("source_sha1")
        d["version"] = 1
        p.write_text(json.dumps(d, indent=2) + "\n")
        lay = load_layout(p)
        write_image(folder / f"{stem}.png", render_canvas(read_image(folder.parent / "sources" / d["source"]).rgb, lay))


def test_version1_layouts_keep_their_ids_and_new_canvases_avoid_them(tmp_path, sources_dir, first_source):
    src = tmp_path / "sources"
    shutil.copytree(sources_dir, src)
    canv = tmp_path / "canvases"
    make_canvases(src, canv, SMALL, progress=False)
    _as_version1(canv, ["astronaut", "chelsea", "coffee"])
    assert _ids(canv) == {"astronaut": [0, 1, 2, 3], "chelsea": [4, 5, 6, 7], "coffee": [8, 9, 10, 11]}
    before = _snapshot(canv)
    _write(src / "aardvark.png", first_source)
    make_canvases(src, canv, SMALL, progress=False)
    after = _snapshot(canv)
    assert all(after[k] == v for k, v in before.items())  # version-1 files kept byte for byte
    assert _ids(canv)["aardvark"] == [12, 13, 14, 15]  # read back from the version-1 `markers`
    assert load_layout(canv / "astronaut.layout.json").version == 1
    # photos of the version-1 canvases (and of the new one) register
    photos = tmp_path / "photos"
    simulate_folder(canv, photos, preset="mild", seed=0, overrides=PHOTO, progress=False)
    out = build_dataset(src, canv, photos, tmp_path / "ds", BuildConfig(report=False), progress=False)
    assert {r["id"]: r["status"] for r in read_manifest(out)} == dict.fromkeys(
        ["aardvark", "astronaut", "chelsea", "coffee"], "ok")


def test_version1_folder_with_shared_ids_warns_and_new_ids_avoid_them(tmp_path, sources_dir):
    src = tmp_path / "sources"
    shutil.copytree(sources_dir, src)
    canv = tmp_path / "canvases"
    make_canvases(src, canv, SMALL, progress=False)
    # the version-1 scheme wrapped after 12 canvases: canvas 12 got canvas 0's ids; here: chelsea = astronaut
    p = canv / "chelsea.layout.json"
    d = json.loads(p.read_text())
    for j, m in enumerate(d["markers"]):
        m["id"] = j
    d["version"] = 1
    p.write_text(json.dumps(d, indent=2) + "\n")
    cset = CanvasSet.read(canv)
    assert cset.owners[0] == ["astronaut", "chelsea"]
    # a shared id is no evidence: a chelsea photo named astronaut is not attributed by it
    assert cset.misattribution("astronaut", [], [0, 1, 2, 3]) is None
    (src / "zebra.png").write_bytes((src / "coffee.png").read_bytes())
    with pytest.warns(CanvasIdCollisionWarning, match="id 0: astronaut, chelsea"):
        make_canvases(src, canv, SMALL, progress=False)
    used = {i for k, v in _ids(canv).items() if k != "zebra" for i in v}
    assert not used & set(_ids(canv)["zebra"])


def test_full_dictionary_is_refused_and_a_larger_one_of_the_same_size_extends_the_folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "sources"
    src.mkdir()
    for k in range(13):
        _write(src / f"{k:02d}.png", cv2.GaussianBlur((rng.random((48, 64, 3)) * 255).astype(np.uint8), (0, 0), 1))
    cfg = CanvasConfig(width=400, height=300)
    extra = src.parent / "later"
    extra.mkdir()
    shutil.move(str(src / "12.png"), extra / "12.png")
    make_canvases(src, tmp_path / "c", cfg, progress=False)  # 12 canvases: ids 0..47 of DICT_4X4_50
    before = _snapshot(tmp_path / "c")
    shutil.move(str(extra / "12.png"), src / "12.png")
    with pytest.raises(ConfigError, match="DICT_4X4_50 holds 12 canvases.*Pass --dictionary DICT_4X4_100"):
        make_canvases(src, tmp_path / "c", cfg, progress=False)
    assert _snapshot(tmp_path / "c") == before
    make_canvases(src, tmp_path / "c", CanvasConfig(width=400, height=300, dictionary="DICT_4X4_100"), progress=False)
    after = _snapshot(tmp_path / "c")
    assert all(after[k] == v for k, v in before.items())
    lay = load_layout(tmp_path / "c" / "12.layout.json")
    assert sorted(lay.markers) == [48, 49, 50, 51] and lay.dictionary == "DICT_4X4_100"
    assert CanvasSet.read(tmp_path / "c").dictionary == "DICT_4X4_100"
    # DICT_4X4_50 is the first 50 markers of DICT_4X4_100: the old canvases still show valid ids
    from data_capture.detect import DetectConfig, detect_markers
    from data_capture.imageio import read_image

    old = load_layout(tmp_path / "c" / "00.layout.json")
    canvas = read_image(tmp_path / "c" / "00.png").rgb
    det = detect_markers(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), old, DetectConfig(preblur_sigma=0),
                         dictionary="DICT_4X4_100")
    assert sorted(det.corners) == [0, 1, 2, 3]


def test_a_misnamed_photo_is_rejected_naming_the_canvas_it_shows(tmp_path, sources_dir, canvases_dir, photos_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(photos_dir / "astronaut.jpg", photos / "astronaut.jpg")
    shutil.copy(photos_dir / "chelsea.jpg", photos / "coffee.jpg")  # a photo of chelsea's canvas named coffee
    out = build_dataset(sources_dir, canvases_dir, photos, tmp_path / "ds", BuildConfig(report=False), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["astronaut"]["status"] == "ok"
    chelsea_ids = sorted(load_layout(canvases_dir / "chelsea.layout.json").markers)
    assert recs["coffee"]["status"] == "rejected"
    assert recs["coffee"]["reason"].startswith(
        f"photo named 'coffee' shows the markers of canvas 'chelsea' (ids {chelsea_ids})")
    assert "misnamed" in recs["coffee"]["reason"]


def test_two_canvas_folders_on_one_photo_set_cannot_be_confused(tmp_path, sources_dir, canvases_dir, photos_dir,
                                                                first_source):
    """Folder B was made separately (its ids start at 0 too) and its photos land in folder A's photo
    set: a photo with a stem A lacks is unmatched; one showing ids that A gives another canvas is
    rejected naming that canvas; one whose stem and ids coincide with an A canvas fails the content
    checks. None of them becomes a pair."""
    src_b = tmp_path / "sources_b"
    src_b.mkdir()
    _write(src_b / "astronaut.png", first_source)  # same stem as A's astronaut, another picture
    _write(src_b / "zzz.png", first_source[::-1].copy())
    canv_b = tmp_path / "canvases_b"
    make_canvases(src_b, canv_b, SMALL, progress=False)
    assert _ids(canv_b) == {"astronaut": [0, 1, 2, 3], "zzz": [4, 5, 6, 7]}
    assert _ids(canvases_dir) == {"astronaut": [0, 1, 2, 3], "chelsea": [4, 5, 6, 7], "coffee": [8, 9, 10, 11]}
    photos_b = tmp_path / "photos_b"
    simulate_folder(canv_b, photos_b, preset="mild", seed=1, overrides=PHOTO, progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(photos_dir / "chelsea.jpg", photos / "chelsea.jpg")  # A's own photo
    shutil.copy(photos_b / "astronaut.jpg", photos / "astronaut.jpg")  # B's astronaut: stem and ids 0-3 as A's
    shutil.copy(photos_b / "zzz.jpg", photos / "coffee.jpg")  # B's zzz (ids 4-7, A's chelsea) named coffee
    shutil.copy(photos_b / "zzz.jpg", photos / "zzz.jpg")  # a stem A does not have
    out = build_dataset(sources_dir, canvases_dir, photos, tmp_path / "ds", BuildConfig(report=False), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["chelsea"]["status"] == "ok"
    assert recs["zzz"]["status"] == "rejected" and "no canvas layout named zzz.layout.json" in recs["zzz"]["reason"]
    assert recs["coffee"]["status"] == "rejected"
    assert "photo named 'coffee' shows the markers of canvas 'chelsea'" in recs["coffee"]["reason"]
    assert recs["astronaut"]["status"] == "rejected" and recs["astronaut"]["hr"] is None
    assert "content correlation" in recs["astronaut"]["reason"] or "PSNR" in recs["astronaut"]["reason"], \
        recs["astronaut"]["reason"]
