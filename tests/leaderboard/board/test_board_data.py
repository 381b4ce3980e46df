"""Pure functions of the leaderboard: aggregation, confidence intervals, ranking, Pareto front."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import report
from leaderboard import crops
from leaderboard.board import cache, data, display, loading

# --------------------------------------------------------------------------- helpers


def _scores(rows: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    out = []
    for (dataset, method, metric), values in rows.items():
        out += [
            {"dataset": dataset, "image": f"i{k}", "method": method, "metric": metric, "value": v}
            for k, v in enumerate(values)
        ]
    return pd.DataFrame(out)


def _dominated_bruteforce(x, y, x_higher, y_higher):
    sx = np.asarray(x, float) * (1 if x_higher else -1)
    sy = np.asarray(y, float) * (1 if y_higher else -1)
    front = []
    for i in range(len(sx)):
        if not (np.isfinite(sx[i]) and np.isfinite(sy[i])):
            front.append(False)
            continue
        dominated = any(
            np.isfinite(sx[j])
            and np.isfinite(sy[j])
            and sx[j] >= sx[i]
            and sy[j] >= sy[i]
            and (sx[j] > sx[i] or sy[j] > sy[i])
            for j in range(len(sx))
        )
        front.append(not dominated)
    return np.array(front)


# --------------------------------------------------------------------------- aggregation / CI


def test_summarize_means_counts_and_nan():
    rows = {
        ("D", "a", "psnr"): [20.0, 22.0, 24.0, np.nan],
        ("D", "b", "psnr"): [30.0, 31.0],
        ("E", "a", "lpips"): [0.1, 0.3, 0.2],
    }
    out = report.summary(_scores(rows), n_boot=200)
    got = {(r.dataset, r.method, r.metric): (round(r.mean, 12), r.n) for r in out.itertuples()}
    assert got == {("D", "a", "psnr"): (22.0, 3), ("D", "b", "psnr"): (30.5, 2), ("E", "a", "lpips"): (0.2, 3)}
    assert (out["ci_low"] <= out["mean"]).all() and (out["mean"] <= out["ci_high"]).all()


def test_summarize_matches_pandas_groupby_on_random_frame():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "dataset": rng.choice(["A", "B"], 600),
            "image": [f"i{k}" for k in range(600)],
            "method": rng.choice(["x", "y", "z"], 600),
            "metric": rng.choice(["psnr", "niqe"], 600),
            "value": rng.normal(size=600),
        }
    )
    ours = report.summary(frame, n_boot=100).set_index(["dataset", "method", "metric"])
    ref = frame.groupby(["dataset", "method", "metric"])["value"].agg(["mean", "count"])
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours["n"], ref["count"])


def test_bootstrap_ci_agrees_with_scipy_and_normal_theory():
    from scipy import stats

    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, size=130)
    low, high = report.bootstrap_ci(x[None, :], n_boot=20000, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=2).confidence_interval
    # two independent Monte-Carlo estimates of the same percentile interval
    assert abs(low[0] - ref.low) < 0.03 and abs(high[0] - ref.high) < 0.03
    # and the textbook interval mean +- 1.96 s / sqrt(n) (the mean is near normal at n = 130)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert abs((high[0] - low[0]) / 2 - half) / half < 0.05


def test_the_board_summarises_with_the_reports_one_setting():
    """The board has no aggregation of its own: it calls ``benchmark.report.summary`` with the
    suite's one bootstrap setting; the result does not depend on the order of the rows."""
    rng = np.random.default_rng(8)
    rows = {("D", m, k): list(rng.normal(loc, 1.0, size=130)) for m, loc in (("a", 0.0), ("b", 3.0)) for k in ("psnr", "niqe")}
    scores = _scores(rows)
    ours = report.summary(scores.sample(frac=1.0, random_state=1)).set_index(["dataset", "method", "metric"]).sort_index()
    theirs = report.summary(scores).set_index(["dataset", "method", "metric"]).sort_index()
    # one function, one setting (report.N_BOOT, defaults of both): identical, whatever the row order
    pd.testing.assert_frame_equal(ours, theirs)
    import inspect

    assert inspect.signature(loading.load_board).parameters["n_boot"].default == report.N_BOOT == 2000
    assert not hasattr(data, "summarize")  # one way: benchmark.report.summary


