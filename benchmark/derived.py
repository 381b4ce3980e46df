"""Derived scores: numbers the field computes from several metrics' means (the NTIRE 2025 score).

A derived score is never stored: it is computed from the stored per-image scores of its
components each time a report or the board needs it, so it always matches the components shown
beside it. Like the challenge, it combines the dataset means of the components (not per-image
combinations), and only for methods complete on every component (the comparison rule of
:mod:`benchmark.report`). Its interval is the percentile bootstrap of the same formula over
resampled images, every component resampled with the same images (paired), with the suite's one
bootstrap setting (``benchmark.report.N_BOOT``, ``SEED``, ``CONFIDENCE``).

Example:
    >>> ntire = get_derived("ntire2025")
    >>> means = {"lpips": 0.2, "dists": 0.1, "clipiqa": 0.7, "maniqa_koniq": 0.6, "musiq": 70.0, "niqe": 4.0}
    >>> round(ntire.combine(means), 6)
    4.3
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.metrics import PRESETS
from benchmark.report import CONFIDENCE, N_BOOT, SEED, current_scores
from benchmark.store import GT
from core.errors import UnknownNameError


def _ntire2025(m: Mapping[str, float]) -> float:
    # NTIRE 2025 image SR (x4) challenge, perception track (zhengchen1999/NTIRE2025_ImageSR_x4,
    # README "Weighted score for Perception Quality Track", report arXiv:2504.14582), on the
    # averaged IQA scores:
    # (1 - LPIPS) + (1 - DISTS) + CLIPIQA + MANIQA + MUSIQ / 100 + max(0, (10 - NIQE) / 10)
    return (
        (1.0 - m["lpips"])
        + (1.0 - m["dists"])
        + m["clipiqa"]
        + m["maniqa_koniq"]
        + m["musiq"] / 100.0
        + max(0.0, (10.0 - m["niqe"]) / 10.0)
    )


@dataclass(frozen=True)
class DerivedMetric:
    """A score computed from the dataset means of other metrics.

    Attributes:
        name: the name reports and ``--derived`` use.
        components: the registry metrics it combines (``benchmark.metrics.METRICS`` names).
        formula: ``{component: dataset mean} -> score``.
        higher_is_better: the score's direction.
        label: the short header.
        source: where the formula is published.
    """

    name: str
    components: tuple[str, ...]
    formula: Callable[[Mapping[str, float]], float]
    higher_is_better: bool
    label: str
    source: str

    def combine(self, means: Mapping[str, float]) -> float:
        """The score of one method from its component means.

        Raises:
            KeyError: a component is missing from ``means``.
        """
        missing = [c for c in self.components if c not in means]
        if missing:
            raise KeyError(f"{self.name} needs the means of {missing}; got {sorted(means)}")
        return float(self.formula(means))


DERIVED: dict[str, DerivedMetric] = {
    d.name: d
    for d in (
        DerivedMetric(
            "ntire2025",
            PRESETS["ntire2025"].metrics,
            _ntire2025,
            True,
            "NTIRE 2025 score",
            "NTIRE 2025 Challenge on Image Super-Resolution (x4), perception track (arXiv:2504.14582; "
            "zhengchen1999/NTIRE2025_ImageSR_x4): (1-LPIPS) + (1-DISTS) + CLIPIQA + MANIQA + MUSIQ/100 "
            "+ max(0, (10-NIQE)/10) on the averaged scores",
        ),
    )
}


def get_derived(name: str) -> DerivedMetric:
    """The derived score ``name``.

    Raises:
        UnknownNameError: not a derived score (with the closest name).
    """
    if name not in DERIVED:
        raise UnknownNameError("derived score", name, DERIVED)
    return DERIVED[name]


#: Columns of :func:`derived_table` before the component means.
DERIVED_COLUMNS = ["dataset", "method", "score", "ci_low", "ci_high", "rank", "n", "complete"]


def derived_table(
    frame: pd.DataFrame,
    name: str = "ntire2025",
    *,
    images: pd.DataFrame | None = None,
    metrics_frame: pd.DataFrame | None = None,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """The derived score of every (dataset, method) that has its components, with the components.

    Args:
        frame: per-image scores (``dataset, image, method, metric, value``).
        name: the derived score (:data:`DERIVED`).
        images, metrics_frame: the store's image lists and metric rows (comparison rule).
        confidence, n_boot, seed: the bootstrap (the suite's one setting by default).

    Returns:
        Columns :data:`DERIVED_COLUMNS`, then one column per component (its dataset mean: the
        numbers the score was computed from) and ``components`` (the same as one JSON text).
        ``score`` and its interval are NaN and ``rank`` NA for a method incomplete on some
        component (``complete`` False: its ``n`` is the images it has for every component).
        ``rank`` is 1 = best among the complete methods of the dataset (ties share the lowest).
        Sorted by dataset, rank. Empty (same columns) when no method has every component.
    """
    spec = get_derived(name)
    comps = list(spec.components)
    columns = [*DERIVED_COLUMNS, *comps, "components"]
    f = frame[(frame["method"] != GT) & frame["metric"].isin(comps)]
    if f.empty:
        return pd.DataFrame(columns=columns)
    current, totals, _ = current_scores(f, images, metrics_frame)
    current = current[np.isfinite(current["value"].to_numpy(dtype=np.float64))]
    total = totals.set_index(["dataset", "metric"])["n_total"]
    rows = []
    for (dataset, method), g in current.groupby(["dataset", "method"], sort=True):
        if set(g["metric"]) != set(comps):
            continue
        wide = g.pivot_table(index="image", columns="metric", values="value", aggfunc="first")[comps]
        counts = wide.notna().sum()
        complete = all(int(counts[c]) >= int(total.get((dataset, c), 0)) for c in comps)
        means = {c: float(wide[c].mean()) for c in comps}
        shared = wide.dropna()  # the images every component has: the paired resampling set
        score = spec.combine(means) if complete else float("nan")
        low = high = float("nan")
        if complete and len(shared):
            low, high = _bootstrap(spec, shared, confidence=confidence, n_boot=n_boot, seed=seed)
        rows.append({"dataset": dataset, "method": method, "score": score, "ci_low": low, "ci_high": high,
                     "n": int(len(shared)), "complete": bool(complete), **means,
                     "components": json.dumps({c: round(means[c], 6) for c in comps}, sort_keys=True)})  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    signed = out["score"] * (-1.0 if spec.higher_is_better else 1.0)  # smaller = better
    out["rank"] = signed.where(out["complete"]).groupby(out["dataset"]).rank(method="min").astype("Int64")
    out = out.sort_values(["dataset", "rank", "method"], na_position="last", kind="stable").reset_index(drop=True)
    return out[columns]


def _bootstrap(
    spec: DerivedMetric, wide: pd.DataFrame, *, confidence: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of the score over images resampled jointly for every component."""
    values = wide.sort_index().to_numpy(dtype=np.float64)  # (n, components), image order
    n = values.shape[0]
    if n == 1:
        score = spec.combine(dict(zip(wide.columns, values[0], strict=True)))
        return score, score
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)  # (B, n)
    means = weights @ values / n  # (B, components)
    scores = np.array([spec.combine(dict(zip(wide.columns, row, strict=True))) for row in means])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(scores, [alpha, 1.0 - alpha])
    return float(low), float(high)
