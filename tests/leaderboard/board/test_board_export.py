"""Static export and the ``screensr board`` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import report
from leaderboard import crops
from leaderboard.board import data, display, loading
from leaderboard.board.export import ExportOptions, export_site

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def env(board_env):
    return board_env


@pytest.fixture(scope="module")
def site(env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    export_site(env.url, out, ExportOptions(crops=2, crop_size=32, zoom=2, methods_per_crop=3))
    return out


def test_site_files_and_tables(site, env):
    for rel in ("index.html", "methods.html", "export.json", "data/summary.csv", "data/summary.json",
                "data/gt_quality.csv", "data/DRealSR/leaderboard.csv", "data/DRealSR/leaderboard.json",
                "data/DRealSR/scores.csv", "data/RealSR/leaderboard.csv", "plots/DRealSR-pd.png",
                "plots/DRealSR-dist.png", "plots/RealSR-pd.png"):  # fmt: skip
        assert (site / rel).is_file(), rel
    board = loading.load_board(env.url)
    table = pd.read_csv(site / "data/DRealSR/leaderboard.csv")
    expected = data.leaderboard_table(board.summary, "DRealSR", board.columns("DRealSR"), methods=board.methods)
    assert table["method"].tolist() == expected["method"].tolist()
    np.testing.assert_allclose(table["psnr"], expected["psnr"])
    assert (table["psnr n"] == table["psnr N"]).all() and set(table["status"]) == {"complete"}
    meta = json.loads((site / "data/DRealSR/leaderboard.json").read_text())
    directions = {m["name"]: m["higher_is_better"] for m in meta["metrics"]}
    assert directions["lpips"] is False and directions["psnr"] is True
    per_image = pd.read_csv(site / "data/DRealSR/scores.csv")
    assert len(per_image) == len(board.scores[board.scores["dataset"] == "DRealSR"])


def test_html_is_self_contained_with_direction_headers(site):
    page = (site / "index.html").read_text()
    assert "PSNR ↑" in page and "LPIPS ↓" in page and "NIQE ↓" in page
    assert "<table class='sortable'>" in page and "addEventListener('click'" in page
    # nothing loaded from the network: every src is a relative path inside the site
    for src in re.findall(r"src='([^']+)'", page):
        assert not src.startswith(("http:", "https:", "//")), src
        assert (site / src).is_file(), src
    assert "<script src" not in page and "<link" not in page
    methods = (site / "methods.html").read_text()
    assert "id='m02'" in methods and "https://example.org/m02" in methods and "Synthetic method m02" in methods


def test_html_shows_each_metric_as_one_cell_with_its_interval(site, env):
    """Issue 13.8: a metric reads ``26.95 [26.55, 27.35]`` in one column, not three; the cell's
    sort key stays the mean; the numbers are the board's (one rule, one bootstrap)."""
    page = (site / "index.html").read_text()
    board = loading.load_board(env.url)
    cols = board.columns("DRealSR")
    table = board.table("DRealSR", cols)
    psnr = display.metric_column("psnr", board.known)
    for text, mean in zip(data.cell_text(table, psnr), table["psnr"], strict=True):
        assert f"<td data-v='{mean}'>{text}</td>" in page
    assert "CI low" not in page and "Status" in page and f"{report.N_BOOT} resamples" in page


def test_crops_are_exact_nearest_neighbour_pixels(site, env):
    crop_dirs = sorted((site / "crops" / "DRealSR").iterdir())
    assert len(crop_dirs) == 2
    image = crop_dirs[0].name
    hr = np.asarray(Image.open(env.roots["DRealSR"] / "hr" / f"{image}.png"))
    box = crops.crop_box((hr.shape[1], hr.shape[0]), (0.5, 0.5), 32, multiple=4)
    got_hr = np.asarray(Image.open(crop_dirs[0] / "HR.png"))
    np.testing.assert_array_equal(got_hr, crops.zoom_crop(hr, box, 2))
    # method k's output is HR + (k + 1): the crop carries exactly that
    names = sorted(p.stem for p in crop_dirs[0].glob("m*.png"))
    assert len(names) == 3
    for name in names:
        k = int(name[1:])
        got = np.asarray(Image.open(crop_dirs[0] / f"{name}.png")).astype(int)
        np.testing.assert_array_equal(got, got_hr.astype(int) + k + 1)
    lr = np.asarray(Image.open(crop_dirs[0] / "LR.png"))
    assert lr.shape == got_hr.shape  # the LR crop is enlarged zoom x scale: same region, same size


