"""Reports: bootstrap CIs, paired tests, direction-aware ranks, GT table, formats, plots."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
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
    assert r"\toprule" in tex and r"higher\_is\_better" in tex
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
