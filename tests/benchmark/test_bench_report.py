"""Reports: bootstrap CIs, paired tests, direction-aware ranks, GT table, formats, plots."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from benchmark import plots, report
from benchmark.store import GT


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        base = rng.normal(25, 2)
        rows += [
            ("d", f"i{i}", "good", "psnr", base + 1.0 + rng.normal(0, 0.1)),
            ("d", f"i{i}", "bad", "psnr", base),
            ("d", f"i{i}", "good", "niqe", 4.0 + rng.normal(0, 0.1)),
            ("d", f"i{i}", "bad", "niqe", 6.0 + rng.normal(0, 0.1)),
            ("d", f"i{i}", GT, "niqe", 3.5 + rng.normal(0, 0.1)),
        ]
    return pd.DataFrame(rows, columns=["dataset", "image", "method", "metric", "value"])


def test_summary_mean_and_bootstrap_ci():
    f = _frame()
    s = report.summary(f, n_boot=2000)
    row = s[(s.method == "good") & (s.metric == "psnr")].iloc[0]
    vals = f[(f.method == "good") & (f.metric == "psnr")]["value"]
    assert row["mean"] == pytest.approx(vals.mean()) and row["n"] == 30
    # the percentile bootstrap CI of a mean is close to the t interval for 30 normal samples
    t_lo, t_hi = stats.t.interval(0.95, 29, loc=vals.mean(), scale=stats.sem(vals))
    assert row["ci_low"] == pytest.approx(t_lo, abs=0.25) and row["ci_high"] == pytest.approx(t_hi, abs=0.25)
    assert bool(row["higher_is_better"]) is True
    assert list(s.columns) == report.SUMMARY_COLUMNS
    assert report.summary(f, n_boot=500).equals(report.summary(f, n_boot=500))  # seeded


def test_compare_wilcoxon_and_bootstrap_respect_direction():
    f = _frame()
    for test in ("wilcoxon", "bootstrap"):
        c = report.compare(f, "good", "bad", test=test).set_index("metric")
        assert c.loc["psnr", "better"] == "good"  # higher PSNR
        assert c.loc["niqe", "better"] == "good"  # lower NIQE
        assert c.loc["psnr", "diff"] == pytest.approx(1.0, abs=0.05)
        assert c.loc["psnr", "ci_low"] < 1.0 < c.loc["psnr", "ci_high"]
    sub = f[f.metric == "psnr"].pivot(index="image", columns="method", values="value")
    p = report.compare(f, "good", "bad").set_index("metric").loc["psnr", "p_value"]
    assert p == pytest.approx(stats.wilcoxon(sub["good"], sub["bad"]).pvalue)
    with pytest.raises(ValueError, match="has no scores"):
        report.compare(f, "good", "nobody")


def test_ranks_respect_direction_and_skip_gt():
    r = report.ranks(_frame())
    assert r["method"].tolist() == ["good", "bad"]
    assert r.loc[0, "rank_niqe"] == 1.0 and r.loc[0, "rank_psnr"] == 1.0
    assert GT not in set(r["method"])


def test_aggregate_rank_respects_direction():
    # a is best on both (highest PSNR, lowest LPIPS); c is worst on both
    means = pd.DataFrame({"psnr": [28.0, 25.0, 21.0], "lpips": [0.1, 0.2, 0.4]}, index=["a", "b", "c"])
    ranked = report.aggregate_rank(means, {"psnr": True, "lpips": False})
    assert ranked.index.tolist() == ["a", "b", "c"]
    assert ranked["rank"].tolist() == [1, 2, 3]
    assert ranked.loc["a", "mean_rank"] == 1.0
    # the HELM pitfall: ignoring LPIPS' direction would tie everyone; the result must not
    naive = report.aggregate_rank(means, {"psnr": True, "lpips": True})
    assert naive["mean_rank"].nunique() == 1


@given(
    st.lists(
        st.tuples(st.floats(-100, 100), st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=12
    ),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
@settings(max_examples=60, deadline=None)
def test_aggregate_rank_invariant_to_flipping_a_metric_and_its_direction(rows, higher):
    names = [f"m{i}" for i in range(len(rows))]
    means = pd.DataFrame(rows, columns=["a", "b", "c"], index=names)
    direction = dict(zip("abc", higher, strict=True))
    flipped = means.copy()
    flipped["b"] = -flipped["b"]
    flipped_dir = {**direction, "b": not direction["b"]}
    r1 = report.aggregate_rank(means, direction).sort_index()
    r2 = report.aggregate_rank(flipped, flipped_dir).sort_index()
    np.testing.assert_allclose(r1["mean_rank"], r2["mean_rank"])


def test_aggregate_rank_ties_missing_and_unknown_direction():
    means = pd.DataFrame(
        {"psnr": [25.0, 25.0, 20.0, 30.0], "niqe": [4.0, 4.5, 5.0, np.nan], "odd": [1.0, 2.0, 3.0, 4.0]},
        index=["a", "b", "c", "d"],
    )
    ranked = report.aggregate_rank(means, {"psnr": True, "niqe": False, "odd": None})
    # psnr ranks among complete methods: a, b tie at 1.5, c 3; niqe: a 1, b 2, c 3
    assert ranked.loc["a", "mean_rank"] == pytest.approx(1.25)
    assert ranked.loc["b", "mean_rank"] == pytest.approx(1.75)
    assert ranked.loc["c", "mean_rank"] == pytest.approx(3.0)
    # d has the best PSNR but no NIQE: never rewarded for the missing score, listed last, unranked
    assert np.isnan(ranked.loc["d", "mean_rank"]) and pd.isna(ranked.loc["d", "rank"])
    assert ranked.index.tolist() == ["a", "b", "c", "d"]
    assert ranked.loc["d", "metrics_ranked"] == 1 and ranked.loc["a", "metrics_ranked"] == 2
    with pytest.raises(ValueError, match="no metric with a known direction"):
        report.aggregate_rank(means[["odd"]], {"odd": None})


def test_ranks_blank_incomplete_methods_before_ranking_each_metric():
    """Issue 14.6, one rule: a method complete on PSNR but not on NIQE is unranked and does not
    take a PSNR rank from the others (hand-computed: a 1.5, b 1.5, c 3.0; the old rule ranked d
    first on PSNR and gave a 2.0, b 2.0, c 3.5)."""
    rows = []
    for method, psnr, niqe, n_niqe in (("a", 25.0, 4.0, 3), ("b", 24.0, 3.0, 3), ("c", 20.0, 5.0, 3), ("d", 30.0, 2.0, 2)):
        rows += [("d", f"i{k}", method, "psnr", psnr) for k in range(3)]
        rows += [("d", f"i{k}", method, "niqe", niqe) for k in range(n_niqe)]
    r = report.ranks(_scores(rows)).set_index("method")
    assert r.loc[["a", "b", "c"], "mean_rank"].tolist() == [1.5, 1.5, 3.0]
    assert r.loc[["a", "b", "c"], "rank"].tolist() == [1, 1, 3]
    assert r.loc["a", "rank_psnr"] == 1.0 and r.loc["b", "rank_niqe"] == 1.0
    assert np.isnan(r.loc["d", "mean_rank"]) and pd.isna(r.loc["d", "rank"]) and r.loc["d", "n_metrics"] == 1
    assert r.index.tolist()[-1] == "d"


def test_one_direction_lookup_store_first_then_registry_then_pyiqa():
    """Issue 14.6: one lookup; the store's record wins, then the registry, then pyiqa's config."""
    frame = pd.DataFrame({"name": ["custom"], "higher_is_better": [False], "kind": ["fr"]})
    assert report.metric_info("custom", frame) == (False, "FR")
    assert report.metric_info("lpips") == (False, "FR") and report.direction("musiq") is True
    assert report.metric_info("no-such-metric") == (None, "NR")


def test_gt_quality_table():
    g = report.gt_quality(_frame())
    assert g.loc[0, "dataset"] == "d" and g.loc[0, "n"] == 30
    assert g.loc[0, "niqe"] == pytest.approx(3.5, abs=0.05)
    with pytest.raises(ValueError, match="gt-quality"):
        report.gt_quality(_frame().query("method != 'GT'"))


def test_formats_round_trip():
    s = report.summary(_frame(), n_boot=200)
    back = pd.read_csv(io.StringIO(report.format_table(s, "csv")))
    assert np.allclose(back["mean"], s["mean"])
    assert json.loads(report.format_table(s, "json"))[0]["dataset"] == "d"
    md = report.format_table(s, "markdown").splitlines()
    assert md[0].startswith("| dataset") and set(md[1]) <= {"|", "-"} and len(md) == len(s) + 2
    tex = report.format_table(s, "latex")
    assert r"\toprule" in tex and r"psnr $\uparrow$" in tex and r"mean [95\% CI]" in tex
    with pytest.raises(ValueError, match="unknown format"):
        report.format_table(s, "html")


def test_pareto_front_and_plots(tmp_path):
    pts = np.array([[30.0, 0.3], [28.0, 0.2], [27.0, 0.35], [31.0, 0.4]])
    # psnr higher better, lpips lower better: (27, .35) is dominated by (28, .2) and (30, .3)
    assert plots.pareto_front(pts, (True, False)).tolist() == [True, True, False, True]
    f = _frame()
    out = plots.perception_distortion(f, tmp_path / "pd.png", x="psnr", y="niqe")
    assert out.stat().st_size > 1000
    assert plots.distributions(f, tmp_path / "dist.png", metric="niqe").stat().st_size > 1000
    with pytest.raises(ValueError, match="needs scores"):
        plots.perception_distortion(f, tmp_path / "x.png", x="psnr", y="lpips")


# --------------------------------------------------------------------------- the comparison rule


def _scores(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["dataset", "image", "method", "metric", "value"])


def _images(dataset: str, names, has_reference=True) -> pd.DataFrame:
    return pd.DataFrame({"dataset": dataset, "image": list(names), "has_reference": has_reference})


def test_partial_method_is_marked_and_never_ranked_first():
    """Issue 12.1: a method whose run failed after 1 of 3 pairs was ranked first on PSNR over n=1
    beside methods with n=3."""
    f = _scores(
        [("d", i, "full", "psnr", v) for i, v in zip("abc", (24.0, 25.0, 26.0), strict=True)]
        + [("d", i, "other", "psnr", v) for i, v in zip("abc", (23.0, 24.0, 25.0), strict=True)]
        + [("d", "a", "crashed", "psnr", 40.0)]
    )
    runs = pd.DataFrame({"dataset": ["d"], "method": ["crashed"], "status": ["failed"],
                         "error": ["pair 'b': FileNotFoundError: no SR output"], "finished": [None]})  # fmt: skip
    s = report.summary(f, images=_images("d", "abc"), runs=runs, n_boot=200).set_index("method")
    assert s.loc["crashed", "n"] == 1 and s.loc["crashed", "n_total"] == 3
    assert not s.loc["crashed", "complete"] and pd.isna(s.loc["crashed", "rank"])
    assert s.loc["crashed", "status"] == "failed"
    assert (s.loc["full", "rank"], s.loc["other", "rank"]) == (1, 2)
    assert s.loc["full", "status"] == "complete"
    md = report.format_table(s.reset_index(), "markdown")
    line = next(x for x in md.splitlines() if "crashed" in x)
    assert "| 1/3 " in line and "failed" in line  # n/N stated, the failure shown
    r = report.ranks(f, images=_images("d", "abc"))
    assert r["method"].tolist()[:2] == ["full", "other"] and np.isnan(r.set_index("method").loc["crashed", "mean_rank"])
    # without the store's image list, the union of scored images is the reference: still incomplete
    s2 = report.summary(f, n_boot=200).set_index("method")
    assert s2.loc["crashed", "n_total"] == 3 and pd.isna(s2.loc["crashed", "rank"])


def test_scores_of_images_no_longer_in_the_dataset_are_dropped_and_counted():
    """Issue 12.1: a pair removed from the dataset kept its scores in summaries (n=3 after it was
    gone)."""
    f = _scores([("d", i, "m", "psnr", v) for i, v in zip("abc", (20.0, 22.0, 30.0), strict=True)]
                + [("d", i, GT, "niqe", v) for i, v in zip("abc", (3.0, 4.0, 9.0), strict=True)])  # fmt: skip
    now = _images("d", "ab")  # pair c was removed
    s = report.summary(f, images=now, n_boot=200).set_index(["method", "metric"])
    row = s.loc[("m", "psnr")]
    assert (row["n"], row["n_total"], row["n_stale"]) == (2, 2, 1) and row["mean"] == pytest.approx(21.0)
    assert bool(row["complete"]) and row["rank"] == 1
    assert report.gt_quality(f, images=now).loc[0, "niqe"] == pytest.approx(3.5)
    assert report.gt_quality(f, images=now).loc[0, "n"] == 2
    assert "stale" in report.format_table(s.reset_index(), "markdown").splitlines()[0]


def test_full_reference_metrics_count_only_images_with_an_hr():
    images = pd.DataFrame({"dataset": "d", "image": list("abc"), "has_reference": [True, True, False]})
    f = _scores([("d", i, "m", "psnr", 25.0) for i in "ab"] + [("d", i, "m", "niqe", 5.0) for i in "abc"])
    s = report.summary(f, images=images, n_boot=100).set_index("metric")
    assert s.loc["psnr", "n_total"] == 2 and bool(s.loc["psnr", "complete"])
    assert s.loc["niqe", "n_total"] == 3 and bool(s.loc["niqe", "complete"])


def test_compare_uses_the_current_images_both_methods_share():
    f = _scores([("d", i, "a", "psnr", v) for i, v in zip("abcd", (20.0, 21.0, 22.0, 99.0), strict=True)]
                + [("d", i, "b", "psnr", v) for i, v in zip("bcd", (20.0, 20.0, 0.0), strict=True)])  # fmt: skip
    c = report.compare(f, "a", "b", images=_images("d", "abc"), n_boot=200).iloc[0]
    # shared and current: b, c (a has no partner, d left the dataset)
    assert c["n"] == 2 and c["mean_a"] == pytest.approx(21.5) and c["mean_b"] == pytest.approx(20.0)


def test_one_bootstrap_setting_and_order_independence():
    """The interval depends only on the scores: the same group in another row order, or next to
    other groups, gives the same interval; the default resample count is the one setting."""
    import inspect

    rng = np.random.default_rng(2)
    f = _scores([("d", f"i{k:02d}", "m", "psnr", float(v)) for k, v in enumerate(rng.normal(25, 2, 40))])
    a = report.summary(f)
    shuffled = f.sample(frac=1.0, random_state=3)
    extra = pd.concat([shuffled, _scores([("d", f"i{k:02d}", "z", "niqe", 1.0 + k) for k in range(40)])])
    b = report.summary(extra)
    b = b[b["method"] == "m"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    for fn in (report.summary, report.mean_ci, report.bootstrap_ci, report.compare):
        assert inspect.signature(fn).parameters["n_boot"].default == report.N_BOOT
    # the CI itself is the percentile bootstrap of N_BOOT resamples, by hand
    vals = f.sort_values("image")["value"].to_numpy()
    w = np.random.default_rng(report.SEED).multinomial(40, np.full(40, 1 / 40), size=report.N_BOOT)
    lo, hi = np.quantile(vals @ w.T / 40, [0.025, 0.975])
    assert a.loc[0, "ci_low"] == pytest.approx(lo, abs=1e-12) and a.loc[0, "ci_high"] == pytest.approx(hi, abs=1e-12)


def test_readable_tables_show_one_interval_column():
    f = _scores([("d", i, "m", "psnr", v) for i, v in zip("abc", (26.5, 27.0, 27.35), strict=True)])
    s = report.summary(f, n_boot=500)
    md = report.format_table(s, "markdown", digits=2)
    head, _, row = md.splitlines()
    assert "mean [95% CI]" in head and "ci_low" not in head and "psnr ↑" in row
    assert f"{s.loc[0, 'mean']:.2f} [{s.loc[0, 'ci_low']:.2f}, {s.loc[0, 'ci_high']:.2f}]" in row
    csv = pd.read_csv(io.StringIO(report.format_table(s, "csv")))
    assert {"mean", "ci_low", "ci_high", "n", "n_total"} <= set(csv.columns)  # machine formats: one number per cell


# ---------------------------------------------------------------------------- rank confidence (issue 15.3)


def _two_level_frame(n_images: int = 30, *, gap: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """a and b identical, c clearly worse, d clearly worse still, on PSNR (up) and NIQE (down)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(25.0, 2.0, n_images)
    niqe = rng.normal(5.0, 0.3, n_images)
    rows = []
    for i in range(n_images):
        for method, shift in (("a", 0.0), ("b", 0.0), ("c", gap), ("d", 2 * gap)):
            rows.append(("d", f"i{i:02d}", method, "psnr", base[i] - shift))
            rows.append(("d", f"i{i:02d}", method, "niqe", niqe[i] + shift / 2))
    return _scores(rows)