def test_bootstrap_ci_batch_equals_singles_and_is_deterministic():
    rng = np.random.default_rng(5)
    block = rng.normal(size=(7, 40))
    low, high = report.bootstrap_ci(block, n_boot=500, seed=9)
    for g in range(7):
        lo1, hi1 = report.bootstrap_ci(block[g : g + 1], n_boot=500, seed=9)
        assert lo1[0] == pytest.approx(low[g], abs=1e-12) and hi1[0] == pytest.approx(high[g], abs=1e-12)
    low2, high2 = report.bootstrap_ci(block, n_boot=500, seed=9)
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)


def test_bootstrap_ci_coverage_near_nominal():
    """Over many synthetic samples with known mean 0, ~95 % of the intervals contain 0."""
    rng = np.random.default_rng(11)
    block = rng.normal(0.0, 1.0, size=(600, 130))
    low, high = report.bootstrap_ci(block, n_boot=1000, seed=0)
    coverage = np.mean((low <= 0.0) & (0.0 <= high))
    assert 0.92 <= coverage <= 0.97


def test_bootstrap_ci_bad_input():
    with pytest.raises(ValueError, match="confidence must be in"):
        report.bootstrap_ci(np.zeros((1, 3)), confidence=1.5)
    with pytest.raises(ValueError, match="groups, n"):
        report.bootstrap_ci(np.zeros(3))


def test_summarize_rejects_frames_without_required_columns():
    with pytest.raises(ValueError, match="lacks columns \\['value'\\]"):
        report.summary(pd.DataFrame({"dataset": [], "image": [], "method": [], "metric": []}))


# --------------------------------------------------------------------------- ranking


def test_board_ranks_with_the_one_rule_of_the_report():
    """Issue 14.6: the board's aggregated rank is ``benchmark.report``'s (one rule): d has the best
    PSNR but lacks a NIQE image, so it is unranked AND does not shift the others' PSNR ranks
    (a, b, c ranked among themselves: a 1.5, b 1.5, c 3.0; the old report rule gave 2.0, 2.0, 3.5)."""
    from benchmark import report

    rows = {("D", "a", "psnr"): [25.0] * 3, ("D", "b", "psnr"): [24.0] * 3, ("D", "c", "psnr"): [20.0] * 3,
            ("D", "d", "psnr"): [30.0] * 3, ("D", "a", "niqe"): [4.0] * 3, ("D", "b", "niqe"): [3.0] * 3,
            ("D", "c", "niqe"): [5.0] * 3, ("D", "d", "niqe"): [2.0] * 2}  # fmt: skip
    scores = _scores(rows)
    cols = display.metric_columns(["psnr", "niqe"])
    table = data.leaderboard_table(report.summary(scores, n_boot=50), "D", cols).set_index("method")
    theirs = report.ranks(scores).set_index("method")
    expected = {"a": 1.5, "b": 1.5, "c": 3.0}
    for method, value in expected.items():
        assert table.loc[method, "mean_rank"] == pytest.approx(value)
        assert theirs.loc[method, "mean_rank"] == pytest.approx(value)
    assert table["rank"].dropna().to_dict() == theirs["rank"].dropna().to_dict() == {"a": 1, "b": 1, "c": 3}
    assert pd.isna(table.loc["d", "rank"]) and pd.isna(theirs.loc["d", "rank"])


# --------------------------------------------------------------------------- Pareto front


def test_pareto_front_known_example():
    # x = PSNR (higher better), y = NIQE (lower better)
    x = [28.0, 26.0, 24.0, 25.0, 22.0, np.nan]
    y = [6.0, 5.0, 4.0, 5.5, 4.5, 1.0]
    front = data.pareto_front(x, y, x_higher=True, y_higher=False)
    assert front.tolist() == [True, True, True, False, False, False]


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_pareto_front_equals_bruteforce_dominance(points, x_higher, y_higher):
    x = [p[0] for p in points]
    y = [p[1] for p in points]
    got = data.pareto_front(x, y, x_higher=x_higher, y_higher=y_higher)
    np.testing.assert_array_equal(got, _dominated_bruteforce(x, y, x_higher, y_higher))


def test_pareto_front_shape_error():
    with pytest.raises(ValueError, match="same length"):
        data.pareto_front([1, 2], [1], x_higher=True, y_higher=True)


# --------------------------------------------------------------------------- tables


