"""Plots over scores (matplotlib, Agg): perception-distortion scatter with the Pareto front, and
per-image score distributions. Files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import ReportError, direction
from benchmark.store import GT
from core.atomic import atomic_path


def pareto_front(points: np.ndarray, higher_is_better: tuple[bool, bool]) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    Args:
        points: ``(N, 2)`` values.
        higher_is_better: the direction of each column.

    A point is dominated when another is at least as good in both columns and better in one.
    """
    p = np.asarray(points, dtype=float) * np.where(higher_is_better, 1.0, -1.0)  # all "higher is better"
    keep = np.ones(len(p), dtype=bool)
    for i in range(len(p)):
        others = np.delete(p, i, axis=0)
        dominated = np.any(np.all(others >= p[i], axis=1) & np.any(others > p[i], axis=1))
        keep[i] = not dominated
    return keep


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    return path


def perception_distortion(
    frame: pd.DataFrame, path: str | os.PathLike[str], *, x: str = "psnr", y: str = "lpips", dataset: str | None = None
) -> Path:
    """Scatter of method means (``x``: a distortion metric, ``y``: a perceptual one), the Pareto
    front drawn as a line, one panel per dataset. Returns the written file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = frame[(frame["method"] != GT) & frame["metric"].isin([x, y])]
    if dataset is not None:
        f = f[f["dataset"] == dataset]
    means = f.groupby(["dataset", "method", "metric"])["value"].mean().unstack("metric")
    if x not in means or y not in means:
        raise ReportError(f"perception-distortion plot needs scores for both {x!r} and {y!r}")
    means = means.dropna(subset=[x, y])
    dirs = (direction(x), direction(y))
    if None in dirs:
        raise ReportError(f"metric direction unknown for {x!r} or {y!r}; plot registered metrics (`screensr bench metrics`)")
    datasets = sorted(means.index.get_level_values("dataset").unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        sub = means.loc[d]
        pts = sub[[x, y]].to_numpy()
        front = pareto_front(pts, dirs)  # type: ignore[arg-type]
        ax.scatter(pts[:, 0], pts[:, 1], c=np.where(front, "tab:red", "tab:gray"))
        for name, (px, py) in zip(sub.index, pts, strict=True):
            ax.annotate(str(name), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
        order = np.argsort(pts[front, 0])
        ax.plot(pts[front, 0][order], pts[front, 1][order], "r--", lw=1, label="Pareto front")
        ax.set_xlabel(f"{x} ({'higher' if dirs[0] else 'lower'} is better)")
        ax.set_ylabel(f"{y} ({'higher' if dirs[1] else 'lower'} is better)")
        ax.set_title(d)
        ax.legend(loc="best", fontsize=8)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def distribution_figure(frame: pd.DataFrame, *, metric: str, dataset: str | None = None):
    """The figure of ``distributions``: box plots per method (and GT), one panel per dataset.

    Each panel's y axis names the metric and its direction; the legend explains the markers
    (triangle: mean, line: median, box: quartiles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = frame[frame["metric"] == metric]
    if dataset is not None:
        f = f[f["dataset"] == dataset]
    if f.empty:
        raise ReportError(f"no scores for metric {metric!r}; run `screensr bench run --metrics {metric}` first")
    datasets = sorted(f["dataset"].unique())
    higher = direction(metric)
    ylabel = metric if higher is None else f"{metric} ({'higher' if higher else 'lower'} is better)"
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        sub = f[f["dataset"] == d]
        names = sorted(sub["method"].unique())
        parts = ax.boxplot([sub.loc[sub["method"] == n, "value"].to_numpy() for n in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{d}: {metric}")
        ax.legend([parts["means"][0], parts["medians"][0]], ["mean", "median"], loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def distributions(frame: pd.DataFrame, path: str | os.PathLike[str], *, metric: str, dataset: str | None = None) -> Path:
    """Box plots of the per-image scores of ``metric`` per method (and GT), one panel per dataset."""
    import matplotlib.pyplot as plt

    fig = distribution_figure(frame, metric=metric, dataset=dataset)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
