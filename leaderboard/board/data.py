"""The board's tables: pure functions over the results store's frames, tested on their own.

The Streamlit pages and the static export only call these functions (frames in, frames out).
Inputs are the results store's frames (``benchmark.store.ResultsStore``):

- scores: one row per (dataset, image, method, metric) with a float ``value``;
- methods: one row per method (``name``, ``family``, ``description``, ``config``, ...);
- datasets: one row per dataset (``name``, ``root``, ``layout``, ``scale``, ...).

Outputs are tidy frames (one number per cell, so every column sorts) and the wide per-dataset
leaderboard table. How each metric is shown (label, unit, arrow) is :mod:`leaderboard.board.display`;
reading the store is :mod:`leaderboard.board.loading`; the Streamlit caches are
:mod:`leaderboard.board.cache`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark import report
from benchmark.plots import pareto_front as dominance_front

# GT_METHOD: the pseudo-method under which the store keeps the no-reference scores of the HR images
from benchmark.store import GT as GT_METHOD
from core.errors import UnknownNameError
from leaderboard.board import display
from leaderboard.board.display import MetricColumn, directions, order_metrics
from leaderboard.board.versions import shown_versions

# --------------------------------------------------------------------------- aggregation


def pareto_front(x: Sequence[float], y: Sequence[float], *, x_higher: bool, y_higher: bool) -> np.ndarray:
    """Which points are not dominated (PIRM 2018's perception-distortion trade-off).

    A point dominates another when it is at least as good on both axes and strictly better on
    one, "good" following each axis' direction. Points with a NaN coordinate are never on the
    front; duplicates of a front point are all on it.

    Returns:
        Boolean (N,) array, True on the front.

    Example:
        >>> pareto_front([28.0, 26.0, 25.0], [6.0, 5.0, 5.5], x_higher=True, y_higher=False).tolist()
        [True, True, False]
    """

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D and the same length, got {xs.shape} and {ys.shape}")
    ok = np.isfinite(xs) & np.isfinite(ys)
    front = np.zeros(xs.shape, dtype=bool)
    if ok.any():
        # the benchmark package's dominance test, on the points that have both coordinates
        front[ok] = dominance_front(np.stack([xs[ok], ys[ok]], axis=1), (x_higher, y_higher))
    return front


# --------------------------------------------------------------------------- tables


#: Per-metric columns of the wide table, after the mean itself (named ``"<metric> <suffix>"``).
METRIC_STATS = ("ci_low", "ci_high", "n", "N")


def leaderboard_table(
    summary: pd.DataFrame,
    dataset: str,
    columns: Sequence[MetricColumn],
    *,
    methods: pd.DataFrame | None = None,
    include: Iterable[str] | None = None,
    runs: pd.DataFrame | None = None,
    versions: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The wide leaderboard of one dataset: one row per method, the numbers of each metric.

    The comparison rule (``benchmark.report``) decides what is ranked: a method is ranked only
    when it is complete (a score for every current image) on every shown metric; the others keep
    their partial means, marked by ``status`` and by ``<m> n`` < ``<m> N``, and come last.

    Args:
        summary: output of :func:`benchmark.report.summary` (the comparison rule).
        dataset: which dataset.
        columns: metrics to show, in order.
        methods: the store's methods frame (``name``, ``family``, ...) to add the family.
        include: keep only these methods (after the filters the page applied); default all.
        runs: the store's latest runs: a method whose last run failed shows it (``status``,
            ``note``), and one that failed before any score is listed with empty cells.
        versions: ``ResultsStore.score_versions()``: the ``version`` column says which version
            of each method the dataset's scores come from (``"2.0 + 1.0"`` when they mix
            versions); without it, the methods frame's current version.
        intervals: ``benchmark.report.rank_intervals`` over the same metrics and methods: its
            aggregated rows give ``shared_rank`` (``"2-3"`` where the bootstrap rank intervals
            overlap), ``rank_low`` and ``rank_high``; without it those cells are empty.

    Returns:
        Columns ``rank, method, version, family, mean_rank, status, shared_rank, rank_low,
        rank_high`` then, per metric ``m``: ``m`` (mean),
        ``m ci_low``, ``m ci_high``, ``m n`` (images scored), ``m N`` (images in the dataset);
        then ``n`` (fewest images over the shown metrics), ``n_total`` (images in the dataset)
        and ``note`` (the last run's error, if it did not complete). ``status`` is ``complete``,
        ``incomplete``, or the last run's ``failed`` / ``aborted`` / ``partial`` / ``running`` /
        ``interrupted``. Sorted by rank; the GT pseudo-method is excluded (it has its own
        table). Empty frame (same columns) when nothing matches.
    """
    require_columns(summary, ("dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"), "summary")
    names = [c.name for c in columns]
    part = summary[
        (summary["dataset"] == dataset) & (summary["method"] != GT_METHOD) & summary["metric"].isin(names)
    ]
    keep = None if include is None else set(include)
    if keep is not None:
        part = part[part["method"].isin(keep)]
    wide_cols = ["rank", "method", "version", "family", "mean_rank", "status", "shared_rank", "rank_low", "rank_high"]
    for m in names:
        wide_cols += [m, *(f"{m} {stat}" for stat in METRIC_STATS)]
    wide_cols += ["n", "n_total", "note"]
    problems = report.run_problems(runs)
    problems = problems[(problems["dataset"] == dataset) & (problems["method"] != GT_METHOD)]
    if keep is not None:
        problems = problems[problems["method"].isin(keep)]
    if part.empty and problems.empty:
        return pd.DataFrame(columns=wide_cols)
    if "n_total" not in part.columns:  # a summary from before the rule: every group counts as complete
        part = part.assign(n_total=part["n"], complete=part["n"] > 0)
    index = sorted(set(part["method"]) | set(problems["method"]))
    table = pd.DataFrame(index=pd.Index(index, name="method"))
    pivot = part.pivot_table(index="method", columns="metric", values=["mean", "ci_low", "ci_high", "n", "n_total"],
                             aggfunc="first")  # fmt: skip
    for m in names:
        for stat, name in (("mean", m), ("ci_low", f"{m} ci_low"), ("ci_high", f"{m} ci_high"), ("n", f"{m} n"),
                           ("n_total", f"{m} N")):  # fmt: skip
            table[name] = pivot[(stat, m)].reindex(table.index) if (stat, m) in pivot.columns else np.nan
        table[f"{m} n"] = table[f"{m} n"].fillna(0).astype(int)
        # a metric the method lacks entirely still has the dataset's image count
        total = part.loc[part["metric"] == m, "n_total"].max() if (part["metric"] == m).any() else 0
        table[f"{m} N"] = table[f"{m} N"].fillna(total).astype(int)
    done = pd.DataFrame({m: (table[f"{m} n"] >= table[f"{m} N"]) & (table[f"{m} n"] > 0) for m in names}, index=table.index)
    complete = done.all(axis=1)
    table["n"] = table[[f"{m} n" for m in names]].min(axis=1).astype(int)
    table["n_total"] = table[[f"{m} N" for m in names]].max(axis=1).astype(int)
    # the rank sees only complete cells: a partial mean never competes with complete ones
    rankable = table[names].where(done)
    if any(c.higher_is_better is not None for c in columns) and complete.any():
        ranks = report.aggregate_rank(rankable, directions(columns))
    else:
        ranks = pd.DataFrame({"mean_rank": np.nan, "rank": pd.array([pd.NA] * len(table), "Int64")}, index=table.index)
    table["mean_rank"] = ranks["mean_rank"]
    table["rank"] = ranks["rank"]
    run_status = dict(zip(problems["method"], problems["status"], strict=True))
    notes = dict(zip(problems["method"], problems["error"], strict=True))
    table["status"] = [
        "complete" if complete[m] else run_status.get(m, "incomplete") for m in table.index
    ]
    table["note"] = [str(notes.get(m, "")) for m in table.index]
    table["family"] = _families(methods, table.index)
    table["version"] = _versions(methods, versions, dataset, table.index)
    boxes = None
    if intervals is not None and len(intervals):
        boxes = intervals[(intervals["dataset"] == dataset) & (intervals["metric"] == report.AGGREGATE)].set_index("method")
    ranked = table["rank"].notna()
    for col in ("shared_rank", "rank_low", "rank_high"):
        values = boxes[col].reindex(table.index) if boxes is not None else pd.Series(pd.NA, index=table.index)
        table[col] = values.where(ranked, pd.NA)  # intervals only for the methods the rule ranks
    table["shared_rank"] = table["shared_rank"].astype(object).where(table["shared_rank"].notna(), "")
    table = table.reset_index()
    table = table.sort_values(["mean_rank", "method"], kind="stable", na_position="last").reset_index(drop=True)
    return table[wide_cols]


def cell_text(table: pd.DataFrame, column: MetricColumn, *, ci: bool = True) -> list[str]:
    """The display text of one metric's cells: ``"26.95 [26.55, 27.35]"`` (mean and interval in
    one cell; ``ci=False``: the mean alone), followed by ``" (2/3 images)"`` when the method
    lacks images; empty when there is no score.
    """
    d = column.decimals
    out = []
    for mean, lo, hi, n, total in zip(table[column.name], table[f"{column.name} ci_low"], table[f"{column.name} ci_high"],
                                      table[f"{column.name} n"], table[f"{column.name} N"], strict=True):  # fmt: skip
        if pd.isna(mean):
            out.append("")
            continue
        text = report.interval_text(float(mean), float(lo), float(hi), d) if ci else f"{float(mean):.{d}f}"
        out.append(text if n >= total else f"{text} ({int(n)}/{int(total)} images)")
    return out


def gt_quality_table(summary: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """The GT-quality table (VOSR Table 2): NR scores of the HR images of each dataset.

    Returns:
        One row per dataset, one column per metric the GT pseudo-method has (means), plus
        ``n`` (images). Empty when the store has no GT scores.
    """
    part = summary[summary["method"] == GT_METHOD]
    if dataset is not None:
        part = part[part["dataset"] == dataset]
    if part.empty:
        return pd.DataFrame(columns=["dataset", "n"])
    table = part.pivot_table(index="dataset", columns="metric", values="mean", aggfunc="first")
    order = order_metrics(table.columns)
    table = table[order]
    table["n"] = part.groupby("dataset")["n"].max()
    table.columns.name = None
    return table.reset_index()


def header_labels(columns: Sequence[MetricColumn]) -> dict[str, str]:
    """Rename map from the wide table's column names to headers with direction arrows."""
    out: dict[str, str] = {"rank": "Rank", "method": "Method", "version": "Version", "family": "Family", "status": "Status",
                           "shared_rank": f"Rank ({round(report.CONFIDENCE * 100)}% interval)",
                           "rank_low": "Rank low", "rank_high": "Rank high",
                           "mean_rank": "Mean rank ↓", "n": "Images", "n_total": "Dataset images",
                           "note": "Last run"}  # fmt: skip
    for c in columns:
        out[c.name] = c.header
        out[f"{c.name} ci_low"] = f"{c.label} CI low"
        out[f"{c.name} ci_high"] = f"{c.label} CI high"
        out[f"{c.name} n"] = f"{c.label} images"
        out[f"{c.name} N"] = f"{c.label} of"
    return out


def images_text(table: pd.DataFrame) -> list[str]:
    """``"130"`` for a complete method, ``"1/3"`` for one that lacks images."""
    return [str(int(n)) if n >= total else f"{int(n)}/{int(total)}" for n, total in zip(table["n"], table["n_total"], strict=True)]


def styled_table(table: pd.DataFrame, columns: Sequence[MetricColumn], *, ci: bool = True):
    """The wide table as the page shows it: a pandas ``Styler`` over numeric cells.

    Each metric is ONE column whose cells read ``26.95 [26.55, 27.35]`` (mean and interval;
    ``ci=False``: the mean) with ``(2/3 images)`` appended for an incomplete method, while the
    underlying value stays the numeric mean, so a click on the header still sorts by number.
    The interval bounds, per-metric image counts and totals are folded into the text; the CSV and
    JSON downloads keep them as numbers (``leaderboard_table``).

    Returns:
        ``pandas.io.formats.style.Styler`` with columns ``Rank, Rank (95% interval), Method,
        Version, Family, Mean rank ↓, Status``, one header per metric (``PSNR ↑``), ``Images`` (``n`` or ``n/N``) and, when a
        shown method's last run did not complete, ``Last run`` (its error).
    """
    headers = header_labels(columns)
    keep = ["rank", "shared_rank", "method", "version", "family", "mean_rank", "status", *(c.name for c in columns)]
    shown = table[keep].reset_index(drop=True).rename(columns=headers)
    shown[headers["n"]] = images_text(table) if len(table) else []
    if len(table) and table["note"].astype(str).str.len().gt(0).any():
        shown[headers["note"]] = table["note"].astype(str).to_numpy()
    styler = shown.style.format("{:.2f}", subset=[headers["mean_rank"]], na_rep="")
    styler = styler.format(lambda v: "" if pd.isna(v) else str(int(v)), subset=[headers["rank"]])
    for c in columns:
        head = headers[c.name]
        texts = cell_text(table.reset_index(drop=True), c, ci=ci)
        by_value: dict[float, str] = {}
        clash: list[int] = []
        for i, (value, text) in enumerate(zip(shown[head], texts, strict=True)):
            if pd.isna(value):
                continue
            if by_value.setdefault(float(value), text) != text:
                clash.append(i)  # the same mean with another interval or count: its own formatter
        styler = styler.format(lambda v, lookup=by_value: "" if pd.isna(v) else lookup.get(float(v), ""), subset=[head])
        for i in clash:
            styler = styler.format(lambda _v, text=texts[i]: text, subset=pd.IndexSlice[[i], [head]])
    return styler


def filter_methods(
    methods: pd.DataFrame,
    *,
    families: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    present: Iterable[str] = (),
) -> list[str]:
    """Names of the methods in ``families`` (all when None) and ``names`` (all when None).

    ``present``: method names that have scores; those the store does not describe count as
    family ``other`` (a score is never hidden because its method lacks a description).
    """
    family = _by_name(methods, "family")
    pool = (set(family) | set(present)) - {GT_METHOD}
    if families is not None:
        wanted = set(families)
        pool = {n for n in pool if (family.get(n) or "other") in wanted}
    if names is not None:
        pool &= set(names)
    return sorted(pool)


def image_scores(scores: pd.DataFrame, dataset: str, image: str, methods: Sequence[str]) -> pd.DataFrame:
    """Per-metric scores of one image for ``methods`` (rows, in the given order) x metrics."""
    part = scores[(scores["dataset"] == dataset) & (scores["image"] == image) & scores["method"].isin(methods)]
    table = part.pivot_table(index="method", columns="metric", values="value", aggfunc="first")
    order = order_metrics(table.columns)
    table = table.reindex(index=[m for m in methods if m in table.index], columns=order)
    table.columns.name = None
    return table


def per_image(scores: pd.DataFrame, dataset: str, metric: str, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-image values of one metric on one dataset: columns ``image, method, value``."""
    part = scores[(scores["dataset"] == dataset) & (scores["metric"] == metric)]
    if methods is not None:
        part = part[part["method"].isin(list(methods))]
    return part[["image", "method", "value"]].reset_index(drop=True)


def plane_points(
    summary: pd.DataFrame, dataset: str, x: MetricColumn, y: MetricColumn, methods: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Methods on the perception-distortion plane of ``dataset``.

    Returns:
        Columns ``method, family, x, y, pareto`` (``pareto``: on the front given both axes'
        directions); methods missing either metric, or incomplete on either (comparison rule),
        are dropped.
    """
    if x.higher_is_better is None or y.higher_is_better is None:
        raise ValueError(
            f"the plane needs metrics with a known direction; {x.name if x.higher_is_better is None else y.name} "
            "has none"
        )
    part = summary[(summary["dataset"] == dataset) & (summary["method"] != GT_METHOD)]
    if "complete" in part.columns:  # the comparison rule: partial means are not placed beside complete ones
        part = part[part["complete"].astype(bool)]
    wide = part.pivot_table(index="method", columns="metric", values="mean", aggfunc="first")
    if x.name not in wide.columns or y.name not in wide.columns:
        return pd.DataFrame(columns=["method", "family", "x", "y", "pareto"])
    pts = wide[[x.name, y.name]].dropna().rename(columns={x.name: "x", y.name: "y"})
    pts["family"] = _families(methods, pts.index)
    pts["pareto"] = pareto_front(pts["x"], pts["y"], x_higher=x.higher_is_better, y_higher=y.higher_is_better)
    pts.columns.name = None
    return pts.reset_index().rename(columns={"index": "method"})[["method", "family", "x", "y", "pareto"]]


def sort_table(table: pd.DataFrame, by: str, columns: Sequence[MetricColumn]) -> pd.DataFrame:
    """Sort the wide table best first: by aggregated rank (``by="rank"``) or by one metric in its
    own direction (a metric of unknown direction sorts descending). Methods incomplete on that
    metric come after the complete ones (a partial mean never outranks a full one); missing
    values go last."""
    if by == "rank":
        return table.sort_values(["mean_rank", "method"], kind="stable", na_position="last").reset_index(drop=True)
    column = next((c for c in columns if c.name == by), None)
    if column is None:
        raise UnknownNameError("sort column", by, ["rank", *(c.name for c in columns)], hint="sort by the rank or a shown metric")
    ascending = column.higher_is_better is False
    partial = (table[f"{by} n"] < table[f"{by} N"]) if f"{by} n" in table.columns else pd.Series(False, index=table.index)
    keyed = table.assign(_partial=partial.astype(bool))
    keyed = keyed.sort_values(["_partial", by, "method"], ascending=[True, ascending, True], kind="stable",
                              na_position="last")  # fmt: skip
    return keyed.drop(columns="_partial").reset_index(drop=True)


def table_json(table: pd.DataFrame, dataset: str, columns: Sequence[MetricColumn]) -> str:
    """The wide table as JSON: the dataset, each metric's label/direction/unit, then the rows."""
    import json

    meta = [
        {"name": c.name, "label": c.label, "higher_is_better": c.higher_is_better, "reference": c.reference, "unit": c.unit}
        for c in columns
    ]
    rows = json.loads(table.to_json(orient="records"))
    return json.dumps({"dataset": dataset, "metrics": meta, "rows": rows}, indent=1)


# --------------------------------------------------------------------------- helpers


def _by_name(methods: pd.DataFrame | None, column: str) -> dict[str, Any]:
    """``{method name: its column value}`` of the store's methods frame (empty when absent)."""
    if methods is None or methods.empty or column not in methods.columns:
        return {}
    return dict(zip(methods["name"], methods[column], strict=True))


def _families(methods: pd.DataFrame | None, names: Iterable[str]) -> list[str]:
    lookup = _by_name(methods, "family")
    return [str(lookup.get(n) or "other") for n in names]


def _versions(methods: pd.DataFrame | None, versions: pd.DataFrame | None, dataset: str, names: Iterable[str]) -> list[str]:
    """The version each method's scores on ``dataset`` come from (empty when unknown)."""
    if versions is not None:
        described = methods if methods is not None and {"name", "version", "outputs"} <= set(methods.columns) else None
        shown = shown_versions(versions, described if described is not None else pd.DataFrame(
            columns=["name", "version", "outputs"]), dataset)  # fmt: skip
        return [shown[n].version_text if n in shown else "" for n in names]
    lookup = _by_name(methods, "version")
    return [str(lookup.get(n) or "") for n in names]


def require_columns(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns {missing}; it has {list(frame.columns)}")


# --------------------------------------------------------------------------- rank confidence, derived and reported


def rank_interval_table(boxes: pd.DataFrame, columns: Sequence[MetricColumn]) -> pd.DataFrame:
    """``benchmark.report.rank_intervals`` of one dataset as a method x metric table of shared ranks.

    Returns:
        Columns ``Method``, ``Aggregated`` and one header per metric (``PSNR ↑``), each cell the
        shared rank text (``"2-3"``); rows in aggregated-rank order, methods ranked on no metric
        left out, cells empty where a method is not ranked on that metric.
    """
    if boxes.empty:
        return pd.DataFrame(columns=["Method", "Aggregated", *(c.header for c in columns)])
    wide = boxes.pivot_table(index="method", columns="metric", values="shared_rank", aggfunc="first")
    order = boxes[boxes["metric"] == report.AGGREGATE].sort_values(["rank", "method"])["method"].tolist()
    order += sorted(set(wide.index) - set(order))
    out = pd.DataFrame({"Method": order})
    out["Aggregated"] = [wide.at[m, report.AGGREGATE] if report.AGGREGATE in wide.columns else "" for m in order]
    for c in columns:
        out[c.header] = [wide.at[m, c.name] if c.name in wide.columns else "" for m in order]
    return out.fillna("")


def derived_display(derived: pd.DataFrame) -> pd.DataFrame:
    """A ``benchmark.derived.derived_table`` for reading: rank, method, the score with its
    interval as one cell, then each component's mean (4 decimals) and the images counted."""
    comps = [c for c in derived.columns if c not in ("dataset", "method", "score", "ci_low", "ci_high", "rank", "n",
                                                     "complete", "components")]  # fmt: skip
    out = pd.DataFrame({
        "Rank": ["" if pd.isna(r) else str(int(r)) for r in derived["rank"]],
        "Method": derived["method"].tolist(),
        "Score ↑": [report.interval_text(s, lo, hi, 4) if not pd.isna(s) else "incomplete"
                    for s, lo, hi in zip(derived["score"], derived["ci_low"], derived["ci_high"], strict=True)],
    })  # fmt: skip
    for c in comps:
        out[display.metric_column(c).header] = [f"{v:.4f}" for v in derived[c]]
    out["Images"] = derived["n"].tolist()
    return out


def reported_display(compared: pd.DataFrame) -> pd.DataFrame:
    """A ``benchmark.reported.compare_reported`` frame for reading: the badge (✓ reproduced),
    source, method, metric, reported, measured, difference, tolerance, images, status."""
    return pd.DataFrame({
        "": ["✓" if ok else "" for ok in compared["reproduced"]],
        "Source": [f"{s} ({t})" if t else s for s, t in zip(compared["source"], compared["source_table"], strict=True)],
        "Method": compared["method"].tolist(),
        "Metric": [display.metric_column(m).header for m in compared["metric"]],
        "Reported": compared["reported"].round(4).tolist(),
        "Measured": compared["measured"].round(4).tolist(),
        "Measured - reported": compared["diff"].round(4).tolist(),
        "Largest gap": compared["max_abs_diff"].round(4).tolist(),
        "Tolerance": compared["tolerance"].tolist(),
        "Images (reported / compared)": [f"{a} / {b}" for a, b in zip(compared["n_reported"], compared["n_measured"],
                                                                      strict=True)],
        "Status": compared["status"].tolist(),
    })  # fmt: skip