def _summary_for_table():
    rows = {}
    for method, q in (("good", 1.0), ("mid", 0.5), ("bad", 0.0)):
        rows[("D", method, "psnr")] = [20 + 8 * q + d for d in (-0.1, 0.0, 0.1)]
        rows[("D", method, "lpips")] = [0.4 - 0.3 * q + d for d in (-0.01, 0.0, 0.01)]
    rows[("D", "GT", "niqe")] = [3.0, 4.0, 5.0]
    return report.summary(_scores(rows), n_boot=200)


def test_leaderboard_table_layout_rank_and_families():
    summary = _summary_for_table()
    cols = [
        display.MetricColumn("psnr", "PSNR", True, "FR", "dB"),
        display.MetricColumn("lpips", "LPIPS", False, "FR"),
    ]
    methods = pd.DataFrame({"name": ["good", "mid", "bad"], "family": ["one-step", "GAN", "regression"]})
    table = data.leaderboard_table(summary, "D", cols, methods=methods)
    assert table["method"].tolist() == ["good", "mid", "bad"]  # GT excluded, best first
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["family"].tolist() == ["one-step", "GAN", "regression"]
    assert list(table.columns[:5]) == ["rank", "method", "version", "family", "mean_rank"]
    assert {"psnr", "psnr ci_low", "psnr ci_high", "lpips", "lpips ci_low", "lpips ci_high", "n"} <= set(table.columns)
    assert table.loc[0, "psnr"] == pytest.approx(28.0)
    assert table["n"].tolist() == [3, 3, 3]
    sub = data.leaderboard_table(summary, "D", cols, methods=methods, include=["mid", "bad"])
    assert sub["method"].tolist() == ["mid", "bad"] and sub["rank"].tolist() == [1, 2]
    assert data.leaderboard_table(summary, "nope", cols).empty
    headers = data.header_labels(cols)
    assert headers["psnr"] == "PSNR ↑" and headers["lpips"] == "LPIPS ↓"


def test_gt_quality_table():
    table = data.gt_quality_table(_summary_for_table())
    assert table["dataset"].tolist() == ["D"]
    assert table.loc[0, "niqe"] == pytest.approx(4.0) and table.loc[0, "n"] == 3
    assert data.gt_quality_table(_summary_for_table(), "other").empty


def test_plane_points_marks_pareto_in_metric_directions():
    summary = _summary_for_table()
    x = display.MetricColumn("psnr", "PSNR", True, "FR")
    y = display.MetricColumn("lpips", "LPIPS", False, "FR")
    pts = data.plane_points(summary, "D", x, y).set_index("method")
    assert pts.loc["good", "pareto"] and not pts.loc["mid", "pareto"] and not pts.loc["bad", "pareto"]
    with pytest.raises(ValueError, match="known direction"):
        data.plane_points(summary, "D", x, display.MetricColumn("odd", "ODD", None))


def test_metric_columns_direction_from_store_and_arrows():
    known = display.known_metrics(
        pd.DataFrame({"name": ["lpips", "musiq"], "higher_is_better": [False, True], "kind": ["FR", "NR"]})
    )
    cols = {c.name: c for c in display.metric_columns(["musiq", "lpips", "zzz"], known)}
    assert cols["lpips"].header == "LPIPS ↓" and cols["lpips"].fidelity
    assert cols["musiq"].header == "MUSIQ ↑" and not cols["musiq"].fidelity
    assert [c.name for c in display.metric_columns(["musiq", "zzz", "lpips"], known)] == ["lpips", "musiq", "zzz"]


def test_metric_columns_read_label_unit_decimals_from_the_metric_spec(monkeypatch):
    """Issue 14.5: label, unit, decimals and "shown by default" live on ``MetricSpec``; the board
    keeps no copy (a spec edited in the registry changes the column)."""
    import dataclasses

    from benchmark import metrics

    psnr = display.metric_column("psnr")
    assert (psnr.label, psnr.unit, psnr.decimals, psnr.default) == ("PSNR", "dB", 2, True)
    assert display.metric_column("afine_all").label == "AFINE" and not display.metric_column("afine_all").default
    assert display.metric_column("topiq_nr").label == metrics.get_metric("topiq_nr").label == "TOPIQ-NR"
    changed = dataclasses.replace(metrics.METRICS["lpips"], label="LPIPS-Alex", unit="u", decimals=3,
                                  shown_by_default=False)  # fmt: skip
    monkeypatch.setitem(metrics.METRICS, "lpips", changed)
    col = display.metric_column("lpips")
    assert (col.label, col.unit, col.decimals, col.default, col.header) == ("LPIPS-Alex", "u", 3, False, "LPIPS-Alex ↓")
    # a metric outside the registry: the default label, 4 decimals, shown
    other = display.metric_column("ms_ssim", {"ms_ssim": (True, "FR")})
    assert (other.label, other.decimals, other.default, other.header) == ("MS-SSIM", 4, True, "MS-SSIM ↑")


