"""``screensr demo`` on a reduced setting: real numbers, reproducible, stored, and skipped metrics named."""

from __future__ import annotations

import math
import subprocess

import pandas as pd
import pytest

from benchmark.store import ResultsStore
from screensr.demo import DemoConfig, format_table, run_demo

SETTING = dict(images=2, size=256)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-a")
    cfg = DemoConfig(out=out, metrics=("psnr", "ssim", "niqe", "lpips"), **SETTING)
    return cfg, run_demo(cfg, progress=False)


def test_demo_table_has_three_methods_three_metrics_with_real_values(first_run):
    cfg, result = first_run
    table = result.table
    sr = table[table["method"] != "GT"]
    assert set(sr["method"]) == {"bicubic", "lanczos", "realesrgan"}
    assert set(sr["metric"]) == {"psnr", "ssim", "niqe"}
    assert (sr["n"] == 2).all()
    assert all(math.isfinite(v) for v in sr["mean"])
    by = sr.set_index(["method", "metric"])["mean"]
    for m in ("bicubic", "lanczos", "realesrgan"):
        assert 15 < by[(m, "psnr")] < 45
        assert 0.3 < by[(m, "ssim")] <= 1
        assert 1 < by[(m, "niqe")] < 30
    # the GT row carries only the no-reference metric (the paper's Table 2)
    assert set(table[table["method"] == "GT"]["metric"]) == {"niqe"}
    # lpips has no weights in the test cache: skipped with the file and the fix, never scored
    assert "lpips" in result.skipped and "LPIPS_v0.1_alex" in result.skipped["lpips"]
    assert "lpips" not in set(table["metric"])


def test_demo_writes_csv_and_store(first_run):
    cfg, result = first_run
    csv = pd.read_csv(result.csv_path)
    assert list(csv.columns[:7]) == ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    scores = ResultsStore(result.store_url).scores_frame()
    # 2 images x (3 methods x 3 metrics + GT niqe)
    assert len(scores) == 2 * (3 * 3 + 1)
    text = format_table(result.table)
    assert "realesrgan" in text and "psnr ↑" in text and "niqe ↓" in text


def test_demo_is_reproducible_from_scratch(first_run, tmp_path):
    _, a = first_run
    b = run_demo(DemoConfig(out=tmp_path / "demo-b", **SETTING), progress=False)
    cols = ["dataset", "method", "metric", "mean", "n"]
    left = a.table[a.table["metric"] != "lpips"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(left, b.table[cols].reset_index(drop=True), rtol=1e-6)


def test_demo_rerun_reuses_the_store(first_run):
    cfg, result = first_run
    before = ResultsStore(result.store_url).scores_frame()
    again = run_demo(cfg, progress=False)
    after = ResultsStore(result.store_url).scores_frame()
    assert len(after) == len(before)
    pd.testing.assert_frame_equal(again.table, result.table)


def test_demo_cli_prints_table(tmp_path):
    out = subprocess.run(
        ["screensr", "demo", "--images", "1", "--size", "256", "--out", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "bicubic" in out and "realesrgan" in out and "psnr" in out
    assert "wall time:" in out


def test_demo_rejects_bad_options():
    with pytest.raises(ValueError, match="--images 9"):
        DemoConfig(images=9)
    with pytest.raises(ValueError, match="--size 8"):
        DemoConfig(size=8)
