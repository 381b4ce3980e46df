"""Config loading (unknown keys), image decoding policy (EXIF, 16-bit, gray, RGBA, corrupt), atomic writes."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from core.config import from_dict, load_config
from core.errors import ConfigError
from data_capture.canvas import CanvasConfig
from data_capture.imageio import ImageReadError, apply_orientation, read_image, write_json
from data_capture.pair import PairConfig


def test_unknown_key_is_rejected_with_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'marker_fraction'"):
        from_dict(CanvasConfig, {"marker_fracton": 0.05})


def test_nested_unknown_key_names_the_path():
    with pytest.raises(ConfigError, match=r"config\.register.*did you mean 'ecc_sigma'"):
        from_dict(PairConfig, {"register": {"ecc_sigmaa": 2}})


def test_bad_value_is_rejected():
    with pytest.raises(ConfigError, match="dictionary 'DICT_9X9' unknown"):
        from_dict(CanvasConfig, {"dictionary": "DICT_9X9"})


def test_yaml_config_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("width: 1920\nheight: 1080\n")
    cfg = load_config(CanvasConfig, p)
    assert (cfg.width, cfg.height) == (1920, 1080)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(CanvasConfig, tmp_path / "missing.yaml")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    img = (rng.random((6, 10, 3)) * 255).astype(np.uint8)
    ex = Image.Exif()
    ex[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(img).save(path, exif=ex)
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path, exif=True)
    assert got.orientation == orientation
    np.testing.assert_array_equal(got.rgb, ref)
    np.testing.assert_array_equal(apply_orientation(img, orientation), ref)


def test_16bit_gray_rgba_are_converted_with_notes(tmp_path):
    rgb16 = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), rgb16)
    a = read_image(tmp_path / "a.png")
    assert a.rgb.dtype == np.uint8 and "16-bit" in " ".join(a.notes)
    np.testing.assert_array_equal(a.rgb[..., ::-1], np.round(rgb16 / 257.0).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 5), 77, np.uint8))
    g = read_image(tmp_path / "g.png")
    assert g.rgb.shape == (4, 5, 3) and (g.rgb == 77).all() and "grayscale" in g.notes[0]
    cv2.imwrite(str(tmp_path / "r.png"), np.full((4, 5, 4), 9, np.uint8))
    r = read_image(tmp_path / "r.png")
    assert r.rgb.shape == (4, 5, 3) and "alpha" in r.notes[0]


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg could not be decoded"):
        read_image(bad, role="photo")
    with pytest.raises(ImageReadError, match="nothere.png does not exist"):
        read_image(tmp_path / "nothere.png", role="photo")


def test_exif_device_fields(tmp_path):
    ex = Image.Exif()
    ex[0x010F] = "OPPO"
    ex[0x0110] = "Find X7"
    sub = ex.get_ifd(0x8769)
    sub[0x8827] = 100
    sub[0x920A] = 6.5
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG", exif=ex)
    (tmp_path / "p.jpg").write_bytes(buf.getvalue())
    got = read_image(tmp_path / "p.jpg", exif=True).exif
    assert got["make"] == "OPPO" and got["model"] == "Find X7" and got["iso"] == 100
    assert got["focal_length_mm"] == pytest.approx(6.5)


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    write_json(tmp_path / "x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