def test_filter_methods_and_image_scores():
    methods = pd.DataFrame({"name": ["a", "b", "GT", "c"], "family": ["GAN", "one-step", "other", "GAN"]})
    assert data.filter_methods(methods) == ["a", "b", "c"]
    assert data.filter_methods(methods, families=["GAN"]) == ["a", "c"]
    assert data.filter_methods(methods, families=["GAN"], names=["c"]) == ["c"]
    scores = _scores({("D", "a", "psnr"): [1.0, 2.0], ("D", "b", "psnr"): [3.0, 4.0], ("D", "b", "niqe"): [5.0, 6.0]})
    table = data.image_scores(scores, "D", "i1", ["b", "a"])
    assert table.index.tolist() == ["b", "a"]
    assert table.loc["b", "psnr"] == 4.0 and table.loc["a", "psnr"] == 2.0 and np.isnan(table.loc["a", "niqe"])


# --------------------------------------------------------------------------- crops


def test_crop_box_clamps_and_aligns_to_scale():
    assert crops.crop_box((512, 512), (0.5, 0.5), 128, multiple=4) == (192, 192, 320, 320)
    assert crops.crop_box((512, 384), (0.0, 1.0), 128, multiple=4) == (0, 256, 128, 384)
    left, top, right, bottom = crops.crop_box((100, 60), (0.9, 0.1), 500, multiple=4)
    assert (right - left) == (bottom - top) == 60 and left % 4 == 0 and right <= 100
    for cx, cy in itertools.product((0.0, 0.33, 1.0), repeat=2):
        box = crops.crop_box((130, 90), (cx, cy), 32, multiple=4)
        assert all(v % 4 == 0 for v in box) and box[2] <= 130 and box[3] <= 90
    with pytest.raises(ValueError, match="crop side"):
        crops.crop_box((10, 10), (0.5, 0.5), 0)


def test_zoom_crop_is_exact_nearest_neighbour():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    out = crops.zoom_crop(img, (4, 2, 12, 10), 3)
    assert out.shape == (24, 24, 3)
    np.testing.assert_array_equal(out[::3, ::3], img[2:10, 4:12])
    np.testing.assert_array_equal(out[2::3, 1::3], img[2:10, 4:12])
    with pytest.raises(ValueError, match="outside the image"):
        crops.zoom_crop(img, (0, 0, 31, 5), 2)
    with pytest.raises(ValueError, match="positive integer"):
        crops.zoom_crop(img, (0, 0, 5, 5), 0)


def test_png_bytes_round_trip_is_lossless():
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    raw = crops.png_bytes(img)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(raw))), img)


# --------------------------------------------------------------------------- loading


def test_read_scores_equals_the_stores_latest_rows(tmp_path):
    """The fast reader returns exactly ``ResultsStore.scores_frame()``'s rows (latest per key)."""
    from benchmark.store import ResultsStore, ScoreRecord

    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.add_scores([ScoreRecord("D", f"i{k}", m, "psnr", 20.0 + k, "s1", "h1", f"c{k}") for k in range(4) for m in "ab"])
    # a rerun with new metric settings: a newer row for the same (dataset, image, method, metric)
    store.add_scores([ScoreRecord("D", "i1", "a", "psnr", 99.0, "s2", "h1", "c1", {"pyiqa": "0.1.16"})])
    ours = loading.read_scores(store).sort_values(["dataset", "method", "metric", "image"]).reset_index(drop=True)
    theirs = store.scores_frame()[loading.SCORE_KEYS]
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours.loc[(ours["method"] == "a") & (ours["image"] == "i1"), "value"].item() == 99.0
    assert sorted(loading.method_versions(store.url, "a"), key=len) == [{}, {"pyiqa": "0.1.16"}]
    store.close()


