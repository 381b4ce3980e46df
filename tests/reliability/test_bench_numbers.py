"""Comparable numbers everywhere: one comparison rule and one bootstrap, in the CLI report, the
leaderboard and the static export (issues 12.1 and 13.3).

A real store is filled by the runner: two complete methods, one whose run skipped a pair, one
whose run failed after the first pair, and a pair later removed from the dataset. The three
front ends must then show the same means, intervals, ``n`` of ``n_total`` and ranks; the partial
methods are marked and unranked everywhere, and the removed pair's scores count nowhere.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import report
from benchmark.runner import evaluate
from benchmark.store import ResultsStore
from screensr.cli import main

KEYS = ["dataset", "method", "metric"]
NUMBERS = ["mean", "ci_low", "ci_high", "n", "n_total"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory, make_pairs):
    tmp = tmp_path_factory.mktemp("numbers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCREENSR_HOME", str(tmp / "home"))
        yield _fill(tmp, make_pairs)


def _fill(tmp: Path, make_pairs: Callable[..., Path]) -> tuple[str, Path]:
    ds = make_pairs(tmp / "toy", n=6)
    url = f"sqlite:///{tmp / 'r.db'}"
    store = ResultsStore(url)
    outs = tmp / "outs"
    shutil.copytree(ds / "hr", outs)
    (outs / "img_3.png").unlink()  # "outs" lacks one output: skipped
    evaluate([ds], ["bicubic", "lanczos", f"folder:{outs}"], "psnr,ssim", store=store, progress=False, gt=False,
             on_error="skip")  # fmt: skip
    broken = tmp / "broken"
    shutil.copytree(ds / "hr", broken)
    for k in (1, 2, 4, 5):
        (broken / f"img_{k}.png").unlink()
    with pytest.raises(FileNotFoundError):  # fails at img_1: stored img_0 only, recorded as failed
        evaluate([ds], [f"folder:{broken}"], "psnr,ssim", store=store, progress=False, gt=False)
    for sub in ("hr", "lr"):
        (ds / sub / "img_5.png").unlink()  # a pair leaves the dataset after it was scored
    evaluate([ds], ["bicubic"], "psnr", store=store, progress=False, gt=False)  # records the new image list
    return url, tmp


def _cli_report(url: str) -> pd.DataFrame:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["bench", "report", "--store", url, "--format", "csv"]) == 0
    assert "note: broken on toy: last run failed" in err.getvalue()
    return pd.read_csv(io.StringIO(out.getvalue()))


def test_cli_board_and_export_give_identical_numbers(filled):
    from leaderboard.board import loading
    from leaderboard.board.export import ExportOptions, export_site

    url, tmp = filled
    cli = _cli_report(url).set_index(KEYS).sort_index()
    board = loading.load_board(url).summary.set_index(KEYS).sort_index()
    export_site(url, tmp / "site", ExportOptions(crops=0))
    site = pd.read_csv(tmp / "site" / "data" / "summary.csv").set_index(KEYS).sort_index()
    for other in (board, site):
        assert other.index.equals(cli.index)
        np.testing.assert_allclose(other[NUMBERS].to_numpy(float), cli[NUMBERS].to_numpy(float), rtol=0, atol=1e-9)
        assert other["rank"].astype("Float64").equals(cli["rank"].astype("Float64"))
        assert other["status"].tolist() == cli["status"].tolist()
    # and the numbers are right: the interval is the percentile bootstrap of report.N_BOOT resamples
    store = ResultsStore(url)
    scores = store.scores_frame()
    one = scores[(scores.method == "bicubic") & (scores.metric == "psnr") & (scores.image != "img_5")]
    vals = one.sort_values("image")["value"].to_numpy()
    w = np.random.default_rng(report.SEED).multinomial(len(vals), np.full(len(vals), 1 / len(vals)), size=report.N_BOOT)
    lo, hi = np.quantile(vals @ w.T / len(vals), [0.025, 0.975])
    row = cli.loc[("toy", "bicubic", "psnr")]
    assert row["mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_partial_failed_and_stale_are_handled_the_same_everywhere(filled):
    from leaderboard.board import data, display, loading

    url, tmp = filled
    cli = _cli_report(url).set_index(KEYS)
    # the removed pair counts nowhere; the complete methods are ranked on the 5 current images
    for m in ("bicubic", "lanczos"):
        row = cli.loc[("toy", m, "psnr")]
        assert (row["n"], row["n_total"], row["status"]) == (5, 5, "complete") and row["rank"] in (1, 2)
    assert cli.loc[("toy", "lanczos", "psnr"), "n_stale"] == 1
    outs, broken = cli.loc[("toy", "outs", "psnr")], cli.loc[("toy", "broken", "psnr")]
    assert (outs["n"], outs["n_total"], outs["status"]) == (4, 5, "partial") and pd.isna(outs["rank"])
    assert (broken["n"], broken["n_total"], broken["status"]) == (1, 5, "failed") and pd.isna(broken["rank"])
    # "outs" is HR copies: the best PSNR of all, yet never ranked above the complete methods
    assert outs["mean"] > cli.loc[("toy", "bicubic", "psnr"), "mean"]

    board = loading.load_board(url)
    table = board.table("toy", board.columns("toy"))
    assert table["method"].tolist()[:2] == cli[cli["rank"].notna()].xs("psnr", level="metric")["rank"].sort_values() \
        .index.get_level_values("method").tolist()  # fmt: skip
    by = table.set_index("method")
    assert by.loc["outs", "status"] == "partial" and pd.isna(by.loc["outs", "rank"])
    assert by.loc["broken", "status"] == "failed" and "img_1" in by.loc["broken", "note"]
    texts = dict(zip(table["method"], data.cell_text(table, display.metric_column("psnr", board.known)), strict=True))
    assert texts["outs"].endswith("(4/5 images)") and texts["broken"].endswith("(1/5 images)")
    assert "images)" not in texts["bicubic"]
    from leaderboard.board.export import ExportOptions, export_site

    page = export_site(url, tmp / "site-marks", ExportOptions(crops=0)).read_text()
    assert "(4/5 images)" in page and "Runs that did not complete" in page and "partial" in page
    # the perception-distortion plane places only complete methods
    pts = data.plane_points(board.summary, "toy", display.metric_column("psnr", board.known),
                            display.metric_column("ssim", board.known))  # fmt: skip
    assert set(pts["method"]) == {"bicubic", "lanczos"}


def test_the_page_shows_the_marks(filled, monkeypatch):
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
    from streamlit.testing.v1 import AppTest

    url, _ = filled
    monkeypatch.setenv("SCREENSR_STORE", url)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    frame = next(d for d in at.dataframe if "Mean rank ↓" in d.value.columns)
    shown = convert_arrow_bytes_to_pandas_df(frame.proto.arrow_data.styler.display_values).set_index("Method")
    assert shown.loc["outs", "Status"] == "partial" and shown.loc["outs", "Images"] == "4/5"
    assert shown.loc["outs", "PSNR ↑"].endswith("(4/5 images)") and " [" in shown.loc["bicubic", "PSNR ↑"]
    assert shown.loc["broken", "Status"] == "failed"
    assert any("Not ranked" in c.value and "outs (partial, 4/5 images)" in c.value for c in at.caption)
