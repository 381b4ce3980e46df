"""``screensr demo``: real numbers, the README's table exactly, reproducible, stored, skipped metrics named.

The demo runs as a user would run it, through the command line (``python -m screensr.cli``), each
time with fresh, empty caches: other tests write random stand-in weights into the session cache,
and the demo must never score with those (nor with any random weights). The default demo (the
README's) runs once; the reproducibility check uses two small ones.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.store import ResultsStore
from screensr.demo import DemoConfig

SETTING = ["--images", "2", "--size", "256"]
README = Path(__file__).resolve().parents[2] / "README.md"
# the numerics the README's demo table was printed with (see first_run)
README_MKL_CBWR = "COMPATIBLE"


@pytest.fixture(scope="module")
def run_demo_cli(run_screensr, checkout_env):
    """``run_demo_cli(out, cache, *extra, setting=SETTING)`` -> stdout of ``screensr demo``.

    Every cache the demo uses (weights and the method-output cache) lives under ``cache``, so a run
    with a new ``cache`` is a run from scratch.
    """

    def run(out: Path, cache: Path, *extra: str, setting: tuple[str, ...] = tuple(SETTING),
            **more_env: str) -> str:  # fmt: skip
        env = checkout_env(TORCH_HOME=str(cache / "torch"), HF_HOME=str(cache / "hf"),
                           SCREENSR_HOME=str(cache / "screensr"), **more_env)  # fmt: skip
        proc = run_screensr("demo", *setting, "--out", out, "--no-progress", *extra, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    return run


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, run_demo_cli):
    """The default demo (6 images at 512 px, the README's), from empty caches, asking for LPIPS too
    (whose weights are absent: it must be skipped and named, and leave the table as it is).

    It runs as the README's table was printed, with ``MKL_CBWR=COMPATIBLE``: NIQE's fourth decimal
    otherwise depends on the CPU's BLAS kernels (the README says why), and this path of Intel MKL is
    the same on every x86 CPU.
    """
    out = tmp_path_factory.mktemp("demo-a")
    cache = tmp_path_factory.mktemp("cache-a")
    stdout = run_demo_cli(out, cache, "--metrics", "psnr,ssim,niqe,lpips", setting=(), MKL_CBWR=README_MKL_CBWR)
    return out, cache, stdout


def test_demo_table_has_three_methods_three_metrics_with_real_values(first_run):
    out, _, stdout = first_run
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:7]) == ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    sr = table[table["method"] != "GT"]
    assert set(sr["method"]) == {"bicubic", "lanczos", "realesrgan"}
    assert set(sr["metric"]) == {"psnr", "ssim", "niqe"}
    assert (sr["n"] == DemoConfig().images).all()
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
    # images x (3 methods x 3 metrics + GT niqe); lpips never scored
    assert len(scores) == DemoConfig().images * (3 * 3 + 1)
    assert "lpips" not in set(scores["metric"])
    means = scores.groupby(["method", "metric"])["value"].mean()
    table = pd.read_csv(out / "results.csv").set_index(["method", "metric"])["mean"]
    pd.testing.assert_series_equal(table.sort_index(), means.sort_index(), check_names=False)


def test_demo_is_reproducible_from_scratch(tmp_path, run_demo_cli):
    # two small demos from two empty caches (the default one is checked against the README below)
    run_demo_cli(tmp_path / "demo-a", tmp_path / "cache-a")
    run_demo_cli(tmp_path / "demo-b", tmp_path / "cache-b")
    cols = ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    a = pd.read_csv(tmp_path / "demo-a" / "results.csv")[cols]
    b = pd.read_csv(tmp_path / "demo-b" / "results.csv")[cols]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), rtol=1e-9)


def test_demo_rerun_reuses_the_store(first_run, run_demo_cli):
    out, cache, _ = first_run
    store = ResultsStore(f"sqlite:///{out / 'results.db'}")
    before = store.scores_frame()
    run_demo_cli(out, cache, "--metrics", "psnr,ssim,niqe,lpips", setting=())
    after = store.scores_frame()
    # nothing recomputed: the same rows with their original timestamps
    pd.testing.assert_frame_equal(before, after)


def test_demo_rejects_bad_options():
    with pytest.raises(ValueError, match="--images 9"):
        DemoConfig(images=9)
    with pytest.raises(ValueError, match="--size 8"):
        DemoConfig(size=8)


def readme_demo_table() -> list[str]:
    """The demo output block the README shows (the code block after "The output:")."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index("The output:")) + len("```\n")
    return [line.rstrip() for line in text[start : text.index("```", start)].splitlines()]


def printed_table(stdout: str) -> list[str]:
    """The summary table the demo printed: the paragraph that ends with "(mean over ...)"."""
    block = next(p for p in stdout.split("\n\n") if "(mean over" in p)
    return [line.rstrip() for line in block.strip("\n").splitlines()]


def test_readme_demo_table_is_what_a_fresh_default_run_prints(first_run):
    # the README's table is the default demo (6 images at 512 px), run from an empty cache: every
    # printed decimal must match (a stale README table once differed in a NIQE decimal)
    _, _, stdout = first_run
    assert printed_table(stdout) == readme_demo_table()


def test_readme_names_the_numerics_its_demo_table_was_printed_with():
    # without MKL_CBWR the table's NIQE column moves in the fourth decimal from one CPU to another
    # (measured on one AVX-512 Intel CPU: GT 4.9795 with MKL_CBWR=COMPATIBLE, 4.9798 without), so the README must
    # say how to print it exactly
    text = README.read_text(encoding="utf-8")
    after = text[text.index("The output:"):]
    assert f"MKL_CBWR={README_MKL_CBWR}" in after[: after.index("Options:")]


def test_readme_demo_table_parser_reads_the_block_after_the_output_line():
    table = readme_demo_table()
    assert table[0].split() == ["niqe", "↓", "psnr", "↑", "ssim", "↑"]
    assert [line.split()[0] for line in table[2:6]] == ["GT", "bicubic", "lanczos", "realesrgan"]
    assert table[-1].startswith("(mean over 6 image(s)")
    stdout = "progress\n\n" + "\n".join(table) + "\n\nskipped lpips: ...\nwall time: 1.0 s\n"
    assert printed_table(stdout) == table