def test_board_cache_serves_stale_while_refreshing_in_background():
    import threading

    now = [0.0]
    loads: list[int] = []
    release = threading.Event()

    def loader():
        loads.append(len(loads))
        if len(loads) > 1:
            release.wait(5)  # the background reload takes a while
        return f"board-{len(loads)}"

    board_cache = cache.BoardCache(loader, ttl=60, clock=lambda: now[0])
    assert board_cache.get() == "board-1" and loads == [0]  # first read: synchronous
    now[0] = 30.0
    assert board_cache.get() == "board-1" and loads == [0]  # fresh: no reload
    now[0] = 61.0
    assert board_cache.get() == "board-1"  # stale: served at once, one reload started
    assert board_cache.get() == "board-1"
    release.set()
    board_cache.wait_refresh(5)
    assert loads == [0, 1] and board_cache.get() == "board-2"
    board_cache.clear()
    assert board_cache.get() == "board-3"  # after clear(): synchronous again


def test_board_cache_warms_a_reloaded_board_before_serving_it(capsys):
    now = [0.0]
    warmed: list[object] = []

    def warm(board):
        if len(warmed) == 1:
            raise RuntimeError("no memory")  # a failing warm-up leaves the reloaded board usable
        warmed.append(board)

    board_cache = cache.BoardCache(object, ttl=1, clock=lambda: now[0], warm=warm)
    first = board_cache.get()
    assert warmed == []  # the synchronous first load is not held up (the server's preload warms it)
    now[0] = 5.0
    assert board_cache.get() is first
    board_cache.wait_refresh(5)
    second = board_cache.get()
    assert second is not first and warmed == [second]  # warmed before it replaced the first
    now[0] = 10.0
    board_cache.get()
    board_cache.wait_refresh(5)
    third = board_cache.get()
    assert third is not second and warmed == [second]
    assert "precomputing the leaderboard tables failed: no memory" in capsys.readouterr().err


def test_board_memo_computes_a_table_once_across_threads(board_env, monkeypatch):
    # the server's warm-up thread and a visitor asking for the same rank intervals: one computation
    import threading

    board = loading.load_board(board_env.url)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    real = report.rank_intervals

    def slow(*args, **kwargs):
        calls.append(1)
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "rank_intervals", slow)
    results: list[pd.DataFrame] = []
    threads = [threading.Thread(target=lambda: results.append(board.rank_intervals("DRealSR", ["psnr"])))
               for _ in range(2)]  # fmt: skip
    threads[0].start()
    assert started.wait(10)
    threads[1].start()
    release.set()
    for t in threads:
        t.join(10)
    assert calls == [1] and len(results) == 2 and results[0] is results[1]


def test_board_cache_keeps_previous_board_when_refresh_fails(capsys):
    now = [0.0]
    calls = iter(["first", RuntimeError("database is locked")])

    def loader():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    board_cache = cache.BoardCache(loader, ttl=1, clock=lambda: now[0])
    assert board_cache.get() == "first"
    now[0] = 5.0
    assert board_cache.get() == "first"
    board_cache.wait_refresh(5)
    assert board_cache.get() == "first"
    assert "database is locked" in capsys.readouterr().err


# --------------------------------------------------------------------------- the comparison rule on the board


def _rule_summary():
    rows = {("D", "full", "psnr"): [24.0, 25.0, 26.0], ("D", "full", "lpips"): [0.3, 0.2, 0.1],
            ("D", "also", "psnr"): [23.0, 24.0, 25.0], ("D", "also", "lpips"): [0.35, 0.25, 0.15],
            ("D", "half", "psnr"): [40.0], ("D", "half", "lpips"): [0.01]}  # fmt: skip
    images = pd.DataFrame({"dataset": "D", "image": ["i0", "i1", "i2"], "has_reference": True})
    runs = pd.DataFrame({"dataset": ["D", "D"], "method": ["half", "ghost"], "status": ["failed", "failed"],
                         "error": ["pair 'i1': FileNotFoundError: gone", "pair 'i0': MethodError: crashed"]})  # fmt: skip
    return report.summary(_scores(rows), images=images, runs=runs, n_boot=300), runs


