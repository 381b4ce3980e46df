"""Untrusted input to `capture canvas` / `capture build`: pixel bombs refused before decoding, every
bad-input class rejected with a reason naming the file (the build goes on), files written with
the permissions the umask gives.

The pixel bomb of the issue (a 1.2 MB PNG declaring 20000x20000 px) runs under ``slow``; the default
run uses header-only stand-ins, which exercise the same check.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def capture_set(tmp_path_factory, simulated_capture) -> dict[str, Path]:
    """Two small sources with canvases and simulated photos."""
    return simulated_capture(tmp_path_factory.mktemp("inputs"), ["astronaut", "coffee"])


def _copy(capture_set: dict[str, Path], tmp: Path) -> dict[str, Path]:
    out = {}
    for k, v in capture_set.items():
        shutil.copytree(v, tmp / k)
        out[k] = tmp / k
    return out


def test_pixel_bomb_photo_is_rejected_from_its_header_and_the_build_goes_on(capture_set, tmp_path, monkeypatch,
                                                                             png_header_file):
    from data_capture.build import BuildConfig, build_dataset, read_manifest

    s = _copy(capture_set, tmp_path)
    (s["photos"] / "coffee.jpg").unlink()
    (s["photos"] / "coffee.truth.json").unlink()
    png_header_file(s["photos"] / "coffee.png", 20000, 20000)  # a few bytes declaring 400 MP
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: decoded.append(len(buf)) or real(buf, flags))
    out = build_dataset(s["sources"], s["canvases"], s["photos"], tmp_path / "ds", BuildConfig(report=False), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["astronaut"]["status"] == "ok"
    reason = recs["coffee"]["reason"]
    assert recs["coffee"]["status"] == "rejected"
    assert reason.startswith(f"photo {s['photos'] / 'coffee.png'}: declares 400.0 MP, over the pixel limit of 100.0 MP")
    # nothing of the bomb was decoded: only the good photo and the two sources reached the decoder
    assert len(decoded) == 3 and os.path.getsize(s["photos"] / "coffee.png") not in decoded


def test_the_pixel_limit_is_configurable_and_applies_to_photos_and_sources(capture_set, tmp_path, monkeypatch):
    from core.imagelimits import ImageTooLargeError
    from data_capture.build import BuildConfig, build_dataset, read_manifest
    from data_capture.canvas import CanvasConfig, make_canvases

    s = _copy(capture_set, tmp_path)
    # photos are 640x480 = 307200 px, sources 160x120 = 19200 px
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "300000")
    out = build_dataset(s["sources"], s["canvases"], s["photos"], tmp_path / "ds", BuildConfig(report=False), progress=False)
    for r in read_manifest(out):
        assert r["status"] == "rejected" and r["reason"].startswith(f"photo {s['photos'] / (r['id'] + '.jpg')}: 640x480")
        assert "exceeds the pixel limit of 0.3 MP" in r["reason"] and "SCREENSR_MAX_PIXELS" in r["reason"]
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "400000")
    out = build_dataset(s["sources"], s["canvases"], s["photos"], tmp_path / "ds", BuildConfig(report=False), progress=False)
    assert {r["status"] for r in read_manifest(out)} == {"ok"}
    # a source over the limit stops `capture canvas` before it writes anything, naming the file
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "10000")
    with pytest.raises(ImageTooLargeError, match=r"source .*astronaut\.png: 160x120 = 0\.0 MP exceeds"):
        make_canvases(s["sources"], tmp_path / "new_canvases", CanvasConfig(width=480, height=360), progress=False)
    assert not (tmp_path / "new_canvases").exists()


@pytest.mark.slow
def test_a_real_20000x20000_png_costs_neither_memory_nor_time(capture_set, tmp_path, real_pixel_bomb):
    """The issue's bomb: a valid 1.2 MB PNG of 20000x20000 px. The build rejects it with bounded
    memory (measured in a child process: its peak RSS stays far below the 1.2 GB of pixels)."""
    s = _copy(capture_set, tmp_path)
    (s["photos"] / "coffee.jpg").unlink()
    bomb = real_pixel_bomb(s["photos"] / "coffee.png", 20000)
    assert bomb.stat().st_size < 2_000_000
    code = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from data_capture.build import BuildConfig, build_dataset, read_manifest\n"
        "a = json.loads(sys.argv[1])\n"
        "out = build_dataset(Path(a['sources']), Path(a['canvases']), Path(a['photos']), Path(a['out']),"
        " BuildConfig(report=False), progress=False)\n"
        # VmHWM: this process's own peak (ru_maxrss would include the forking pytest process's)
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "rss = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'recs': read_manifest(out), 'rss_kb': rss}))\n"
    )
    args = {**{k: str(v) for k, v in s.items()}, "out": str(tmp_path / "ds")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.splitlines()[-1])
    recs = {r["id"]: r for r in res["recs"]}
    assert recs["coffee"]["status"] == "rejected" and "declares 400.0 MP" in recs["coffee"]["reason"]
    assert recs["astronaut"]["status"] == "ok"
    assert res["rss_kb"] < 500_000, res["rss_kb"]  # the decoded bomb alone would be 1.2 GB


def test_every_bad_input_is_rejected_with_a_reason_naming_it(capture_set, tmp_path, png_header_file):
    """Each class of bad input: a rejected pair with its reason, the good pair still built."""
    from data_capture.build import BuildConfig, build_dataset, read_manifest

    s = _copy(capture_set, tmp_path)
    p, c = s["photos"], s["canvases"]
    good = p / "astronaut.jpg"
    cases: dict[str, tuple[bytes | None, str]] = {}

    def add(stem: str, data: bytes | None, suffix: str, expect: str) -> None:
        shutil.copy(c / "astronaut.layout.json", c / f"{stem}.layout.json")  # a canvas of that name
        if data is not None:
            (p / f"{stem}{suffix}").write_bytes(data)
        cases[stem] = (data, expect)

    raw = good.read_bytes()
    add("empty", b"", ".jpg", "could not be decoded")
    add("truncated", raw[: len(raw) // 2], ".jpg", "could not be decoded")
    add("notimage", b"this is a text file with an image suffix\n" * 20, ".jpg", "could not be decoded")
    add("bomb", png_header_file(tmp_path / "b.png", 30000, 30000).read_bytes(), ".png", "over the pixel limit")
    add("wide", png_header_file(tmp_path / "w.png", 12000, 10000).read_bytes(), ".png", "12000x10000 = 120.0 MP exceeds")
    gray = cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2GRAY)
    add("gray", cv2.imencode(".png", gray)[1].tobytes(), ".png", "is grayscale")
    blank = np.full((480, 640, 3), 255, np.uint8)
    add("nomarkers", cv2.imencode(".png", blank)[1].tobytes(), ".png", "only 0 of 4 markers detected")
    # a malformed layout (the photo is fine)
    shutil.copy(good, p / "badlayout.jpg")
    (c / "badlayout.layout.json").write_text('{"source": "astronaut.png", "markers": "nope"}')
    cases["badlayout"] = (None, "badlayout.layout.json is missing or has a malformed field")
    # the layout names a source that is not in the sources folder
    shutil.copy(good, p / "nosource.jpg")
    d = json.loads((c / "astronaut.layout.json").read_text())
    d["source"] = "gone.png"
    (c / "nosource.layout.json").write_text(json.dumps(d))
    cases["nosource"] = (None, "gone.png does not exist")
    # a record left unreadable in the dataset folder: the pair is recomputed, not trusted
    out = tmp_path / "ds"
    (out / "records").mkdir(parents=True)
    (out / "records" / "astronaut.json").write_text("{ not json")
    build_dataset(s["sources"], c, p, out, BuildConfig(report=True), progress=False)
    recs = {r["id"]: r for r in read_manifest(out)}
    assert recs["astronaut"]["status"] == "ok" and recs["coffee"]["status"] == "ok"
    for stem, (_, expect) in cases.items():
        r = recs[stem]
        assert r["status"] == "rejected" and expect in r["reason"], (stem, r["reason"])
        if stem not in ("nomarkers",):  # a file-level problem: the reason names the file
            culprit = "gone.png" if stem == "nosource" else stem
            assert culprit in r["reason"], (stem, r["reason"])
        assert r["hr"] is None and not (out / "lr" / f"{stem}.png").exists()
    report = (out / "report.md").read_text()
    assert all(f"## {stem}: rejected" in report for stem in cases)


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_written_files_follow_the_umask(tmp_path):
    """Canvases, simulated photos, the dataset (images, records, manifest, report) and both exports
    get ``0o666 & ~umask``, as files written with ``open()`` do (temporary files alone would be 0600)."""
    from skimage import data

    from data_capture.build import BuildConfig, build_dataset, export_imagefolder, export_webdataset
    from data_capture.canvas import CanvasConfig, make_canvases
    from data_capture.simulate import simulate_folder

    umask, expect = 0o022, 0o644  # the setting (temporary files alone gave 0600)
    old = os.umask(umask)
    try:
        (tmp_path / "s").mkdir()
        cv2.imwrite(str(tmp_path / "s" / "a.png"), cv2.resize(data.astronaut(), (160, 120)))
        make_canvases(tmp_path / "s", tmp_path / "c", CanvasConfig(width=480, height=360), progress=False)
        simulate_folder(tmp_path / "c", tmp_path / "p", preset="mild", overrides={"photo_width": 640, "photo_height": 480},
                        progress=False)
        out = build_dataset(tmp_path / "s", tmp_path / "c", tmp_path / "p", tmp_path / "ds", BuildConfig(), progress=False)
        export_imagefolder(out, tmp_path / "hf")
        export_webdataset(out, tmp_path / "wds")
    finally:
        os.umask(old)
    written = {}
    for sub in ("c", "p", "ds", "hf", "wds"):
        written.update({f"{sub}/{k}": v for k, v in _modes(tmp_path / sub).items()})
    assert len(written) > 15 and any(k.startswith("ds/report/") for k in written)
    assert {k: oct(v) for k, v in written.items() if v != expect} == {}


@pytest.mark.parametrize("umask", [0o077, 0o002])
def test_each_writer_follows_other_umasks(tmp_path, umask):
    from data_capture.imageio import write_image, write_json, write_text

    old = os.umask(umask)
    try:
        write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        write_image(tmp_path / "a.jpg", np.zeros((4, 4, 3), np.uint8))
        write_json(tmp_path / "a.json", {"a": 1})
        write_text(tmp_path / "a.md", "x")
    finally:
        os.umask(old)
    assert set(_modes(tmp_path).values()) == {0o666 & ~umask}
