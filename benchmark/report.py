"""Reports over per-image scores: means with bootstrap CIs, paired comparisons, rank
aggregation, the GT-quality table, and Markdown / LaTeX / CSV / JSON output.

All functions take the per-image frame of :meth:`benchmark.store.ResultsStore.scores_frame`
(columns ``dataset, image, method, metric, value``) and return data frames; formatting is
separate (:func:`format_table`), and plots are in :mod:`benchmark.plots`.

**The comparison rule** (one implementation, here; ``screensr bench report``, the leaderboard and
its static export all call it). Per (dataset, metric) the *reference set* is the images the
dataset holds now: the ``dataset_images`` the runner records in the store each time it runs the
dataset (only images with an HR for full-reference metrics). Then:

- scores of images no longer in the dataset are dropped from every summary and counted in
  ``n_stale`` (they stay in the store as history);
- a method with a score for every reference image is ``complete`` and ranked, on that full set;
- a method missing images is ``incomplete``: its ``n`` of ``n_total`` is stated, it gets no rank,
  and its partial mean never stands beside complete ones without that mark;
- paired comparisons (:func:`compare`) use the images both methods share;
- the status of the latest run of each (dataset, method) (``failed``, ``aborted``, ``partial``,
  ``running``, ``interrupted``) is shown for incomplete methods (:func:`run_problems` lists those runs).

Datasets the store has no image list for (scores written by other tools) fall back to the union
of the images any method has for that metric: a method that failed half-way is still incomplete.

One bootstrap: every interval comes from :func:`mean_ci` with :data:`N_BOOT` resamples, seed
:data:`SEED` and level :data:`CONFIDENCE`, over each group's values in image order, so the same
scores give the same interval in the CLI, on the board and in the export.

Example:
    >>> import pandas as pd
    >>> f = pd.DataFrame({"dataset": "d", "image": ["a", "b", "c"], "method": "m",
    ...                   "metric": "psnr", "value": [20.0, 22.0, 24.0]})
    >>> s = summary(f, n_boot=200)
    >>> s[["dataset", "method", "metric", "mean", "n", "n_total", "status"]].values.tolist()
    [['d', 'm', 'psnr', 22.0, 3, 3, 'complete']]
    >>> bool(s["ci_low"][0] <= 22.0 <= s["ci_high"][0])
    True
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.metrics import get_metric
from benchmark.store import GT
from core.errors import ConfigError, UnknownNameError, UserError, did_you_mean

#: Bootstrap resamples of every interval the suite shows (CLI report, leaderboard, export).
N_BOOT = 2000
#: Two-sided level of those intervals.
CONFIDENCE = 0.95
#: Resampling seed (the same scores always give the same interval).
SEED = 0

SUMMARY_COLUMNS = [
    "dataset",
    "method",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "n_total",
    "n_stale",
    "complete",
    "rank",
    "status",
    "higher_is_better",
]

class ReportError(UserError, ValueError):
    """The store holds nothing to report for what was asked (the message names the fix)."""


#: Latest-run statuses that explain why a method is incomplete.
_RUN_PROBLEMS = ("failed", "aborted", "partial", "running", "interrupted")


def direction(metric: str, metrics: pd.DataFrame | None = None) -> bool | None:
    """True if higher is better, False if lower is, None if unknown (:func:`metric_info`)."""
    return metric_info(metric, metrics)[0]


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = CONFIDENCE, n_boot: int = N_BOOT, seed: int = SEED
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
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be a positive number of resamples, got {n_boot}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be a (groups, n) array, got shape {values.shape}")
    n = values.shape[1]
    if n == 1:
        return values[:, 0].copy(), values[:, 0].copy()
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)  # (B, n)
    means = values @ weights.T / n  # (G, B)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=1)
    return low, high


def mean_ci(
    frame: pd.DataFrame, *, confidence: float = CONFIDENCE, n_boot: int = N_BOOT, seed: int = SEED
) -> pd.DataFrame:
    """Mean and bootstrap CI of each (dataset, method, metric) over its images (finite values only).

    Values enter the bootstrap in image order, so the interval depends only on the scores, never
    on the order a store or a filter returned them in.

    Returns:
        One row per group, sorted by the keys: ``dataset, method, metric, mean, ci_low, ci_high, n``.
        Groups of equal size are resampled together (one matrix product per size).
    """
    _check(frame)
    keys = ["dataset", "method", "metric"]
    finite = frame.loc[np.isfinite(frame["value"].to_numpy(dtype=np.float64)), [*keys, "image", "value"]]
    if finite.empty:
        empty = {k: pd.Series(dtype=object) for k in keys}
        empty.update({c: pd.Series(dtype=float) for c in ("mean", "ci_low", "ci_high")})
        return pd.DataFrame({**empty, "n": pd.Series(dtype=int)})
    finite = finite.astype({"image": str}).sort_values([*keys, "image"], kind="stable")
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


# ---------------------------------------------------------------------------- the comparison rule
def metric_info(metric: str, metrics: pd.DataFrame | None = None) -> tuple[bool | None, str]:
    """``(higher_is_better, "FR"|"NR")`` of ``metric``: the one direction lookup of the suite.

    The CLI report, the rank aggregation, the plots, the leaderboard and its export all ask here,
    so they cannot disagree. Sources, first match wins:

    1. the store's ``metrics`` frame (what the runner recorded when it computed the scores);
    2. the metric registry :data:`benchmark.metrics.METRICS`;
    3. pyiqa's own configuration, for any other per-image pyiqa metric (imports pyiqa once).

    Returns ``(None, "NR")`` for a name none of them knows: such a metric is shown without an
    arrow and never ranked.
    """
    if metrics is not None and len(metrics) and "name" in metrics.columns:
        rows = metrics[metrics["name"] == metric]
        if len(rows):
            row = rows.iloc[0]
            return bool(row["higher_is_better"]), str(row["kind"]).upper()
    return _registered_info(str(metric))


@functools.cache
def _registered_info(metric: str) -> tuple[bool | None, str]:
    try:
        spec = get_metric(metric)
    except KeyError:  # UnknownNameError: neither registered nor a per-image pyiqa metric
        return None, "NR"
    return bool(spec.higher_is_better), spec.kind


def current_scores(
    frame: pd.DataFrame, images: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split scores into those of the datasets' current images and stale ones.

    Args:
        frame: per-image scores, one row per (dataset, image, method, metric): the latest, as
            ``ResultsStore.scores_frame()`` and the leaderboard's reader return them.
        images: the store's ``dataset_images_frame()`` (``dataset, image, has_reference``);
            None or a dataset without rows: the reference set is the union of the images that
            have a finite score for that metric.
        metrics: the store's ``metrics_frame()`` (kinds and directions), optional.

    Returns:
        ``(current, n_total, n_stale)``: the scores to aggregate; one row per (dataset, metric)
        with ``n_total`` (the reference set's size); one row per (dataset, method, metric) with
        ``n_stale`` (scores dropped because their image left the dataset).
    """
    _check(frame)
    f = frame
    keys = ["dataset", "method", "metric"]
    kinds = {m: metric_info(str(m), metrics)[1] for m in f["metric"].unique()}
    recorded: set[str] = set(images["dataset"]) if images is not None and len(images) else set()
    if recorded and images is not None:
        listed_images = images.drop_duplicates(["dataset", "image"])
        lookup = listed_images.set_index(["dataset", "image"])["has_reference"].astype(bool)
        has_ref = lookup.reindex(pd.MultiIndex.from_arrays([f["dataset"], f["image"]]))
        listed = has_ref.notna().to_numpy()
        with_ref = has_ref.fillna(False).astype(bool).to_numpy()
        is_fr = f["metric"].map(kinds).eq("FR").to_numpy()
        is_rec = f["dataset"].isin(recorded).to_numpy()
        keep = ~is_rec | (listed & (~is_fr | with_ref))
    else:
        keep = np.ones(len(f), dtype=bool)
    current = f[keep] if not keep.all() else f

    n_stale = f.groupby(keys, sort=False, observed=True).size().rename("n_stale").reset_index()
    if keep.all():
        n_stale["n_stale"] = 0
    else:
        dropped = f[~keep].groupby(keys, sort=False, observed=True).size()
        n_stale["n_stale"] = dropped.reindex(pd.MultiIndex.from_frame(n_stale[keys])).fillna(0).astype(int).to_numpy()

    pairs = n_stale[["dataset", "metric"]].drop_duplicates().reset_index(drop=True)
    total = pd.Series(np.nan, index=pairs.index)
    rec = pairs["dataset"].isin(recorded)
    if rec.any():
        per_ds = listed_images.groupby("dataset")["has_reference"].agg(["size", "sum"])
        fr = pairs["metric"].map(kinds).eq("FR")
        sizes = np.where(fr, pairs["dataset"].map(per_ds["sum"]), pairs["dataset"].map(per_ds["size"]))
        total[rec] = sizes[rec.to_numpy()]
    if (~rec).any():  # no image list: the union of the images scored (finite values) for the metric
        rest = current[~current["dataset"].isin(recorded)]
        rest = rest[np.isfinite(rest["value"].to_numpy(dtype=np.float64))]
        union = rest.groupby(["dataset", "metric"], observed=True)["image"].nunique()
        idx = pd.MultiIndex.from_frame(pairs.loc[~rec, ["dataset", "metric"]])
        total[~rec] = union.reindex(idx).to_numpy()
    pairs["n_total"] = total.fillna(0).astype(int)
    return current.reset_index(drop=True), pairs, n_stale


