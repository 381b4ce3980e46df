"""Reports over per-image scores: means with bootstrap CIs, paired comparisons, rank
aggregation, the GT-quality table, and Markdown / LaTeX / CSV / JSON output.

All functions take the per-image frame of :meth:`benchmark.store.ResultsStore.scores_frame`
(columns ``dataset, image, method, metric, value``) and return data frames; formatting is
separate (:func:`format_table`), and plots are in :mod:`benchmark.plots`.

Example:
    >>> import pandas as pd
    >>> f = pd.DataFrame({"dataset": "d", "image": ["a", "b", "c"], "method": "m",
    ...                   "metric": "psnr", "value": [20.0, 22.0, 24.0]})
    >>> s = summary(f, n_boot=200)
    >>> s[["dataset", "method", "metric", "mean", "n"]].values.tolist()
    [['d', 'm', 'psnr', 22.0, 3]]
    >>> bool(s["ci_low"][0] <= 22.0 <= s["ci_high"][0])
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.store import GT

SUMMARY_COLUMNS = ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n", "higher_is_better"]


def direction(metric: str) -> bool | None:
    """True if higher is better, False if lower is, None if the metric is unknown."""
    from benchmark.metrics import get_metric

    try:
        return get_metric(metric).higher_is_better
    except KeyError:
        return None


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of the mean of each row.

    Args:
        values: (G, n) array, one group of n per-image scores per row (no NaN).
        confidence: two-sided level in (0, 1).
        n_boot: bootstrap resamples.
        seed: the resampling seed (the same seed gives the same interval).

    Returns:
        (low, high): two (G,) arrays.

    Every row is resampled with the same multinomial resampling weights (B, n); the B resampled
    means of all G groups are then one matrix product, (G, n) @ (n, B), which keeps a whole
    leaderboard (thousands of groups) well under a second. Sharing the resampling indices
    across groups changes nothing for each group's own interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be a (groups, n) array, got shape {values.shape}")
    n = values.shape[1]
    if n == 1:
        return values[:, 0].copy(), values[:, 0].copy()
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n)
    means = values @ weights.T / n  # (G, B)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=1)
    return low, high


def mean_ci(frame: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap CI of each (dataset, method, metric) over its images (finite values only).

    Returns:
        One row per group, sorted by the keys: ``dataset, method, metric, mean, ci_low, ci_high, n``.
        Groups of equal size are resampled together (one matrix product per size).
    """
    _check(frame)
    keys = ["dataset", "method", "metric"]
    finite = frame.loc[np.isfinite(frame["value"].to_numpy(dtype=np.float64)), [*keys, "value"]]
    if finite.empty:
        empty = {k: pd.Series(dtype=object) for k in keys}
        empty.update({c: pd.Series(dtype=float) for c in ("mean", "ci_low", "ci_high")})
        return pd.DataFrame({**empty, "n": pd.Series(dtype=int)})
    finite = finite.sort_values(keys, kind="stable")
    group_id = finite.groupby(keys, sort=False, observed=True).ngroup().to_numpy()
    values = finite["value"].to_numpy(dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, group_id[1:] != group_id[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    out = finite.iloc[starts][keys].reset_index(drop=True)
    out["mean"] = np.add.reduceat(values, starts) / sizes
    low = np.empty(len(starts))
    high = np.empty(len(starts))
    for size in np.unique(sizes):
        idx = np.flatnonzero(sizes == size)
        block = values[starts[idx, None] + np.arange(size)[None, :]]  # (groups, size)
        low[idx], high[idx] = bootstrap_ci(block, confidence=confidence, n_boot=n_boot, seed=seed)
    out["ci_low"] = low
    out["ci_high"] = high
    out["n"] = sizes.astype(int)
    return out


def _check(frame: pd.DataFrame) -> None:
    missing = {"dataset", "image", "method", "metric", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"score frame lacks columns {sorted(missing)}; use ResultsStore.scores_frame()")


def summary(
    frame: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Mean per dataset x method x metric with a percentile-bootstrap confidence interval.

    Args:
        frame: per-image scores (non-finite values are left out of ``n``).
        confidence: CI level in (0, 1).
        n_boot: bootstrap resamples.
        seed: resampling seed (reports are reproducible).

    Returns:
        Columns :data:`SUMMARY_COLUMNS` (``higher_is_better`` is None for unknown metrics).
    """
    out = mean_ci(frame, confidence=confidence, n_boot=n_boot, seed=seed)
    dirs = {k: direction(str(k)) for k in out["metric"].unique()}
    out["higher_is_better"] = out["metric"].map(dirs)
    return out[SUMMARY_COLUMNS]


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    *,
    test: str = "wilcoxon",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of methods ``a`` and ``b`` on the images both have, per dataset x metric.

    Args:
        test: ``wilcoxon`` (signed-rank, scipy) or ``bootstrap`` (paired bootstrap of the mean
            difference; p-value from the CI inversion: twice the smaller tail share).

    Returns:
        Columns ``dataset, metric, n, mean_a, mean_b, diff (a - b), ci_low, ci_high (of diff),
        p_value, better`` where ``better`` is ``a``, ``b`` or ``tie`` at 1 - confidence,
        respecting the metric's direction.
    """
    from scipy.stats import wilcoxon

    _check(frame)
    if test not in ("wilcoxon", "bootstrap"):
        raise ValueError(f"test must be 'wilcoxon' or 'bootstrap', got {test!r}")
    for m in (a, b):
        if m not in set(frame["method"]):
            raise ValueError(f"method {m!r} has no scores; methods present: {sorted(set(frame['method']))}")
    sub = frame[frame["method"].isin([a, b])]
    wide = sub.pivot_table(index=["dataset", "metric", "image"], columns="method", values="value").dropna()
    rng = np.random.default_rng(seed)
    rows = []
    for (d, k), g in wide.groupby(level=["dataset", "metric"]):
        x, y = g[a].to_numpy(float), g[b].to_numpy(float)
        diff = x - y
        n = len(diff)
        idx = rng.integers(0, n, size=(n_boot, n))
        boots = diff[idx].mean(axis=1)
        alpha = 1 - confidence
        lo, hi = (float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2)))
        if test == "wilcoxon":
            p = float(wilcoxon(x, y).pvalue) if n > 0 and np.any(diff != 0) else 1.0
        else:
            p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
        hib = direction(str(k))
        better = "tie"
        if p < alpha and hib is not None and diff.mean() != 0:
            better = a if (diff.mean() > 0) == hib else b
        rows.append((d, k, n, float(x.mean()), float(y.mean()), float(diff.mean()), lo, hi, p, better))
    return pd.DataFrame(
        rows, columns=["dataset", "metric", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "better"]
    )


def ranks(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Rank aggregation: per dataset and metric, methods ranked by mean (1 = best, respecting the
    metric's direction; ties share the average rank), then averaged over metrics.

    Metrics of unknown direction are left out. ``GT`` is not ranked.

    Returns:
        Columns ``dataset, method, mean_rank, n_metrics`` and one ``rank_<metric>`` per metric,
        sorted by dataset, mean rank.
    """
    _check(frame)
    f = frame[frame["method"] != GT]
    if metrics is not None:
        f = f[f["metric"].isin(metrics)]
    means = f.groupby(["dataset", "metric", "method"])["value"].mean().reset_index()
    means["hib"] = means["metric"].map(direction)
    means = means[means["hib"].notna()]
    if means.empty:
        return pd.DataFrame(columns=["dataset", "method", "mean_rank", "n_metrics"])
    means["rank"] = means.groupby(["dataset", "metric"], group_keys=False).apply(
        lambda g: g["value"].rank(ascending=not bool(g["hib"].iloc[0]), method="average")
    )
    wide = means.pivot_table(index=["dataset", "method"], columns="metric", values="rank")
    out = pd.DataFrame(
        {"mean_rank": wide.mean(axis=1), "n_metrics": wide.notna().sum(axis=1)}
    ).join(wide.add_prefix("rank_"))
    return out.reset_index().sort_values(["dataset", "mean_rank", "method"]).reset_index(drop=True)


def gt_quality(frame: pd.DataFrame) -> pd.DataFrame:
    """The VOSR paper's Table 2: mean no-reference score of each dataset's ground truth.

    Returns:
        One row per dataset, one column per metric, plus ``n`` (images).
    """
    _check(frame)
    g = frame[frame["method"] == GT]
    if g.empty:
        raise ValueError("no GT scores in this store; run `screensr bench gt-quality --dataset ...` first")
    table = g.pivot_table(index="dataset", columns="metric", values="value", aggfunc="mean")
    table["n"] = g.groupby("dataset")["image"].nunique()
    table.columns.name = None
    return table.reset_index()


# ---------------------------------------------------------------------------- formatting
FORMATS = ("markdown", "latex", "csv", "json")


def _cell(v, digits: int) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    if v is None:
        return ""
    return str(v)


def format_table(df: pd.DataFrame, fmt: str = "markdown", *, digits: int = 4) -> str:
    """Render a frame as ``markdown``, ``latex`` (booktabs), ``csv`` or ``json`` (records).

    One value per cell (means and CI bounds in their own columns), so every output sorts.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(df.to_json(orient="records")), indent=1) + "\n"
    cells = [[_cell(v, digits) for v in row] for row in df.itertuples(index=False)]
    cols = [str(c) for c in df.columns]
    if fmt == "markdown":
        widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
        line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
        out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in cells]
        return "\n".join(out) + "\n"
    if fmt == "latex":
        esc = lambda s: s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
        out = [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(map(esc, cols)) + r" \\", r"\midrule"]
        out += [" & ".join(map(esc, r)) + r" \\" for r in cells]
        out += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
