"""Reported results: published numbers with their citation, kept beside the measured ones.

A reported result is a row with a citation: dataset, method, metric, value, and where it comes
from (``source`` paper, ``table``, ``link`` DOI or URL, the ``protocol`` as the source states it,
``n`` images averaged). A row with an ``image`` is a published per-image value (OSEDiff publishes
its per-image DRealSR scores); without one it is a table's mean. ``screensr bench import-reported``
puts them in the store's ``reported`` table; they never enter ``ResultsStore.scores_frame`` and so
never any measured mean, rank or interval.

:func:`compare_reported` sets them beside what the suite measured and says whether the suite
reproduced each one: within the metric's ``MetricSpec.reproduce_tol`` plus half a unit of the
last digit the source printed. Per-image rows are compared image by image on the images both
have (every shared image must agree); a mean is compared with the measured mean only when it is
over the same number of images (else the status says the image sets differ).

Files (CSV or YAML, UTF-8):

- CSV, one row per number: ``dataset, method, metric, value, source`` and optionally ``image,
  n, table, link, protocol, note, decimals``. ``decimals`` defaults to the digits printed in the
  ``value`` cell.
- YAML: a mapping whose keys other than ``rows`` are defaults for every row, and ``rows``: a list
  of mappings with the same keys as the CSV columns. Unknown keys are refused, with the closest
  name.

The curated files ship in ``benchmark/data/reported/`` (:func:`shipped_files`; attribution in its
README): the VOSR appendix tables and OSEDiff's published per-image DRealSR scores.

Example:
    >>> rows = parse_rows([{"dataset": "RealSR", "method": "GT", "metric": "niqe", "value": "6.1167",
    ...                     "source": "VOSR appendix", "table": "2"}], where="example")
    >>> rows[0].decimals, rows[0].source_table
    (4, '2')
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.metrics import get_metric
from benchmark.report import current_scores
from benchmark.store import ResultsStore
from core.config import from_dict, read_mapping
from core.errors import UnknownNameError, UserError, did_you_mean

#: Where the curated files live (package data).
SHIPPED_DIR = Path(__file__).with_name("data") / "reported"

#: The keys a file's rows may have (``table`` is stored as ``source_table``).
COLUMNS = ("dataset", "method", "metric", "value", "source", "image", "n", "table", "link", "protocol", "note",
           "decimals")  # fmt: skip

#: Statuses of :func:`compare_reported`.
REPRODUCED = "reproduced"
DIFFERS = "differs"
OTHER_IMAGES = "other images"
NOT_MEASURED = "not measured"

COMPARE_COLUMNS = ["source", "source_table", "dataset", "method", "metric", "reported", "measured", "diff",
                   "max_abs_diff", "tolerance", "n_reported", "n_measured", "status", "reproduced", "link",
                   "protocol"]  # fmt: skip


class ReportedFileError(UserError, ValueError):
    """A reported-results file that cannot be read (names the file, the row and the fix)."""


@dataclasses.dataclass(frozen=True)
class ReportedResult:
    """One published number.

    Attributes:
        dataset, method, metric: what it is of (metric: a harness name, e.g. ``psnr``; method
            ``GT`` for the no-reference scores of the ground truth, as the store keeps them).
        value: the number as published.
        source: the paper or repository that publishes it.
        image: the pair id of a per-image value; ``""`` for a table's mean.
        n: the images the source averaged (0: not stated).
        source_table: the table (or log) in the source.
        link: DOI or URL.
        protocol: the evaluation protocol as the source states it.
        note: anything else (caveats).
        decimals: digits printed after the point (the rounding the comparison allows for).
    """

    dataset: str
    method: str
    metric: str
    value: float
    source: str
    image: str = ""
    n: int = 0
    source_table: str = ""
    link: str = ""
    protocol: str = ""
    note: str = ""
    decimals: int = 6

    def __post_init__(self) -> None:
        for name in ("dataset", "method", "metric", "source"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} is empty; every reported number names its {name}")
        if not math.isfinite(self.value):
            raise ValueError(f"value {self.value} is not a finite number")
        if self.n < 0 or not 0 <= self.decimals <= 12:
            raise ValueError(f"n must be >= 0 and decimals in 0..12, got n={self.n}, decimals={self.decimals}")

    def row(self) -> dict[str, Any]:
        """The store's row (``ResultsStore.add_reported``)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading


def printed_decimals(text: str) -> int:
    """Digits after the point in a number as printed: ``"6.1167"`` -> 4, ``"28"`` -> 0."""
    text = str(text).strip().lower()
    mantissa, _, exponent = text.partition("e")
    digits = len(mantissa.partition(".")[2])
    return max(0, digits - int(exponent)) if exponent else digits


def parse_rows(rows: Iterable[Mapping[str, Any]], *, where: str, defaults: Mapping[str, Any] | None = None,
               overrides: Mapping[str, str] | None = None) -> list[ReportedResult]:  # fmt: skip
    """Typed, checked :class:`ReportedResult` rows from mappings (CSV rows or YAML items).

    Args:
        rows: one mapping per number; the key ``table`` is accepted for ``source_table``, empty
            cells mean the default.
        where: the file, for messages.
        defaults: values for keys a row leaves out (the YAML file's top-level keys).
        overrides: values that replace the rows' own (``--dataset``, ``--method`` on import).

    Raises:
        ReportedFileError: a row with an unknown key, a missing or bad value, or an unknown metric
            (naming the file, the row and the fix).
    """
    out = []
    for i, raw in enumerate(rows, start=1):
        unknown = [k for k in [*raw, *(defaults or {})] if k not in COLUMNS]
        if unknown:
            raise ReportedFileError(f"{where}: row {i}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], COLUMNS)}; "
                                    f"the columns are {', '.join(COLUMNS)}")  # fmt: skip
        data = {**(defaults or {}), **{k: v for k, v in raw.items() if v is not None and str(v).strip() != ""}}
        if "table" in data:
            data["source_table"] = data.pop("table")
        data.update(overrides or {})
        text = str(data.get("value", ""))
        try:
            if "value" in data:
                data["value"] = float(data["value"])
            if "decimals" not in data and text:
                data["decimals"] = printed_decimals(text)
            for key in ("n", "decimals"):
                if key in data:
                    data[key] = int(data[key])
            for key in ("dataset", "method", "metric", "source", "image", "source_table", "link", "protocol", "note"):
                if key in data:
                    data[key] = str(data[key]).strip()
        except ValueError as exc:
            raise ReportedFileError(f"{where}: row {i}: {exc}; values must be numbers (value, n, decimals)") from exc
        try:
            record = from_dict(ReportedResult, data, where=f"{where}: row {i}")
            get_metric(record.metric)
        except UnknownNameError as exc:
            raise ReportedFileError(f"{where}: row {i}: {exc}") from exc
        except ValueError as exc:  # ConfigError and the dataclass's own checks
            raise ReportedFileError(str(exc) if str(exc).startswith(where) else f"{where}: row {i}: {exc}") from exc
        out.append(record)
    return out