def test_rank_intervals_of_identical_methods_overlap_and_separated_ones_do_not():
    """Issue 15.3: two identical methods share ranks 1-2; clearly separated methods get one rank each."""
    boxes = report.rank_intervals(_two_level_frame())
    agg = boxes[boxes["metric"] == report.AGGREGATE].set_index("method")
    assert agg.loc["a", "shared_rank"] == agg.loc["b", "shared_rank"] == "1-2"
    assert bool(agg.loc["a", "tied"]) and bool(agg.loc["b", "tied"])
    assert (agg.loc["c", "shared_rank"], agg.loc["d", "shared_rank"]) == ("3", "4")
    assert (agg.loc["c", "rank_low"], agg.loc["c", "rank_high"]) == (3, 3)
    for metric in ("psnr", "niqe"):
        one = boxes[boxes["metric"] == metric].set_index("method")
        assert one.loc["a", "shared_rank"] == one.loc["b", "shared_rank"] == "1-2"
        assert one.loc["d", "shared_rank"] == "4" and not bool(one.loc["d", "tied"])
    # the point rank is the suite's one aggregated rank
    point = report.aggregate_rank(
        _two_level_frame().pivot_table(index="method", columns="metric", values="value"), {"psnr": True, "niqe": False}
    )
    assert agg["rank"].to_dict() == point["rank"].astype(int).to_dict()