def summary(
    frame: pd.DataFrame,
    *,
    images: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
    metrics: pd.DataFrame | None = None,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """Mean per dataset x method x metric with a percentile-bootstrap confidence interval, under
    the comparison rule (module docstring).

    Args:
        frame: per-image scores (non-finite values are left out of ``n``).
        images: the store's ``dataset_images_frame()`` (the reference sets); see
            :func:`current_scores` for what happens without it.
        runs: the store's ``runs_frame()`` (latest run per dataset and method), for ``status``.
        metrics: the store's ``metrics_frame()`` (directions, FR/NR); default the registry.
        confidence: CI level in (0, 1).
        n_boot: bootstrap resamples.
        seed: resampling seed (reports are reproducible).

    Returns:
        Columns :data:`SUMMARY_COLUMNS`: ``mean, ci_low, ci_high`` over the ``n`` current images
        scored (NaN when ``n`` is 0: only stale scores), ``n_total`` the reference set's size,
        ``n_stale`` the dropped scores, ``complete`` (``n == n_total``), ``rank`` (1 = best among
        the complete methods of the dataset and metric, in the metric's direction, ties share the
        lowest rank; NA for incomplete methods, GT and metrics of unknown direction), ``status``
        (``complete``, ``incomplete``, or the latest run's ``failed`` / ``aborted`` / ``partial``
        / ``running`` / ``interrupted`` when the method is incomplete), ``higher_is_better`` (None: unknown).
    """
    current, totals, stale = current_scores(frame, images, metrics)
    stats = mean_ci(current, confidence=confidence, n_boot=n_boot, seed=seed)
    keys = ["dataset", "method", "metric"]
    out = stale.merge(stats, how="left", on=keys).merge(totals, how="left", on=["dataset", "metric"])
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_total"] = out["n_total"].fillna(0).astype(int)
    out["complete"] = (out["n"] >= out["n_total"]) & (out["n"] > 0)
    dirs = {m: metric_info(str(m), metrics)[0] for m in out["metric"].unique()}
    out["higher_is_better"] = out["metric"].map(dirs).astype(object)
    out["rank"] = _ranks(out, dirs)
    status = np.where(out["complete"], "complete", "incomplete").astype(object)
    if runs is not None and len(runs):
        latest = runs.drop_duplicates(["dataset", "method"], keep="last").set_index(["dataset", "method"])["status"]
        run_status = latest.reindex(pd.MultiIndex.from_arrays([out["dataset"], out["method"]])).to_numpy()
        explain = ~out["complete"].to_numpy() & pd.Series(run_status).isin(_RUN_PROBLEMS).to_numpy()
        status[explain] = run_status[explain]
    out["status"] = status
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    return out[SUMMARY_COLUMNS]


def _ranks(out: pd.DataFrame, dirs: Mapping[str, bool | None]) -> pd.Series:
    """Per (dataset, metric) rank of the complete, non-GT methods (1 = best, ties: lowest rank)."""
    rank = pd.Series(pd.NA, index=out.index, dtype="Int64")
    eligible = out["complete"] & (out["method"] != GT) & out["metric"].map(lambda m: dirs.get(m) is not None)
    part = out[eligible]
    if part.empty:
        return rank
    signed = part["mean"] * part["metric"].map(lambda m: -1.0 if dirs[m] else 1.0)  # smaller = better
    rank.loc[part.index] = signed.groupby([part["dataset"], part["metric"]]).rank(method="min").astype("Int64")
    return rank


def with_versions(table: pd.DataFrame, versions: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` (one row per dataset x method, e.g. :func:`summary` or :func:`ranks`) with a last
    ``version`` column: the method version the current scores come from (appended, so readers of
    the CSV by column position keep working).

    Args:
        versions: ``ResultsStore.score_versions()`` (``dataset, method, version, images``). A method
            whose current scores mix versions (a newer version scored on fewer metrics) reads
            ``"2.0 + 1.0"``, the version with most images first; unknown versions are empty.
    """
    out = table.copy()
    text: dict[tuple[str, str], str] = {}
    if versions is not None and len(versions):
        known = versions.dropna(subset=["version"]).sort_values(["images", "version"], ascending=[False, True],
                                                                 kind="stable")  # fmt: skip
        for (dataset, method), group in known.groupby(["dataset", "method"], sort=False):
            text[(str(dataset), str(method))] = " + ".join(v for v in map(str, group["version"]) if v)
    labels = [text.get((str(d), str(m)), "") for d, m in zip(out["dataset"], out["method"], strict=True)]
    out["version"] = labels
    return out


def run_problems(runs: pd.DataFrame | None) -> pd.DataFrame:
    """Latest runs per (dataset, method) that did not complete: ``dataset, method, status, error,
    finished`` (a failed run is shown as failed, with its error, never as a silent partial)."""
    cols = ["dataset", "method", "status", "error", "finished"]
    if runs is None or runs.empty:
        return pd.DataFrame(columns=cols)
    latest = runs.drop_duplicates(["dataset", "method"], keep="last")
    bad = latest[latest["status"].isin(_RUN_PROBLEMS)].reindex(columns=cols)
    bad["error"] = bad["error"].fillna("").astype(str)
    return bad.sort_values(["dataset", "method"]).reset_index(drop=True)


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    *,
    images: pd.DataFrame | None = None,
    test: str = "wilcoxon",
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """Paired comparison of methods ``a`` and ``b`` on the current images both have, per
    dataset x metric (stale scores are dropped first, see :func:`current_scores`).

    Args:
        images: the store's ``dataset_images_frame()``.
        test: ``wilcoxon`` (signed-rank, scipy) or ``bootstrap`` (paired bootstrap of the mean
            difference; p-value from the CI inversion: twice the smaller tail share).

    Returns:
        Columns ``dataset, metric, n, mean_a, mean_b, diff (a - b), ci_low, ci_high (of diff),
        p_value, better`` where ``better`` is ``a``, ``b`` or ``tie`` at 1 - confidence,
        respecting the metric's direction; ``n`` is the number of shared images.
    """
    from scipy.stats import wilcoxon

    _check(frame)
    if test not in ("wilcoxon", "bootstrap"):
        raise ConfigError(f"test must be 'wilcoxon' or 'bootstrap', got {test!r}")
    for m in (a, b):
        if m not in set(frame["method"]):
            raise ReportError(f"method {m!r} has no scores; methods present: {sorted(set(frame['method']))}")
    current, _, _ = current_scores(frame[frame["method"].isin([a, b])], images)
    wide = current.pivot_table(index=["dataset", "metric", "image"], columns="method", values="value")
    wide = wide.reindex(columns=[a, b]).dropna()
    rng = np.random.default_rng(seed)
    rows = []
    for (d, k), g in wide.groupby(level=["dataset", "metric"]):
        g = g.sort_index(level="image")
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


def aggregate_rank(means: pd.DataFrame, higher_is_better: Mapping[str, bool | None]) -> pd.DataFrame:
    """Rank methods across metrics, each metric ranked in its own direction: the one aggregated
    ranking of the suite (``bench report --ranks``, the leaderboard, its export).

    The rule: the methods that have every ranked metric (a mean that is not NaN; callers blank
    the means of incomplete methods first, see :func:`ranks`) are ranked on each metric among
    themselves (1 = best, ties share the average rank), and a method's ``mean_rank`` is the average
    of its per-metric ranks. A method missing any ranked metric gets no rank and comes last: it
    is never rewarded for a missing score, nor does it shift the others' per-metric ranks.

    Args:
        means: method x metric table of means (index: method; columns: metric names; NaN where
            the method has no comparable mean).
        higher_is_better: direction per metric; metrics with ``None`` or missing are skipped.

    Returns:
        Index method; columns ``mean_rank``, ``metrics_ranked`` (how many of the ranked metrics
        the method has), ``rank`` (1 + the number of methods with a strictly better mean rank) and
        one ``rank_<metric>`` per ranked metric; sorted best first, unranked methods last.

    Raises:
        ValueError: no metric of ``means`` has a known direction.

    Example:
        >>> m = pd.DataFrame({"psnr": [28.0, 25.0], "lpips": [0.1, 0.2]}, index=["a", "b"])
        >>> aggregate_rank(m, {"psnr": True, "lpips": False})["rank"].tolist()
        [1, 2]
    """
    used = [m for m in means.columns if higher_is_better.get(m) is not None]
    if not used:
        raise ValueError(
            f"no metric with a known direction among {list(means.columns)}: declare its direction "
            "in benchmark.metrics (higher_is_better)"
        )
    have = means[used].notna()
    complete = means.loc[have.all(axis=1), used]
    per_metric = pd.DataFrame(
        {m: complete[m].rank(ascending=not higher_is_better[m], method="average") for m in used},
        index=complete.index,
    )
    out = pd.DataFrame(index=means.index)
    out["mean_rank"] = per_metric.mean(axis=1).reindex(means.index)
    out["metrics_ranked"] = have.sum(axis=1)
    out["rank"] = out["mean_rank"].rank(method="min", ascending=True).astype("Int64")
    for m in used:
        out[f"rank_{m}"] = per_metric[m].reindex(means.index)
    return out.sort_values(["mean_rank"], kind="stable", na_position="last")


def ranks(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    images: pd.DataFrame | None = None,
    metrics_frame: pd.DataFrame | None = None,
    intervals: bool = False,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """Rank aggregation per dataset (:func:`aggregate_rank`) over the means of the complete
    methods (comparison rule: a method missing images of a metric has no comparable mean there).

    Metrics of unknown direction are left out; ``GT`` is not ranked. A method complete on every
    ranked metric of the dataset gets a rank; the others come last with ``mean_rank`` NaN and
    ``n_metrics`` = the metrics they are complete on.

    With ``intervals``, the bootstrap rank intervals of :func:`rank_intervals` are added:
    ``rank_low, rank_high, shared_rank`` (the aggregated rank, ``"2-3"`` when tied) and one
    ``shared_rank_<metric>`` per metric.

    Returns:
        Columns ``dataset, method, rank, mean_rank, n_metrics`` and one ``rank_<metric>`` per
        metric (then the interval columns), sorted by dataset, mean rank.
    """
    _check(frame)
    f = frame[frame["method"] != GT]
    if metrics is not None:
        f = f[f["metric"].isin(metrics)]
    empty = pd.DataFrame(columns=["dataset", "method", "rank", "mean_rank", "n_metrics"])
    if f.empty:
        return empty
    current, totals, _ = current_scores(f, images, metrics_frame)
    means = current.groupby(["dataset", "metric", "method"])["value"].agg(["mean", "size"]).reset_index()
    means = means.merge(totals, on=["dataset", "metric"], how="left")
    dirs = {m: metric_info(str(m), metrics_frame)[0] for m in means["metric"].unique()}
    means = means[means["metric"].map(dirs).notna()]
    if means.empty:
        return empty
    # a partial mean is not comparable: blank it, so the method is unranked on the dataset
    means["mean"] = means["mean"].where(means["size"] >= means["n_total"])
    parts = []
    for dataset, group in means.groupby("dataset", sort=True):
        wide = group.pivot_table(index="method", columns="metric", values="mean", dropna=False)
        wide.columns.name = None
        ranked = aggregate_rank(wide, dirs).rename(columns={"metrics_ranked": "n_metrics"})
        parts.append(ranked.rename_axis("method").reset_index().assign(dataset=dataset))
    out = pd.concat(parts, ignore_index=True)
    per_metric = sorted(c for c in out.columns if c.startswith("rank_"))
    out = out[["dataset", "method", "rank", "mean_rank", "n_metrics", *per_metric]]
    if intervals:
        boxes = rank_intervals(f, images=images, metrics_frame=metrics_frame, confidence=confidence,
                               n_boot=n_boot, seed=seed)  # fmt: skip
        agg = boxes[boxes["metric"] == AGGREGATE][["dataset", "method", "rank_low", "rank_high", "shared_rank"]]
        out = out.merge(agg, on=["dataset", "method"], how="left")
        for m in sorted(set(boxes["metric"]) - {AGGREGATE}):
            one = boxes[boxes["metric"] == m][["dataset", "method", "shared_rank"]]
            out = out.merge(one.rename(columns={"shared_rank": f"shared_rank_{m}"}), on=["dataset", "method"], how="left")
    return out.sort_values(["dataset", "mean_rank", "method"], na_position="last").reset_index(drop=True)


# ---------------------------------------------------------------------------- rank confidence
#: The ``metric`` of :func:`rank_intervals` rows that hold the aggregated rank.
AGGREGATE = "aggregate"

RANK_INTERVAL_COLUMNS = ["dataset", "method", "metric", "rank", "rank_low", "rank_high", "shared_rank", "tied"]


def shared_ranks(low: Sequence[float], high: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The rank range each method can claim given every method's rank interval.

    A method is clearly behind another only when the other's interval lies entirely before its
    own (``high_j < low_i``); methods whose intervals overlap are tied. Method ``i`` shares the
    ranks ``1 + #{j: high_j < low_i}`` to ``N - #{j: low_j > high_i}`` (Chatbot Arena's "rank = 1 +
    the number of systems clearly better", and its mirror for the lower end).

    Args:
        low, high: (N,) rank interval bounds (1 = best).

    Returns:
        ``(first, last)``: two (N,) int arrays; ``first == last`` when the method is separated
        from every other.

    Example:
        >>> first, last = shared_ranks([1, 1, 3], [1, 2, 3])
        >>> [f"{a}-{b}" if a != b else f"{a}" for a, b in zip(first, last)]
        ['1-2', '1-2', '3']
    """
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    n = len(lo)
    first = 1 + (hi[None, :] < lo[:, None]).sum(axis=1)
    last = n - (lo[None, :] > hi[:, None]).sum(axis=1)
    return first.astype(int), last.astype(int)


def shared_rank_text(first: int, last: int) -> str:
    """``"2"`` or ``"2-3"`` (a shared rank)."""
    return str(int(first)) if int(first) == int(last) else f"{int(first)}-{int(last)}"


def rank_intervals(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    images: pd.DataFrame | None = None,
    metrics_frame: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """Bootstrap intervals of every method's rank, per metric and for the aggregated rank.

    Images are resampled (the suite's one bootstrap: :data:`N_BOOT` multinomial resamples with
    :data:`SEED`), the same resampled images for every method and metric of a dataset (paired),
    and every resample is ranked with the suite's rules: per metric, the complete methods by
    mean in the metric's direction (ties share the lowest rank, as :func:`summary`); aggregated,
    :func:`aggregate_rank`'s rule (methods complete on every ranked metric, average per-metric
    ranks, then their order). The interval is the ``confidence`` percentile range of the ranks a
    method gets over the resamples; :func:`shared_ranks` turns overlapping intervals into shared
    ranks (``2-3``).

    Args:
        frame: per-image scores; GT is never ranked, metrics of unknown direction are skipped.
        metrics: rank on these metrics only (default every metric of the dataset).
        images, metrics_frame: the store's image lists and metric rows (comparison rule).
        methods: rank among these methods only (default all).

    Returns:
        Columns :data:`RANK_INTERVAL_COLUMNS`: one row per (dataset, method, metric) for each
        complete method, ``metric`` = :data:`AGGREGATE` for the aggregated rank; ``rank`` is the
        rank of the means themselves, ``rank_low``/``rank_high`` the interval, ``shared_rank``
        the text (``"2-3"``), ``tied`` whether it is shared.
    """
    _check(frame)
    f = frame[frame["method"] != GT]
    if metrics is not None:
        f = f[f["metric"].isin(list(metrics))]
    if methods is not None:
        f = f[f["method"].isin(list(methods))]
    empty = pd.DataFrame(columns=RANK_INTERVAL_COLUMNS)
    if f.empty:
        return empty
    current, totals, _ = current_scores(f, images, metrics_frame)
    current = current[np.isfinite(current["value"].to_numpy(dtype=np.float64))]
    dirs = {m: metric_info(str(m), metrics_frame)[0] for m in current["metric"].unique()}
    current = current[current["metric"].map(dirs).notna()]
    total = totals.set_index(["dataset", "metric"])["n_total"]
    alpha = (1.0 - confidence) / 2.0
    rows: list[dict] = []
    for dataset, part in current.groupby("dataset", sort=True):
        used = sorted(part["metric"].unique())
        counts = part.groupby(["method", "metric"])["image"].nunique().unstack("metric").reindex(columns=used)
        need = pd.Series({m: int(total.get((dataset, m), 0)) for m in used})
        complete = counts.ge(need, axis=1) & counts.gt(0)
        images_all = sorted(part["image"].astype(str).unique())
        rng = np.random.default_rng(seed)
        k = len(images_all)
        weights = rng.multinomial(k, np.full(k, 1.0 / k), size=int(n_boot)).astype(np.float64)  # (B, k)
        # one (metric, method, image) cube of the dataset's scores (NaN = no score) instead of a
        # pivot per metric (a store has one score per key; a hand-made frame keeps its first)
        part = part.drop_duplicates(["metric", "method", "image"], keep="first")
        metric_pos = {m: i for i, m in enumerate(used)}
        method_names = sorted(part["method"].unique())
        method_pos = {m: i for i, m in enumerate(method_names)}
        cube = np.full((len(used), len(method_names), k), np.nan)
        cube[pd.Index(used).get_indexer(part["metric"]), pd.Index(method_names).get_indexer(part["method"]),
             pd.Index(images_all).get_indexer(part["image"].astype(str))] = part["value"].to_numpy(dtype=np.float64)  # fmt: skip
        signed_boot: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        for m in used:
            ranked = sorted(complete.index[complete[m]])
            if not ranked:
                continue
            sub = cube[metric_pos[m]][[method_pos[x] for x in ranked]]  # (ranked methods, k)
            idx = np.flatnonzero(~np.isnan(sub).all(axis=0))  # the images any ranked method has
            values = sub[:, idx]  # (methods, images of m)
            point = values.mean(axis=1)
            w = weights[:, idx]  # (B, images of m)
            denom = w.sum(axis=1)  # (B,)
            boot = np.where(denom[None, :] > 0, values @ w.T / np.where(denom > 0, denom, 1.0)[None, :], point[:, None])
            sign = -1.0 if dirs[m] else 1.0  # smaller = better
            signed_boot[m] = (ranked, sign * point, sign * boot)
            _interval_rows(rows, dataset, m, ranked, sign * point, sign * boot, alpha, "min")
        # the aggregated rank: methods complete on every ranked metric, average ranks per metric
        full = sorted(complete.index[complete.all(axis=1)]) if len(used) else []
        if full and signed_boot:
            per_point, per_boot = [], []
            for ranked, point, boot in signed_boot.values():
                keep = [ranked.index(x) for x in full]
                per_point.append(_rank(point[keep][:, None], "average")[:, 0])
                per_boot.append(_rank(boot[keep], "average"))
            mean_point = np.mean(per_point, axis=0)
            mean_boot = np.mean(per_boot, axis=0)  # (methods, B)
            _interval_rows(rows, dataset, AGGREGATE, full, mean_point, mean_boot, alpha, "min")
    if not rows:
        return empty
    return pd.DataFrame(rows, columns=RANK_INTERVAL_COLUMNS)


def _rank(values: np.ndarray, method: str) -> np.ndarray:
    """Ranks down axis 0 (methods) of a (methods, B) array, 1 = smallest."""
    from scipy.stats import rankdata

    return rankdata(values, axis=0, method=method)


def _interval_rows(rows: list, dataset, metric: str, methods: list[str], point: np.ndarray,
                   boot: np.ndarray, alpha: float, ties: str) -> None:  # fmt: skip
    """Append one row per method: the rank of ``point`` and the percentile interval over ``boot``."""
    point_rank = _rank(point[:, None], ties)[:, 0]
    boot_rank = _rank(boot, ties)  # (methods, B)
    low = np.quantile(boot_rank, alpha, axis=1, method="lower")
    high = np.quantile(boot_rank, 1.0 - alpha, axis=1, method="higher")
    first, last = shared_ranks(low, high)
    for i, name in enumerate(methods):
        rows.append({"dataset": dataset, "method": name, "metric": metric, "rank": int(point_rank[i]),
                     "rank_low": int(low[i]), "rank_high": int(high[i]),
                     "shared_rank": shared_rank_text(first[i], last[i]), "tied": bool(first[i] != last[i])})  # fmt: skip


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values (Holm 1979), by statsmodels: the
    k-th smallest of m is multiplied by ``m - k + 1``, made monotone and capped at 1.

    Raises:
        ImportError: statsmodels is missing (it comes with ``pip install 'screensr[board]'``).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError as exc:  # an optional dependency: say which extra brings it
        raise ImportError("Holm-corrected p-values need statsmodels: pip install 'screensr[board]'") from exc

    p = np.asarray(p_values, dtype=np.float64)
    if not len(p):
        return p
    return np.asarray(multipletests(p, method="holm")[1], dtype=np.float64)


def pairwise_tests(
    frame: pd.DataFrame,
    metric: str,
    dataset: str | None = None,
    *,
    images: pd.DataFrame | None = None,
    metrics_frame: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank p-values between every two complete methods on one metric,
    Holm-corrected over the pairs of each dataset.

    Args:
        frame: per-image scores.
        metric: the metric compared.
        dataset: one dataset (default every dataset that has ``metric``).
        methods: compare these methods only (default every complete method).

    Returns:
        Long form, one row per pair: ``dataset, metric, a, b, n`` (shared images), ``mean_diff``
        (a - b), ``p_value`` (raw), ``p_holm``, ``better`` (``a``, ``b`` or ``tie`` at Holm
        p < 1 - CONFIDENCE, in the metric's direction). :func:`pairwise_matrix` pivots it.

    Raises:
        UnknownNameError: the metric has no scores (a ``KeyError``, with the closest metric that has).
    """
    from scipy.stats import wilcoxon

    _check(frame)
    f = frame[(frame["method"] != GT) & (frame["metric"] == metric)]
    if dataset is not None:
        f = f[f["dataset"] == dataset]
    if methods is not None:
        f = f[f["method"].isin(list(methods))]
    if f.empty:
        raise UnknownNameError(f"metric with scores{' on ' + repr(dataset) if dataset else ''}", metric,
                               sorted(set(frame["metric"])), hint="give --pairwise one of the metrics the store has")  # fmt: skip
    current, totals, _ = current_scores(f, images, metrics_frame)
    hib = metric_info(metric, metrics_frame)[0]
    total = totals.set_index(["dataset", "metric"])["n_total"]
    cols = ["dataset", "metric", "a", "b", "n", "mean_diff", "p_value", "p_holm", "better"]
    out = []
    for ds, part in current.groupby("dataset", sort=True):
        wide = part.pivot_table(index="image", columns="method", values="value", aggfunc="first")
        need = int(total.get((ds, metric), 0))
        ranked = sorted(c for c in wide.columns if wide[c].notna().sum() >= need > 0)
        pairs = []
        for i, a in enumerate(ranked):
            for b in ranked[i + 1 :]:
                both = wide[[a, b]].dropna()
                x, y = both[a].to_numpy(float), both[b].to_numpy(float)
                diff = x - y
                p = float(wilcoxon(x, y).pvalue) if len(diff) and np.any(diff != 0) else 1.0
                pairs.append([ds, metric, a, b, len(diff), float(diff.mean()) if len(diff) else np.nan, p])
        if not pairs:
            continue
        adjusted = holm([r[-1] for r in pairs])
        for row, q in zip(pairs, adjusted, strict=True):
            better = "tie"
            if q < 1.0 - CONFIDENCE and hib is not None and row[5] != 0:
                better = row[2] if (row[5] > 0) == hib else row[3]
            out.append([*row, float(q), better])
    return pd.DataFrame(out, columns=cols)


def pairwise_matrix(tests: pd.DataFrame, value: str = "p_holm") -> pd.DataFrame:
    """The square method x method matrix of one dataset's :func:`pairwise_tests` (symmetric, NaN
    on the diagonal)."""
    names = sorted(set(tests["a"]) | set(tests["b"]))
    matrix = pd.DataFrame(np.nan, index=pd.Index(names, name="method"), columns=names)
    for r in tests.itertuples(index=False):
        matrix.loc[r.a, r.b] = matrix.loc[r.b, r.a] = getattr(r, value)
    return matrix


def gt_quality(frame: pd.DataFrame, *, images: pd.DataFrame | None = None) -> pd.DataFrame:
    """The VOSR paper's Table 2: mean no-reference score of each dataset's ground truth, over the
    dataset's current images.

    Returns:
        One row per dataset, one column per metric, plus ``n`` (images).
    """
    _check(frame)
    g = frame[frame["method"] == GT]
    if g.empty:
        raise ReportError("no GT scores in this store; run `screensr bench gt-quality --dataset ...` first")
    g, _, _ = current_scores(g, images)
    if g.empty:
        raise ReportError("the store's GT scores are all of images no longer in their datasets; rerun "
                         "`screensr bench gt-quality --dataset ...`")  # fmt: skip
    table = g.pivot_table(index="dataset", columns="metric", values="value", aggfunc="mean")
    table["n"] = g.groupby("dataset")["image"].nunique()
    table.columns.name = None
    return table.reset_index()


# ---------------------------------------------------------------------------- formatting
FORMATS = ("markdown", "latex", "csv", "json")


def _cell(v, digits: int) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def interval_text(mean: float, low: float, high: float, digits: int = 4) -> str:
    """``"26.9500 [26.5500, 27.3500]"``: a mean and its interval as one cell (empty for NaN)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def readable(df: pd.DataFrame, *, digits: int = 4) -> pd.DataFrame:
    """The human form of a summary-like table: ``mean, ci_low, ci_high`` as one ``mean [95% CI]``
    cell, ``n`` / ``n_total`` as one ``images`` cell (``2/3`` when incomplete), ``n_stale`` only
    when some score is stale, the direction as an arrow after the metric name.

    Tables without those columns come back unchanged. Machine formats (CSV, JSON) keep every
    number in its own column so they sort.
    """
    out = df.copy()
    if {"mean", "ci_low", "ci_high"} <= set(out.columns):
        level = f"{round(CONFIDENCE * 100)}% CI"
        at = list(out.columns).index("mean")
        text = [interval_text(m, lo, hi, digits) for m, lo, hi in zip(out["mean"], out["ci_low"], out["ci_high"], strict=True)]
        out = out.drop(columns=["mean", "ci_low", "ci_high"])
        out.insert(at, f"mean [{level}]", text)
    if {"n", "n_total"} <= set(out.columns):
        at = list(out.columns).index("n")
        text = [str(n) if n >= t else f"{n}/{t}" for n, t in zip(out["n"], out["n_total"], strict=True)]
        out = out.drop(columns=["n", "n_total"])
        out.insert(at, "images", text)
    if "n_stale" in out.columns:
        if (out["n_stale"] > 0).any():
            out = out.rename(columns={"n_stale": "stale"})
        else:
            out = out.drop(columns=["n_stale"])
    if "higher_is_better" in out.columns and "metric" in out.columns:
        arrow = {True: " ↑", False: " ↓"}
        out["metric"] = [f"{m}{arrow.get(h, '') if h is not None and h is not pd.NA else ''}"
                         for m, h in zip(out["metric"], out["higher_is_better"], strict=True)]  # fmt: skip
        out = out.drop(columns=["higher_is_better"])
    if "complete" in out.columns and "status" in out.columns:
        out = out.drop(columns=["complete"])
    return out


def format_table(df: pd.DataFrame, fmt: str = "markdown", *, digits: int = 4) -> str:
    """Render a frame as ``markdown``, ``latex`` (booktabs), ``csv`` or ``json`` (records).

    CSV and JSON keep one value per cell (means and CI bounds in their own columns), so they
    sort; Markdown and LaTeX are for reading and show :func:`readable`'s form.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(df.to_json(orient="records")), indent=1) + "\n"
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}{did_you_mean(fmt, FORMATS)}; choose one of {', '.join(FORMATS)}")
    df = readable(df, digits=digits)
    cells = [[_cell(v, digits) for v in row] for row in df.itertuples(index=False)]
    cols = [str(c) for c in df.columns]
    if fmt == "markdown":
        widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
        line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
        out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in cells]
        return "\n".join(out) + "\n"
    esc = lambda s: s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    arrows = lambda s: s.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")  # noqa: E731
    out = [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(arrows(esc(c)) for c in cols) + r" \\", r"\midrule"]
    out += [" & ".join(arrows(esc(v)) for v in r) + r" \\" for r in cells]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"