def test_export_is_idempotent(env, site):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in site.rglob("*") if p.is_file()}
    export_site(env.url, site, ExportOptions(crops=2, crop_size=32, zoom=2, methods_per_crop=3))
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in site.rglob("*") if p.is_file()}
    assert after == before  # same bytes, and nothing was rewritten
    assert not [p for p in site.rglob(".*") if ".tmp" in p.name]  # no temporary file left behind


def test_export_options_from_a_config_file_reject_unknown_keys_and_bad_values(tmp_path):
    """Issue 14.1: the export options load through core.config (typed, unknown keys refused with the
    closest name); flags given on the command line override the file."""
    from core.config import load_config
    from core.errors import ConfigError

    good = tmp_path / "export.yaml"
    good.write_text("crops: 0\nzoom: 4\ny_metric: maniqa\n")
    options = load_config(ExportOptions, good, overrides={"zoom": 2, "crop_size": None})
    assert (options.crops, options.zoom, options.crop_size, options.y_metric) == (0, 2, 96, "maniqa")
    bad = tmp_path / "bad.yaml"
    bad.write_text("crop_sise: 64\n")
    with pytest.raises(ConfigError, match="unknown key 'crop_sise' \\(did you mean 'crop_size'\\?\\)"):
        load_config(ExportOptions, bad)
    with pytest.raises(ConfigError, match="crop_size x zoom <= 2048"):
        ExportOptions(crop_size=512, zoom=8)
    with pytest.raises(ConfigError, match="crops: expected an integer"):
        load_config(ExportOptions, None, overrides={"crops": "two"})


def test_export_of_an_empty_store_says_so(tmp_path):
    from leaderboard.board.export import EmptyStoreError

    with pytest.raises(EmptyStoreError, match="holds no scores"):
        export_site(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "site")


def test_export_hides_store_password():
    from leaderboard.board.export import _safe_url

    assert "secret" not in _safe_url("postgresql+psycopg://board:secret@db/screensr")


# --------------------------------------------------------------------------- command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real ``screensr`` command line (a subprocess, as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "screensr.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_help_and_dry_run(env):
    res = _cli("board", "--help")
    assert res.returncode == 0
    assert "screensr board --store" in res.stdout and "export" in res.stdout and "study" in res.stdout
    res = _cli("board", "--store", env.url, "--port", "8765", "--dry-run", "-S", "server.maxUploadSize=64")
    assert res.returncode == 0, res.stderr
    line = res.stdout
    assert line.startswith(f"SCREENSR_STORE={env.url} ")
    assert "launch_streamlit()" in line and " run " in line and "--server.port 8765" in line and "--server.address 127.0.0.1" in line
    assert "--server.headless true" in line and "--server.maxUploadSize 64" in line


def test_cli_passes_the_study_store_to_the_app(env, tmp_path):
    votes = tmp_path / "votes.sqlite"
    res = _cli("board", "--store", env.url, "--study-store", str(votes), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert f"SCREENSR_STUDY_STORE=sqlite:///{votes.resolve()} " in res.stdout


def test_cli_rejects_bad_options(env):
    res = _cli("board", "--store", env.url, "--dry-run", "-S", "maxUploadSize")
    assert res.returncode == 2 and "expected KEY=VALUE" in res.stderr
    res = _cli("board", "--store", env.url, "--dry-run", "--admin-secret-sha256", "abc")
    assert res.returncode == 2 and "is not an admin-secret hash" in res.stderr


def test_cli_export(env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCREENSR_DEBUG", raising=False)
    from screensr.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("zooom: 2\n")
    assert main(["board", "export", "--store", env.url, "--out", str(tmp_path / "s"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "unknown key 'zooom' (did you mean 'zoom'?)" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()
    res = _cli("board", "export", "--store", env.url, "--out", str(tmp_path / "s"), "--crops", "0")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "s" / "index.html").is_file() and not (tmp_path / "s" / "crops").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:  # the help in-process: a second interpreter proves nothing more
        main(["board", "export", "--help"])
    assert done.value.code == 0 and "screensr board export --out site/" in capsys.readouterr().out


def test_plot_png_is_lossless_png(site):
    raw = (site / "plots" / "DRealSR-pd.png").read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(BytesIO(raw)).format == "PNG"


def test_method_info_of_an_unknown_method_names_the_closest(env):
    from core.errors import UnknownNameError

    board = loading.load_board(env.url)
    with pytest.raises(UnknownNameError, match=r"unknown method 'm00x' \(did you mean 'm00'\?\)"):
        loading.method_info(board, "m00x")