def test_rank_intervals_resample_images_paired_with_the_one_bootstrap_setting():
    """The bootstrap is N_BOOT multinomial resamples with SEED, the same images for every method:
    an independent computation of one method's per-metric rank interval gives the same bounds. A
    0.05 dB gap on images that vary by 2 dB is certain when paired (c is 3rd in every resample),
    where resampling each method on its own would mix c with a and b."""
    frame = _two_level_frame(n_images=12, gap=0.05, seed=3)
    boxes = report.rank_intervals(frame, ["psnr"])
    assert boxes[boxes["method"] == "c"]["shared_rank"].tolist() == ["3", "3"]  # psnr and the aggregate
    wide = frame[frame["metric"] == "psnr"].pivot_table(index="image", columns="method", values="value")
    w = np.random.default_rng(report.SEED).multinomial(12, np.full(12, 1 / 12), size=report.N_BOOT)
    means = (w @ wide.to_numpy()) / 12  # (B, methods): every method resampled with the same images
    ranks = stats.rankdata(-means, axis=1, method="min")
    for j, method in enumerate(wide.columns):
        lo, hi = np.quantile(ranks[:, j], 0.025, method="lower"), np.quantile(ranks[:, j], 0.975, method="higher")
        row = boxes[(boxes["metric"] == "psnr") & (boxes["method"] == method)].iloc[0]
        assert (row["rank_low"], row["rank_high"]) == (lo, hi)
    again = report.rank_intervals(frame.sample(frac=1.0, random_state=2), ["psnr"])
    pd.testing.assert_frame_equal(boxes.reset_index(drop=True), again.reset_index(drop=True))


