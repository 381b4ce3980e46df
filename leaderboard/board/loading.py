"""Reading the results store into a ``Board``: the scores, the store's description frames and the
summary under the comparison rule; protocol filtering; what the method page shows.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from benchmark import report
from benchmark.derived import derived_table
from benchmark.metrics import PROTOCOLS, get_metric
from benchmark.report import CONFIDENCE, N_BOOT
from benchmark.reported import compare_reported
from benchmark.store import FAMILIES, ResultsStore
from core.errors import UnknownNameError
from leaderboard.board.data import GT_METHOD, filter_methods, images_text, leaderboard_table, require_columns
from leaderboard.board.display import (
    METRIC_SETS,
    MetricColumn,
    known_metrics,
    metric_columns,
    order_metrics,
    select_metric_set,
)

SCORE_KEYS = ["dataset", "image", "method", "metric", "value", "settings_hash"]

ALL_PROTOCOLS = "any"
"""Protocol choice that keeps every stored score, whatever settings computed it."""


def protocol_names() -> list[str]:
    """The benchmark's named evaluation protocols (``benchmark.metrics.PROTOCOLS``)."""

    return list(PROTOCOLS)


def protocol_scores(scores: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The scores computed exactly as ``protocol`` prescribes.

    A protocol (``benchmark.metrics.PROTOCOLS``, e.g. ``osediff``) names a metric set with pinned
    settings; a score belongs to it when its metric is in the set and its ``settings_hash`` is the
    hash of that metric's pinned settings (same pyiqa options, size policy and pyiqa version).
    So a PSNR computed with ``crop_border=4``, or a MANIQA from another pyiqa release, is never
    mixed into a table that claims the paper protocol. ``ALL_PROTOCOLS`` keeps everything.
    """
    if protocol == ALL_PROTOCOLS:
        return scores

    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, [ALL_PROTOCOLS, *PROTOCOLS])
    require_columns(scores, ("metric", "settings_hash"), "scores")
    wanted = {m: get_metric(m).settings_hash for m in PROTOCOLS[protocol]}
    return scores[scores["metric"].map(wanted) == scores["settings_hash"]]


@dataclasses.dataclass(frozen=True)
class Board:
    """Everything the pages read, loaded once per time-to-live (treat as read-only).

    Attributes:
        url: the results store's SQLAlchemy URL.
        scores: per-image scores, columns ``dataset, image, method, metric, value, settings_hash``.
        summary: ``benchmark.report.summary`` of the scores (protocol ``ALL_PROTOCOLS``).
        methods, datasets, metrics: the store's description frames.
        known: ``{metric: (higher_is_better, "FR"|"NR")}`` from the store.
        images: the store's ``dataset_images`` (the images each dataset holds now).
        runs: the store's latest run per (dataset, method), with status and error.
        reported: the store's published numbers (``ResultsStore.reported_frame``), never mixed
            into ``scores``.
    """

    url: str
    scores: pd.DataFrame
    summary: pd.DataFrame
    methods: pd.DataFrame
    datasets: pd.DataFrame
    metrics: pd.DataFrame
    known: dict[str, tuple[bool | None, str]]
    images: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=["dataset", "image", "has_reference"]))
    runs: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=["dataset", "method", "status", "error"]))
    reported: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=ResultsStore.REPORTED_COLUMNS))
    _memo: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    # one lock per memo key: sessions of one server share the board, and two of them asking for
    # the same table at once compute it once, the later one waiting for the first
    _locks: dict[str, threading.Lock] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    _locks_guard: threading.Lock = dataclasses.field(default_factory=threading.Lock, compare=False, repr=False)

    def summary_for(self, protocol: str = ALL_PROTOCOLS) -> pd.DataFrame:
        """``benchmark.report.summary`` of the scores of one protocol (memoised per board)."""
        if protocol == ALL_PROTOCOLS:
            return self.summary
        return self._memoised(f"summary:{protocol}", lambda: report.summary(
            protocol_scores(self.scores, protocol), images=self.images, runs=self.runs, metrics=self.metrics))  # fmt: skip

    def score_versions(self) -> pd.DataFrame:
        """``ResultsStore.score_versions()``: which method version each dataset's current scores
        come from; read from the store once per board (a refreshed board reads it again)."""
        return self._memoised("score_versions", lambda: _read_store(self.url, lambda store: store.score_versions()))

    def all_versions(self) -> pd.DataFrame:
        """``ResultsStore.methods_frame(all_versions=True)`` (every version row), read once per board."""
        return self._memoised("all_versions", lambda: _read_store(self.url, lambda store: store.methods_frame(all_versions=True)))

    def _memoised(self, key: str, compute):
        """``compute()`` once per board and key, also across threads."""
        if key in self._memo:
            return self._memo[key]
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                self._memo[key] = compute()
        return self._memo[key]

    def dataset_scores(self, dataset: str, protocol: str = ALL_PROTOCOLS) -> pd.DataFrame:
        """The per-image scores of one dataset (of one protocol), memoised."""
        def compute() -> pd.DataFrame:
            part = self.scores[self.scores["dataset"] == dataset]
            return part if protocol == ALL_PROTOCOLS else protocol_scores(part, protocol)

        return self._memoised(f"scores:{dataset}:{protocol}", compute)

    def rank_intervals(self, dataset: str, metrics: Sequence[str], include: Iterable[str] | None = None,
                       protocol: str = ALL_PROTOCOLS) -> pd.DataFrame:  # fmt: skip
        """``benchmark.report.rank_intervals`` of one dataset over ``metrics`` among ``include``
        (default every method), memoised per board."""
        chosen = None if include is None else sorted(set(include))
        key = f"ranks:{dataset}:{protocol}:{','.join(metrics)}:{','.join(chosen) if chosen is not None else '*'}"
        return self._memoised(key, lambda: report.rank_intervals(
            self.dataset_scores(dataset, protocol), list(metrics), images=self.images, metrics_frame=self.metrics,
            methods=chosen))  # fmt: skip

    def reported_vs_measured(self, dataset: str) -> pd.DataFrame:
        """``benchmark.reported.compare_reported`` of the dataset's published numbers, memoised."""
        return self._memoised(f"reported:{dataset}", lambda: compare_reported(
            self.reported[self.reported["dataset"] == dataset], self.dataset_scores(dataset), images=self.images,
            metrics_frame=self.metrics))  # fmt: skip

    def derived(self, dataset: str, name: str = "ntire2025") -> pd.DataFrame:
        """``benchmark.derived.derived_table`` of one dataset, memoised."""
        return self._memoised(f"derived:{dataset}:{name}", lambda: derived_table(
            self.dataset_scores(dataset), name, images=self.images, metrics_frame=self.metrics))  # fmt: skip

    def pairwise(self, dataset: str, metric: str) -> pd.DataFrame:
        """``benchmark.report.pairwise_tests`` of one dataset and metric, memoised."""
        return self._memoised(f"pairwise:{dataset}:{metric}", lambda: report.pairwise_tests(
            self.dataset_scores(dataset), metric, dataset, images=self.images, metrics_frame=self.metrics))  # fmt: skip

    def table(
        self,
        dataset: str,
        columns: Sequence[MetricColumn],
        *,
        summary: pd.DataFrame | None = None,
        include: Iterable[str] | None = None,
        protocol: str = ALL_PROTOCOLS,
    ) -> pd.DataFrame:
        """``leaderboard_table`` of ``dataset`` with this board's methods, runs, score versions and
        the bootstrap rank intervals of the ranked metrics (the shown ones of known direction)."""
        ranked = [c.name for c in columns if c.higher_is_better is not None]
        intervals = self.rank_intervals(dataset, ranked, include, protocol) if ranked else None
        return leaderboard_table(self.summary if summary is None else summary, dataset, columns, methods=self.methods,
                                 include=include, runs=self.runs, versions=self.score_versions(),
                                 intervals=intervals)  # fmt: skip

    def present_families(self) -> list[str]:
        """The method families the Leaderboard's family filter offers (and selects by default)."""
        return [f for f in FAMILIES if f in {*self.methods["family"], "other"}]

    def default_view(self, dataset: str) -> tuple[list[MetricColumn], list[str]]:
        """The columns and methods the Leaderboard page shows for ``dataset`` before any filter is
        touched: every family, the ``Default`` metric set, no search, any protocol."""
        columns = select_metric_set(self.columns(dataset), METRIC_SETS[0])
        present = self.summary.loc[self.summary["dataset"] == dataset, "method"].unique()
        return columns, filter_methods(self.methods, families=self.present_families(), present=present)

    def warm(self) -> None:
        """Compute (and memoise) every dataset's leaderboard table in its default view, first
        dataset first, so that a visitor does not wait for the rank intervals (1-2 s per dataset
        at 50 methods x 130 images). ``BoardCache`` runs it on a reloaded board in its background
        thread, before that board replaces the one being served; never run by a page."""
        for dataset in self.dataset_names():
            columns, names = self.default_view(dataset)
            if columns:
                self.table(dataset, columns, include=names)

    def columns(self, dataset: str | None = None, summary: pd.DataFrame | None = None) -> list[MetricColumn]:
        """Metric columns that methods (not only GT) have, on one dataset or all."""
        part = self.summary if summary is None else summary
        part = part[part["method"] != GT_METHOD]
        if dataset is not None:
            part = part[part["dataset"] == dataset]
        return metric_columns(part["metric"].unique(), self.known)

    def dataset_names(self) -> list[str]:
        """Datasets that have scores, in name order."""
        return sorted(self.summary["dataset"].unique())


def _read_store(url: str, read):
    store = ResultsStore(url)
    try:
        return read(store)
    finally:
        store.close()


def read_scores(store) -> pd.DataFrame:
    """The latest score per (dataset, image, method, metric), reading only the columns the board
    needs.

    Same rows as ``store.scores_frame()`` (latest row by insertion id), but through the DB-API
    cursor and without the provenance columns: the store's generic reader parses a timestamp and
    a JSON text per row, which takes seconds at the leaderboard's scale (250k scores).

    Args:
        store: an open ``benchmark.store.ResultsStore``.

    Returns:
        Scores with columns ``SCORE_KEYS``.
    """
    from sqlalchemy import select

    s = store.scores.c
    dialect = store.engine.dialect
    query = str(select(s.dataset, s.image, s.method, s.metric, s.value, s.settings_hash).order_by(s.id).compile(dialect=dialect))
    # the DB-API cursor directly: SQLAlchemy's per-row result processing costs ~5x the query itself
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(query)
        rows = cursor.fetchall()
        cursor.close()
    finally:
        raw.close()
    frame = pd.DataFrame.from_records(rows, columns=SCORE_KEYS)
    frame = frame.drop_duplicates(["dataset", "image", "method", "metric"], keep="last")
    frame["value"] = frame["value"].astype(np.float64)
    return frame.reset_index(drop=True)


def method_versions(url: str, method: str) -> list[dict]:
    """The distinct package versions (pyiqa, torch, screensr) recorded with ``method``'s scores."""
    from sqlalchemy import select

    store = ResultsStore(url)
    try:
        s = store.scores.c
        with store.engine.connect() as conn:
            texts = conn.execute(select(s.versions).where(s.method == method).distinct()).scalars().all()
    finally:
        store.close()
    return [json.loads(t or "{}") for t in sorted(texts)]


def load_board(url: str | None = None, *, confidence: float = CONFIDENCE, n_boot: int = N_BOOT) -> Board:
    """Read the results store at ``url`` (default ``$SCREENSR_STORE``) and summarise it under the
    comparison rule, with the suite's one bootstrap setting (``benchmark.report.N_BOOT``)."""
    store = ResultsStore(url)
    try:
        scores = read_scores(store)
        methods = store.methods_frame()
        datasets = store.datasets_frame()
        metrics = store.metrics_frame()
        images = store.dataset_images_frame()
        runs = store.runs_frame()
        reported = store.reported_frame()
    finally:
        store.close()
    table = report.summary(scores, images=images, runs=runs, metrics=metrics, confidence=confidence, n_boot=n_boot)
    return Board(store.url, scores, table, methods, datasets, metrics, known_metrics(metrics), images, runs, reported)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What the method page shows about one method."""

    name: str
    family: str
    description: str
    version: str
    config: dict
    config_hash: str
    outputs: str
    links: list[str]
    updated: str
    versions: list[dict]
    coverage: pd.DataFrame
    """One row per dataset: ``Dataset, Rank, Of`` (ranked methods), ``Images`` (``n/N`` when
    incomplete), ``Status``, ``Metrics``."""


def method_info(board: Board, name: str) -> MethodInfo:
    """Description, configuration, provenance and per-dataset standing of method ``name``.

    Raises:
        UnknownNameError: ``name`` is not in the store (a ``KeyError``, with the closest name).
    """
    rows = board.methods[board.methods["name"] == name]
    if rows.empty:
        raise UnknownNameError("method", name, board.methods["name"].tolist(), hint="the results store does not describe it")
    row = rows.iloc[0]
    coverage = []
    for dataset in board.dataset_names():
        part = board.summary[(board.summary["dataset"] == dataset) & (board.summary["method"] == name)]
        if part.empty:
            continue
        table = board.table(dataset, board.columns(dataset))
        mine = table[table["method"] == name]
        rank = mine["rank"].iloc[0] if len(mine) else pd.NA
        coverage.append(
            {
                "Dataset": dataset,
                "Rank": rank,
                "Of": int(table["rank"].notna().sum()),
                "Images": images_text(mine)[0] if len(mine) else "0",
                "Status": str(mine["status"].iloc[0]) if len(mine) else "",
                "Metrics": ", ".join(order_metrics(part["metric"])),
            }
        )
    config = row["config"] if isinstance(row["config"], dict) else {}
    links = list(row["links"]) if isinstance(row["links"], list) else []
    return MethodInfo(
        name,
        str(row["family"]),
        str(row["description"]),
        str(row["version"]),
        config,
        str(row["config_hash"]),
        str(row["outputs"]),
        links,
        str(row["updated"]),
        method_versions(board.url, name),
        pd.DataFrame(coverage, columns=["Dataset", "Rank", "Of", "Images", "Status", "Metrics"]),
    )
