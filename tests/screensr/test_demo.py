"""``screensr demo`` on a reduced setting: real numbers, reproducible, stored, and skipped metrics named.

The demo runs as a user would run it, through the command line (``python -m screensr.cli``), each
time with a fresh, empty
weight cache: other tests write random stand-in weights into the session cache, and the demo must
never score with those (nor with any random weights).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.store import ResultsStore
from screensr.demo import DemoConfig

SETTING = ["--images", "2", "--size", "256"]


@pytest.fixture(scope="module")
def run_demo_cli(run_screensr, checkout_env):
    """``run_demo_cli(out, cache, *extra)`` -> stdout of ``screensr demo`` with weight caches under ``cache``."""

    def run(out: Path, cache: Path, *extra: str) -> str:
        env = checkout_env(TORCH_HOME=str(cache / "torch"), HF_HOME=str(cache / "hf"))
        proc = run_screensr("demo", *SETTING, "--out", out, "--no-progress", *extra, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    return run


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, run_demo_cli):
    out = tmp_path_factory.mktemp("demo-a")
    cache = tmp_path_factory.mktemp("cache-a")
    stdout = run_demo_cli(out, cache, "--metrics", "psnr,ssim,niqe,lpips")
    return out, cache, stdout


def test_demo_table_has_three_methods_three_metrics_with_real_values(first_run):
    out, _, stdout = first_run
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:7]) == ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    sr = table[table["method"] != "GT"]
    assert set(sr["method"]) == {"bicubic", "lanczos", "realesrgan"}
    assert set(sr["metric"]) == {"psnr", "ssim", "niqe"}
    assert (sr["n"] == 2).all()
    by = sr.set_index(["method", "metric"])["mean"]
    for m in ("bicubic", "lanczos", "realesrgan"):
        assert 15 < by[(m, "psnr")] < 45
        assert 0.3 < by[(m, "ssim")] <= 1
        assert 1 < by[(m, "niqe")] < 30
    # the GT row carries only the no-reference metric (the paper's Table 2)
    assert set(table[table["method"] == "GT"]["metric"]) == {"niqe"}
    # the printed table and the skipped metric, named with its missing file and the fix
    assert "realesrgan" in stdout and "psnr ↑" in stdout and "niqe ↓" in stdout
    assert "skipped lpips" in stdout and "LPIPS_v0.1_alex-df73285e.pth" in stdout
    assert "screensr weights" in stdout
    assert "wall time:" in stdout


def test_demo_store_holds_every_per_image_score(first_run):
    out, _, _ = first_run
    scores = ResultsStore(f"sqlite:///{out / 'results.db'}").scores_frame()
    # 2 images x (3 methods x 3 metrics + GT niqe); lpips never scored
    assert len(scores) == 2 * (3 * 3 + 1)
    assert "lpips" not in set(scores["metric"])
    means = scores.groupby(["method", "metric"])["value"].mean()
    table = pd.read_csv(out / "results.csv").set_index(["method", "metric"])["mean"]
    pd.testing.assert_series_equal(table.sort_index(), means.sort_index(), check_names=False)


def test_demo_is_reproducible_from_scratch(first_run, tmp_path, run_demo_cli):
    out, _, _ = first_run
    run_demo_cli(tmp_path / "demo-b", tmp_path / "cache-b")
    cols = ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    a = pd.read_csv(out / "results.csv")[cols]
    b = pd.read_csv(tmp_path / "demo-b" / "results.csv")[cols]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), rtol=1e-9)


def test_demo_rerun_reuses_the_store(first_run, run_demo_cli):
    out, cache, _ = first_run
    store = ResultsStore(f"sqlite:///{out / 'results.db'}")
    before = store.scores_frame()
    run_demo_cli(out, cache, "--metrics", "psnr,ssim,niqe,lpips")
    after = store.scores_frame()
    # nothing recomputed: the same rows with their original timestamps
    pd.testing.assert_frame_equal(before, after)


def test_demo_rejects_bad_options():
    with pytest.raises(ValueError, match="--images 9"):
        DemoConfig(images=9)
    with pytest.raises(ValueError, match="--size 8"):
        DemoConfig(size=8)