def test_shared_ranks_from_overlapping_intervals():
    first, last = report.shared_ranks([1, 1, 3, 3, 5], [2, 3, 4, 4, 5])
    assert [report.shared_rank_text(a, b) for a, b in zip(first, last, strict=True)] == ["1-2", "1-4", "2-4", "2-4", "5"]


def test_holm_against_a_hand_computation():
    # sorted 0.001, 0.011, 0.03, 0.04, 0.2, 0.5 times 6, 5, 4, 3, 2, 1: 0.006, 0.055, 0.12, 0.12
    # (0.04 * 3 = 0.12 stays monotone), 0.4, 0.5; back in input order
    p = [0.001, 0.04, 0.03, 0.2, 0.011, 0.5]
    np.testing.assert_allclose(report.holm(p), [0.006, 0.12, 0.12, 0.4, 0.055, 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(report.holm([0.6, 0.7]), [1.0, 1.0], rtol=0, atol=1e-12)  # capped at 1, then monotone
    assert report.holm([]).shape == (0,)


def test_pairwise_p_values_are_wilcoxon_then_holm():
    from statsmodels.stats.multitest import multipletests

    frame = _two_level_frame(n_images=20, gap=0.3)
    tests = report.pairwise_tests(frame, "psnr")
    wide = frame[frame["metric"] == "psnr"].pivot_table(index="image", columns="method", values="value")
    # identical methods: no signed rank at all, p = 1 (scipy returns NaN for an all-zero difference)
    raw = [1.0 if np.all(wide[a] == wide[b]) else stats.wilcoxon(wide[a], wide[b]).pvalue
           for a, b in zip(tests["a"], tests["b"], strict=True)]  # fmt: skip
    np.testing.assert_allclose(tests["p_value"], raw, rtol=1e-12)
    np.testing.assert_allclose(tests["p_holm"], multipletests(raw, method="holm")[1], rtol=1e-12)
    by = tests.set_index(["a", "b"])
    assert by.loc[("a", "b"), "better"] == "tie" and by.loc[("a", "d"), "better"] == "a"
    matrix = report.pairwise_matrix(tests)
    assert matrix.loc["a", "d"] == matrix.loc["d", "a"] == by.loc[("a", "d"), "p_holm"]
    assert np.isnan(matrix.loc["a", "a"]) and list(matrix.columns) == ["a", "b", "c", "d"]
    from core.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown metric with scores 'lpip'"):
        report.pairwise_tests(frame, "lpip")


def test_bench_report_ranks_and_pairwise_on_the_command_line(tmp_path, capsys):
    from benchmark.store import MetricRecord, ResultsStore, ScoreRecord
    from screensr.cli import main

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultsStore(url)
    for name, higher in (("psnr", True), ("niqe", False)):
        store.upsert_metric(MetricRecord(name, "NR" if name == "niqe" else "FR", higher, {}, f"s-{name}", "0.1.16"))
    store.add_scores([ScoreRecord(r.dataset, r.image, r.method, r.metric, float(r.value), f"s-{r.metric}", "h", "c")
                      for r in _two_level_frame().itertuples(index=False)])  # fmt: skip
    store.close()
    assert main(["bench", "report", "--store", url, "--ranks", "--format", "csv"]) == 0
    ranks = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype=str).set_index("method")
    assert ranks.loc["a", "shared_rank"] == ranks.loc["b", "shared_rank"] == "1-2" and ranks.loc["d", "shared_rank"] == "4"
    assert ranks.loc["a", "shared_rank_psnr"] == "1-2"
    assert main(["bench", "report", "--store", url, "--pairwise", "psnr"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split("|")[1].strip() == "method" and "| d " in text
