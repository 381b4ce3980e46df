"""How the board shows each metric: label, unit, direction arrow, FR/NR, shown by default.

Directions and FR/NR come from the benchmark (the store's ``metrics`` table, then the metric
registry), so the board can never disagree with the harness that produced the numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd


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


# Presentation of the metrics the suite computes: (label, unit, default shown, decimals).
# Directions and FR/NR are NOT declared here: they come from ``benchmark.metrics`` so that the
# leaderboard can never disagree with the harness that produced the numbers.
COLUMNS: dict[str, tuple[str, str, bool, int]] = {
    "psnr": ("PSNR", "dB", True, 2),
    "ssim": ("SSIM", "", True, 4),
    "ms_ssim": ("MS-SSIM", "", False, 4),
    "lpips": ("LPIPS", "", True, 4),
    "dists": ("DISTS", "", True, 4),
    "niqe": ("NIQE", "", True, 4),
    "musiq": ("MUSIQ", "", True, 2),
    "maniqa": ("MANIQA", "", True, 4),  # the harness' maniqa is pyiqa's maniqa-pipal (as papers use)
    "clipiqa": ("CLIPIQA", "", True, 4),
    "topiq_nr": ("TOPIQ-NR", "", True, 4),
    "topiq_fr": ("TOPIQ-FR", "", False, 4),
    "afine_nr": ("AFINE-NR", "", True, 4),
    "afine_fr": ("AFINE-FR", "", False, 4),
    "afine_all": ("AFINE", "", False, 4),
}


def known_metrics(metrics_frame: pd.DataFrame | None) -> dict[str, tuple[bool, str]]:
    """``{name: (higher_is_better, "FR"|"NR")}`` from the store's ``metrics`` table.

    The runner writes each metric's spec there when it stores scores, so the store is the one
    place directions come from; metrics missing there fall back to ``benchmark.metrics``.
    """
    if metrics_frame is None or metrics_frame.empty:
        return {}
    return {
        str(r.name): (bool(r.higher_is_better), str(r.kind).upper())
        for r in metrics_frame[["name", "higher_is_better", "kind"]].itertuples(index=False)
    }


def _spec_direction(metric: str) -> tuple[bool | None, str]:
    """(higher_is_better, "FR"/"NR") from the benchmark's metric registry, if it has the metric.

    Only the registry: other pyiqa names are resolved by importing pyiqa (seconds), and the
    runner records every metric it computes in the store's ``metrics`` table anyway.
    """
    from benchmark.metrics import METRICS

    spec = METRICS.get(metric)
    if spec is None:
        return None, "NR"
    return bool(spec.higher_is_better), spec.kind


def metric_column(
    metric: str,
    known: Mapping[str, tuple[bool, str]] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> MetricColumn:
    """The ``MetricColumn`` of ``metric`` (store name).

    Args:
        metric: the metric's store name.
        known: directions from the store (``known_metrics``); else the benchmark spec is used.
        overrides: replaces fields of the result.
    """
    label, unit, default, decimals = COLUMNS.get(metric, (metric.upper(), "", True, 4))
    higher, ref = (known or {}).get(metric) or _spec_direction(metric)
    column = MetricColumn(metric, label, higher, ref, unit, default, decimals)
    return dataclasses.replace(column, **dict(overrides)) if overrides else column


def metric_columns(
    metrics: Iterable[str], known: Mapping[str, tuple[bool, str]] | None = None
) -> list[MetricColumn]:
    """Columns for ``metrics`` in display order: declared metrics first (``COLUMNS`` order)."""
    return [metric_column(m, known) for m in order_metrics(metrics)]


def order_metrics(metrics: Iterable[str]) -> list[str]:
    """Unique metric names in display order: ``COLUMNS`` order, then the others by name."""
    order = {name: i for i, name in enumerate(COLUMNS)}
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
    raise ValueError(f"unknown metric set {name!r}; choose one of {list(METRIC_SETS)}")