def read_reported(path: str | os.PathLike[str], *, overrides: Mapping[str, str] | None = None) -> list[ReportedResult]:
    """The reported numbers of a CSV or YAML file (format in the module docstring), or of a
    shipped file named without its folder (``vosr_appendix``, see :func:`shipped_files`).

    Raises:
        ReportedFileError: the file is missing, of an unknown type, empty, or a row is bad.
    """
    file = resolve_file(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        with open(file, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        records = parse_rows(rows, where=str(file), overrides=overrides)
    elif suffix in (".yaml", ".yml"):
        data = read_mapping(file)
        items = data.pop("rows", None)
        if not isinstance(items, list) or not all(isinstance(r, Mapping) for r in items):
            raise ReportedFileError(f"{file}: needs `rows:`, a list of mappings (dataset, method, metric, value, ...)")
        records = parse_rows(items, where=str(file), defaults=data, overrides=overrides)
    else:
        raise ReportedFileError(f"{file}: reported results are read from .csv or .yaml/.yml files, not {suffix or 'no suffix'}")
    if not records:
        raise ReportedFileError(f"{file}: holds no reported number")
    return records


def shipped_files() -> dict[str, Path]:
    """``{name: path}`` of the curated files in ``benchmark/data/reported``."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.csv"))}


def resolve_file(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists, else the shipped file of that name.

    Raises:
        ReportedFileError: neither (with the shipped names).
    """
    file = Path(path)
    if file.is_file():
        return file
    shipped = shipped_files()
    if str(path) in shipped:
        return shipped[str(path)]
    names = ", ".join(shipped)
    raise ReportedFileError(f"reported-results file {path} does not exist; give a .csv/.yaml file or a shipped one: {names}")


def import_reported(store: ResultsStore, records: Iterable[ReportedResult]) -> int:
    """Write ``records`` to the store's ``reported`` table (idempotent); returns how many."""
    return store.add_reported(r.row() for r in records)


# --------------------------------------------------------------------------- comparing


def tolerance(metric: str, decimals: int) -> float:
    """The largest ``|measured - reported|`` that counts as reproduced: the metric's
    ``MetricSpec.reproduce_tol`` plus half a unit of the last printed digit."""
    return float(get_metric(metric).reproduce_tol) + 0.5 * 10.0 ** (-int(decimals))


def compare_reported(
    reported: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    images: pd.DataFrame | None = None,
    metrics_frame: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Reported numbers beside the measured ones, with the difference and whether they agree.

    Args:
        reported: ``ResultsStore.reported_frame()``.
        scores: per-image measured scores (``dataset, image, method, metric, value``).
        images, metrics_frame: the store's image lists and metric rows (comparison rule: only
            the datasets' current images count).

    Returns:
        One row per reported number group (a table's mean, or one source's per-image values of a
        dataset x method x metric), columns :data:`COMPARE_COLUMNS`: ``reported`` and ``measured``
        (means over the compared images), ``diff`` (measured - reported), ``max_abs_diff`` (the
        largest per-image gap; the mean gap for a table's mean), ``tolerance``, ``n_reported``
        (images the number covers: the source's ``n``, or the per-image rows), ``n_measured``
        (images compared), ``status``: ``reproduced`` (within tolerance on every compared
        image), ``differs``, ``other images`` (a mean over a different number of images than
        measured: not comparable) or ``not measured``; ``reproduced`` is the badge (bool).
    """
    if reported.empty:
        return pd.DataFrame(columns=COMPARE_COLUMNS)
    current = scores
    if len(scores):
        current, _, _ = current_scores(scores, images, metrics_frame)
        current = current[np.isfinite(current["value"].to_numpy(dtype=np.float64))]
    measured = current.set_index(["dataset", "method", "metric", "image"])["value"] if len(current) else None
    rows = []
    keys = ["source", "source_table", "dataset", "method", "metric"]
    for (source, table, dataset, method, metric), g in reported.groupby(keys, sort=True):
        link, protocol = str(g["link"].iloc[0]), str(g["protocol"].iloc[0])
        mine = pd.Series(dtype=float)
        if measured is not None and (dataset, method, metric) in measured.index.droplevel("image"):
            mine = measured.xs((dataset, method, metric), level=["dataset", "method", "metric"])
        per_image = g[g["image"] != ""]
        means = g[g["image"] == ""]
        if len(per_image):
            published = per_image.set_index("image")["value"]
            shared = published.index.intersection(mine.index)
            tol = tolerance(metric, int(per_image["decimals"].max()))
            if len(shared):
                gap = mine.loc[shared] - published.loc[shared]
                diff, worst = float(gap.mean()), float(gap.abs().max())
                status = REPRODUCED if worst <= tol else DIFFERS
                rep_mean, mea_mean = float(published.loc[shared].mean()), float(mine.loc[shared].mean())
            else:
                diff = worst = mea_mean = float("nan")
                rep_mean, status = float(published.mean()), NOT_MEASURED
            rows.append([source, table, dataset, method, metric, rep_mean, mea_mean, diff, worst, tol, len(published),
                         len(shared), status, status == REPRODUCED, link, protocol])  # fmt: skip
        for r in means.itertuples(index=False):
            tol = tolerance(metric, int(r.decimals))
            if len(mine):
                mea_mean = float(mine.mean())
                diff = mea_mean - float(r.value)
                if r.n and int(r.n) != len(mine):
                    status = OTHER_IMAGES
                else:
                    status = REPRODUCED if abs(diff) <= tol else DIFFERS
            else:
                mea_mean = diff = float("nan")
                status = NOT_MEASURED
            rows.append([source, table, dataset, method, metric, float(r.value), mea_mean, diff, abs(diff), tol,
                         int(r.n), len(mine), status, status == REPRODUCED, link, protocol])  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