def test_leaderboard_ranks_only_complete_methods_and_marks_the_others():
    summary, runs = _rule_summary()
    cols = [display.MetricColumn("psnr", "PSNR", True, "FR", "dB", decimals=2), display.MetricColumn("lpips", "LPIPS", False, "FR")]
    table = data.leaderboard_table(summary, "D", cols, runs=runs)
    assert table["method"].tolist() == ["full", "also", "ghost", "half"]  # ranked first, then the rest by name
    assert table["rank"].tolist()[:2] == [1, 2] and table["rank"].iloc[2:].isna().all()
    by = table.set_index("method")
    assert (by.loc["half", "psnr n"], by.loc["half", "psnr N"], by.loc["half", "status"]) == (1, 3, "failed")
    assert by.loc["half", "psnr"] == 40.0 and "FileNotFoundError" in by.loc["half", "note"]
    assert by.loc["ghost", "status"] == "failed" and np.isnan(by.loc["ghost", "psnr"])  # failed before any score
    assert data.images_text(table) == ["3", "3", "0/3", "1/3"]
    text = data.cell_text(table, cols[0])
    assert text[0] == f"{by.loc['full', 'psnr']:.2f} [{by.loc['full', 'psnr ci_low']:.2f}, {by.loc['full', 'psnr ci_high']:.2f}]"
    assert text[3] == "40.00 [40.00, 40.00] (1/3 images)" and text[2] == ""
    assert data.cell_text(table, cols[0], ci=False)[0] == f"{by.loc['full', 'psnr']:.2f}"
    # sorting by PSNR: the partial 40 dB never comes first
    assert data.sort_table(table, "psnr", cols)["method"].tolist()[:2] == ["full", "also"]
    assert data.sort_table(table, "lpips", cols)["method"].tolist()[:2] == ["full", "also"]


def test_styled_table_one_cell_per_metric_keeps_numbers_sortable():
    summary, runs = _rule_summary()
    cols = [display.MetricColumn("psnr", "PSNR", True, "FR", "dB", decimals=2), display.MetricColumn("lpips", "LPIPS", False, "FR")]
    table = data.leaderboard_table(summary, "D", cols, runs=runs)
    styler = data.styled_table(table, cols)
    shown = styler.data
    assert list(shown.columns) == ["Rank", "Rank (95% interval)", "Method", "Version", "Family", "Mean rank ↓", "Status", "PSNR ↑", "LPIPS ↓", "Images",
                                   "Last run"]  # fmt: skip
    assert shown["PSNR ↑"].dtype.kind == "f"  # the value under the text is the mean
    html = styler.to_html()
    for text in data.cell_text(table, cols[0]) + data.cell_text(table, cols[1]):
        assert text in html
    # two methods with the same mean but different intervals keep their own texts
    twin = table.copy()
    twin.loc[1, "psnr"] = twin.loc[0, "psnr"]
    html = data.styled_table(twin, cols).to_html()
    for text in data.cell_text(twin, cols[0])[:2]:
        assert text in html
    assert data.cell_text(twin, cols[0])[0] != data.cell_text(twin, cols[0])[1]


def test_board_user_errors_are_user_errors_with_the_closest_name(tmp_path):
    """Issue 14.1: what a user can get wrong on the board is a ``UserError`` (one ``error:`` line in
    the CLI), keeping the builtin it was for callers that catch it."""
    from core.errors import MissingFileError, UnknownNameError, UserError

    frame = _scores({("D", "a", "psnr"): [1.0, 2.0]})
    with pytest.raises(UnknownNameError, match=r"unknown protocol 'osedif' \(did you mean 'osediff'\?\)"):
        loading.protocol_scores(frame.assign(settings_hash="x"), "osedif")
    with pytest.raises(KeyError, match=r"unknown metric set 'Defualt' \(did you mean 'Default'\?\)"):
        display.select_metric_set([], "Defualt")
    datasets = pd.DataFrame({"name": ["DRealSR"], "root": [str(tmp_path / "gone")], "layout": ["generic"], "scale": [4]})
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'DRealSr' \(did you mean 'DRealSR'\?\)"):
        crops.dataset_images(datasets, "DRealSr")
    with pytest.raises(MissingFileError, match="not on this machine") as missing:
        crops.dataset_images(datasets, "DRealSR")
    assert isinstance(missing.value, FileNotFoundError) and isinstance(missing.value, UserError)
    table = data.leaderboard_table(report.summary(frame, n_boot=20), "D", display.metric_columns(["psnr"]))
    with pytest.raises(UnknownNameError, match="unknown sort column 'pnsr'"):
        data.sort_table(table, "pnsr", display.metric_columns(["psnr"]))
