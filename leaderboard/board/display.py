"""How the board shows each metric: label, unit, decimals, direction arrow, FR/NR, shown by default.

Nothing about a metric is declared here: label, unit, decimals and "shown by default" are fields
of its ``benchmark.metrics.MetricSpec``, and the direction and FR/NR come from
``benchmark.report.metric_info`` (the store's ``metrics`` table first), so the board can never
disagree with the harness that produced the numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from benchmark import report
from benchmark.metrics import METRICS, default_label
from core.errors import UnknownNameError


@dataclasses.dataclass(frozen=True)
class MetricColumn:
    """How the leaderboard shows one metric.

    Attributes:
        name: the metric's name in the store (the harness name, e.g. ``"maniqa"``).
        label: the short header text (``"MANIQA"``).
        higher_is_better: the metric's direction; ``None`` when nobody declared it (such a
            column is shown without an arrow and left out of the aggregated rank).
        reference: ``"FR"`` (needs the HR image: a fidelity axis) or ``"NR"`` (perceptual).
        unit: unit shown in the header tooltip, e.g. ``"dB"``.
        default: shown before the user picks a metric set.
        decimals: digits shown after the point.
    """

    name: str
    label: str
    higher_is_better: bool | None
    reference: str = "NR"
    unit: str = ""
    default: bool = True
    decimals: int = 4

    @property
    def arrow(self) -> str:
        """``"↑"``, ``"↓"`` or ``""`` (direction unknown)."""
        if self.higher_is_better is None:
            return ""
        return "↑" if self.higher_is_better else "↓"

    @property
    def header(self) -> str:
        """Header text with the direction arrow, e.g. ``"LPIPS ↓"``."""
        return f"{self.label} {self.arrow}".strip()

    @property
    def fidelity(self) -> bool:
        """Whether the metric compares against the reference (x axis of the P-D plane)."""
        return self.reference == "FR"


def known_metrics(metrics_frame: pd.DataFrame | None) -> dict[str, tuple[bool | None, str]]:
    """``{name: (higher_is_better, "FR"|"NR")}`` of every metric in the store's ``metrics`` table.

    The runner writes each metric's spec there when it stores scores; every value comes from
    :func:`benchmark.report.metric_info`, the suite's one direction lookup.
    """
    if metrics_frame is None or metrics_frame.empty:
        return {}
    return {str(name): report.metric_info(str(name), metrics_frame) for name in metrics_frame["name"].unique()}


def metric_column(
    metric: str,
    known: Mapping[str, tuple[bool | None, str]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MetricColumn:
    """The ``MetricColumn`` of ``metric`` (store name).

    Label, unit, decimals and "shown by default" are the metric's ``MetricSpec`` fields (a metric
    outside the registry gets :func:`benchmark.metrics.default_label`, 4 decimals, shown); the
    direction and FR/NR are ``known`` (the store's, :func:`known_metrics`) or else
    :func:`benchmark.report.metric_info`.

    Args:
        metric: the metric's store name.
        known: directions from the store (``known_metrics``).
        overrides: replaces fields of the result.
    """
    spec = METRICS.get(metric)
    higher, ref = (known or {}).get(metric) or report.metric_info(metric)
    if spec is not None:
        column = MetricColumn(metric, spec.label, higher, ref, spec.unit, spec.shown_by_default, spec.decimals)
    else:
        column = MetricColumn(metric, default_label(metric), higher, ref)
    return dataclasses.replace(column, **dict(overrides)) if overrides else column


def metric_columns(
    metrics: Iterable[str], known: Mapping[str, tuple[bool | None, str]] | None = None
) -> list[MetricColumn]:
    """Columns for ``metrics`` in display order (:func:`order_metrics`)."""
    return [metric_column(m, known) for m in order_metrics(metrics)]


def order_metrics(metrics: Iterable[str]) -> list[str]:
    """Unique metric names in display order: the registry's order (``benchmark.metrics.METRICS``),
    then the others by name."""
    order = {name: i for i, name in enumerate(METRICS)}
    return sorted(set(metrics), key=lambda m: (order.get(m, len(order)), m))


def directions(columns: Iterable[MetricColumn]) -> dict[str, bool | None]:
    """``{metric: higher_is_better}`` of ``columns``."""
    return {c.name: c.higher_is_better for c in columns}


METRIC_SETS: tuple[str, ...] = ("Default", "Fidelity (full-reference)", "Perceptual (no-reference)", "All")
"""Named metric sets offered by the leaderboard filter (besides a custom choice)."""


def select_metric_set(columns: Sequence[MetricColumn], name: str) -> list[MetricColumn]:
    """The columns of the named metric set (``METRIC_SETS``), in the given order."""
    if name == "Default":
        return [c for c in columns if c.default]
    if name == "Fidelity (full-reference)":
        return [c for c in columns if c.fidelity]
    if name == "Perceptual (no-reference)":
        return [c for c in columns if not c.fidelity]
    if name == "All":
        return list(columns)
    raise UnknownNameError("metric set", name, METRIC_SETS)
