"""The results store: every per-image score with its provenance, in any SQLAlchemy database.

SQLite is the embedded default (``sqlite:///results.db``, opened in WAL mode with a busy timeout
so several processes of a sharded run can write at once); any SQLAlchemy URL works for shared
deployments (``postgresql+psycopg://user@host/db``).

Schema (all names are plain strings, so the tables read well from any SQL client):

``datasets``
    ``name`` (unique), ``root`` (folder or URI), ``layout`` (``generic``, ``drealsr``, ...),
    ``scale`` (int, SR factor), ``n_pairs`` (int), ``config`` (JSON text), ``updated`` (UTC).
``methods``
    ``name``, ``version`` (together unique: a new version of a method is a new row beside the
    old one), ``family`` (one of :data:`FAMILIES`), ``description``, ``config`` (JSON text),
    ``config_hash`` (sha256 of the canonical config, 16 hex), ``outputs`` (where SR outputs are
    cached or read), ``links`` (JSON list of URLs), ``owner`` (who owns the name: ``""`` for the
    suite and whoever runs ``screensr bench run``, else the submitter's id or contact), ``updated``.
    Stores written before versions were rows (``name`` alone unique, no ``owner``) are migrated
    when opened.
``metrics``
    ``name`` (unique), ``kind`` (``FR`` or ``NR``), ``higher_is_better`` (bool),
    ``settings`` (JSON text, the pinned pyiqa settings), ``settings_hash``, ``pyiqa_version``.
``scores``
    ``dataset``, ``image`` (the pair id, i.e. the file stem), ``method`` (a method name or
    :data:`GT` for no-reference scores of the ground truth), ``metric``, ``value`` (float),
    ``settings_hash`` (metric settings), ``method_hash`` (method config), ``content_hash``
    (sha256 of the input image bytes the score depends on), ``versions`` (JSON: pyiqa, torch,
    screensr), ``created`` (UTC). Unique on
    ``(dataset, image, method, metric, settings_hash, method_hash, content_hash)``: writing the
    same score twice is a no-op, so reruns and resumed runs are idempotent.

``dataset_images``
    ``dataset``, ``image``, ``has_reference`` (bool: the pair has an HR image): the images the
    dataset holds *now*, recorded by the runner each time it runs the dataset. Reports and the
    leaderboard compare methods on this set (:mod:`benchmark.report`), so a pair removed from the
    dataset stops counting even though its old scores stay in ``scores``.
``runs``
    One row per method run (one dataset x one method in one ``evaluate`` call): ``run_id`` (shared
    by all ranks of a sharded run), ``dataset``, ``method``, ``method_hash``, ``status`` (one of
    :data:`RUN_STATUSES`), ``error`` (why it failed or what it skipped), ``n_pairs``, ``n_skipped``
    (pairs skipped with ``--on-error skip``), ``metrics`` and ``unavailable`` (JSON lists),
    ``host``, ``pid``, ``started``, ``finished`` (UTC).
``reported``
    Published numbers, never mixed with measured ones (:mod:`benchmark.reported`): ``dataset``,
    ``method``, ``metric``, ``image`` (``""`` for a table's mean, else the pair id of a per-image
    value), ``value``, ``decimals`` (digits printed in the source), ``n`` (images the source
    averaged, 0 when it does not say), ``source`` (paper), ``source_table``, ``link`` (DOI or URL),
    ``protocol`` (as the source states it), ``note``, ``imported`` (UTC). Unique on
    ``(source, source_table, dataset, method, metric, image)``: importing a file twice is a no-op
    that updates the rows in place.

If a method's config, a metric's settings or an input image changes, the new score is a new row;
:meth:`ResultsStore.scores_frame` returns the most recent row per
``(dataset, image, method, metric)`` unless ``latest=False``.

Example:
    >>> store = ResultsStore("sqlite://")          # in-memory
    >>> store.add_scores([ScoreRecord("demo", "0001", "bicubic", "psnr", 24.1,
    ...                               "s1", "m1", "c1")])
    1
    >>> store.scores_frame()[["dataset", "image", "method", "metric", "value"]].values.tolist()
    [['demo', '0001', 'bicubic', 'psnr', 24.1]]
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import atomic_path
from core.errors import ConfigError, MissingFileError, UserError

if TYPE_CHECKING:
    import pandas as pd

#: Pseudo-method name under which no-reference scores of the ground-truth images are stored
#: (the VOSR paper's Table 2).
GT = "GT"

#: Allowed values of ``methods.family``.
FAMILIES = ("one-step", "multi-step", "GAN", "regression", "interpolation", "other")

#: Values of ``runs.status``: ``running`` until the run ends; ``complete`` (every pair scored),
#: ``partial`` (finished, some pairs skipped with ``--on-error skip``: ``error`` lists them),
#: ``failed`` (an error on this method stopped the run: ``error`` holds it), ``aborted`` (stopped
#: by another method's error or an interrupt before this method was done). :meth:`ResultsStore.runs_frame`
#: shows a ``running`` run whose process on this host is gone as ``interrupted`` (killed).
RUN_STATUSES = ("running", "complete", "partial", "failed", "aborted")

#: Rows per ``IN (...)`` list: well under SQLite's bound-parameter limit.
_CHUNK = 500


class StoreError(UserError):
    """The results store cannot be opened or used (the message names the URL and the fix)."""


class StoreURLError(StoreError, ValueError):
    """A results-store URL SQLAlchemy cannot use (malformed, or its driver is not installed)."""


SCORE_COLUMNS = [
    "dataset",
    "image",
    "method",
    "metric",
    "value",
    "settings_hash",
    "method_hash",
    "content_hash",
    "versions",
    "created",
]


def canonical_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of ``obj`` serialised as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ScoreRecord:
    """One per-image score with its provenance (one row of ``scores``)."""

    dataset: str
    image: str
    method: str
    metric: str
    value: float
    settings_hash: str
    method_hash: str
    content_hash: str
    versions: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple[str, str, str, str, str, str, str]:
        """The identity that makes writes idempotent."""
        return (
            self.dataset,
            self.image,
            self.method,
            self.metric,
            self.settings_hash,
            self.method_hash,
            self.content_hash,
        )


@dataclass(frozen=True)
class DatasetRecord:
    """Description of one dataset (one row of ``datasets``)."""

    name: str
    root: str
    layout: str
    scale: int
    n_pairs: int
    config: dict[str, Any] = field(default_factory=dict)


#: Owner of the methods the suite itself runs (built-ins and ``screensr bench run`` methods).
SUITE_OWNER = ""


class MethodOwnershipError(UserError, ValueError):
    """A method row would reuse a name that belongs to someone else (see ``MethodRecord.owner``)."""


@dataclass(frozen=True)
class MethodRecord:
    """Description of one version of an SR method (one row of ``methods``).

    Attributes:
        owner: who owns the name: :data:`SUITE_OWNER` (``""``) for the suite's own runs, else
            the submitter's id or contact. A name has one owner across all its versions.
    """

    name: str
    family: str = "other"
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    outputs: str = ""
    links: list[str] = field(default_factory=list)
    owner: str = SUITE_OWNER

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"method {self.name!r}: family {self.family!r} is not one of {FAMILIES}")

    @property
    def config_hash(self) -> str:
        return canonical_hash(self.config)


@dataclass(frozen=True)
class MetricRecord:
    """Description of one metric as used (one row of ``metrics``)."""

    name: str
    kind: str
    higher_is_better: bool
    settings: dict[str, Any]
    settings_hash: str
    pyiqa_version: str


def _tables():
    """Build the SQLAlchemy table objects (inside a function: nothing happens at import)."""
    from sqlalchemy import (
        Boolean,
        Column,
        DateTime,
        Float,
        Integer,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        Text,
        UniqueConstraint,
    )

    md = MetaData()
    datasets = Table(
        "datasets",
        md,
        Column("name", String(200), primary_key=True),
        Column("root", Text, nullable=False, default=""),
        Column("layout", String(50), nullable=False, default=""),
        Column("scale", Integer, nullable=False, default=4),
        Column("n_pairs", Integer, nullable=False, default=0),
        Column("config", Text, nullable=False, default="{}"),
        Column("updated", DateTime, nullable=False),
    )
    methods = Table(
        "methods",
        md,
        Column("name", String(200), nullable=False),
        Column("version", String(100), nullable=False, default="", server_default=""),
        Column("family", String(30), nullable=False, default="other"),
        Column("description", Text, nullable=False, default=""),
        Column("config", Text, nullable=False, default="{}"),
        Column("config_hash", String(64), nullable=False, default=""),
        Column("outputs", Text, nullable=False, default=""),
        Column("links", Text, nullable=False, default="[]"),
        # server default: writers of the earlier schema that do not know the column still insert
        Column("owner", String(200), nullable=False, default=SUITE_OWNER, server_default=SUITE_OWNER),
        Column("updated", DateTime, nullable=False),
        # named: PostgreSQL keeps the earlier table's "methods_pkey" name on the renamed table
        # during the migration, so the new key must not need that name
        PrimaryKeyConstraint("name", "version", name="pk_methods_name_version"),
    )
    metrics = Table(
        "metrics",
        md,
        Column("name", String(100), primary_key=True),
        Column("kind", String(4), nullable=False),
        Column("higher_is_better", Boolean, nullable=False),
        Column("settings", Text, nullable=False, default="{}"),
        Column("settings_hash", String(64), nullable=False),
        Column("pyiqa_version", String(50), nullable=False, default=""),
    )
    scores = Table(
        "scores",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dataset", String(200), nullable=False),
        Column("image", String(500), nullable=False),
        Column("method", String(200), nullable=False),
        Column("metric", String(100), nullable=False),
        Column("value", Float, nullable=False),
        Column("settings_hash", String(64), nullable=False),
        Column("method_hash", String(64), nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("versions", Text, nullable=False, default="{}"),
        Column("created", DateTime, nullable=False),
        UniqueConstraint(
            "dataset",
            "image",
            "method",
            "metric",
            "settings_hash",
            "method_hash",
            "content_hash",
            name="uq_scores_identity",
        ),
    )
    dataset_images = Table(
        "dataset_images",
        md,
        Column("dataset", String(200), primary_key=True),
        Column("image", String(500), primary_key=True),
        Column("has_reference", Boolean, nullable=False, default=True),
    )
    runs = Table(
        "runs",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(32), nullable=False),
        Column("dataset", String(200), nullable=False),
        Column("method", String(200), nullable=False),
        Column("method_hash", String(64), nullable=False, default=""),
        Column("status", String(20), nullable=False),
        Column("error", Text, nullable=False, default=""),
        Column("n_pairs", Integer, nullable=False, default=0),
        Column("n_skipped", Integer, nullable=False, default=0),
        Column("metrics", Text, nullable=False, default="[]"),
        Column("unavailable", Text, nullable=False, default="[]"),
        Column("host", String(255), nullable=False, default=""),
        Column("pid", Integer, nullable=False, default=0),
        Column("started", DateTime, nullable=False),
        Column("finished", DateTime, nullable=True),
        UniqueConstraint("run_id", "dataset", "method", name="uq_runs_identity"),
    )
    return md, datasets, methods, metrics, scores, dataset_images, runs


def _reported_table(md):
    """The ``reported`` table (published numbers, see the module docstring) in ``md``."""
    from sqlalchemy import Column, DateTime, Float, Integer, String, Table, Text, UniqueConstraint

    return Table(
        "reported",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dataset", String(200), nullable=False),
        Column("method", String(200), nullable=False),
        Column("metric", String(100), nullable=False),
        Column("image", String(500), nullable=False, default=""),
        Column("value", Float, nullable=False),
        Column("decimals", Integer, nullable=False, default=6),
        Column("n", Integer, nullable=False, default=0),
        Column("source", String(300), nullable=False),
        Column("source_table", String(100), nullable=False, default=""),
        Column("link", Text, nullable=False, default=""),
        Column("protocol", Text, nullable=False, default=""),
        Column("note", Text, nullable=False, default=""),
        Column("imported", DateTime, nullable=False),
        UniqueConstraint("source", "source_table", "dataset", "method", "metric", "image", name="uq_reported_identity"),
    )


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def default_url() -> str:
    """``$SCREENSR_STORE`` if set, else ``sqlite:///results.db`` in the working directory."""
    return os.environ.get("SCREENSR_STORE", "sqlite:///results.db")


class ResultsStore:
    """Per-image scores with provenance in a SQLAlchemy database.

    Args:
        url: an SQLAlchemy URL (``sqlite:///results.db``, ``sqlite://`` for memory,
            ``postgresql+psycopg://...``) or a plain path to a SQLite file.

    Example:
        >>> store = ResultsStore("sqlite://")
        >>> store.scores_frame().columns[:5].tolist()
        ['dataset', 'image', 'method', 'metric', 'value']
    """

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import ArgumentError

        url = default_url() if url is None else str(url)
        if "://" not in url:  # a plain path: a SQLite file
            url = f"sqlite:///{Path(url).expanduser()}"
        self.url = url
        is_sqlite = url.startswith("sqlite")
        if is_sqlite:
            db_path = url.split(":///", 1)[1] if ":///" in url else ""
            db_path = db_path.split("?", 1)[0]
            if db_path and db_path != ":memory:":
                target = Path(db_path).expanduser()
                if target.is_dir():
                    raise StoreError(
                        f"results store {url!r}: {target} is a folder, not a database file; give --store "
                        f"a file path such as {target / 'results.db'}"
                    )
                parent = target.parent
                if not parent.is_dir():
                    raise MissingFileError(
                        f"results store {url!r}: folder {parent} does not exist; create it or pick "
                        "another --store path"
                    )
        kwargs: dict[str, Any] = {}
        if is_sqlite:
            # 60 s lets the shards of a run queue for the write lock instead of failing.
            kwargs["connect_args"] = {"timeout": 60}
            if url in ("sqlite://", "sqlite:///:memory:"):
                from sqlalchemy.pool import StaticPool

                # one shared connection, or each new connection sees an empty database
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"]["check_same_thread"] = False
        try:
            self.engine = create_engine(url, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StoreURLError(
                f"results store URL {self.safe_url!r} is not usable ({exc}); use sqlite:///PATH.db or "
                "postgresql+psycopg://USER@HOST/DB (pip install 'screensr[postgres]')"
            ) from exc
        if is_sqlite:

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
                cur = dbapi_conn.cursor()
                # WAL: readers (the leaderboard) never block the writer (a running benchmark).
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.close()

        (self._md, self.datasets, self.methods, self.metrics, self.scores, self.dataset_images,
         self.runs) = _tables()  # fmt: skip
        self.reported = _reported_table(self._md)
        self._create_tables()

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for messages and published pages)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:  # an unparsable URL: show none of it rather than a secret
            return "(unparsable store URL)"

    def _create_tables(self) -> None:
        """Create missing tables; tolerate another process (a shard, a reader) doing it at once.

        Raises:
            StoreError: the URL names something that is not a database (a PNG, a text file), a
                server that cannot be reached, or a database that stays locked.
        """
        import time

        from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, ProgrammingError

        for attempt in range(5):
            try:
                self._md.create_all(self.engine)
                break
            except (OperationalError, ProgrammingError, IntegrityError) as exc:
                text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
                # "table already exists" / "database is locked" / a duplicate catalogue row from a
                # concurrent creator: the next checkfirst pass sees the tables
                racing = isinstance(exc, (IntegrityError, ProgrammingError)) or "already exists" in text or "locked" in text
                if racing and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                self.engine.dispose()
                raise StoreError(self._open_error(exc)) from exc
            except DatabaseError as exc:  # e.g. sqlite3 "file is not a database"
                self.engine.dispose()
                raise StoreError(self._open_error(exc)) from exc

        self._migrate_methods()

    # ------------------------------------------------------------------ migrations
    _METHODS_KEY = ["name", "version"]

    def _methods_current(self, conn) -> bool:
        """Whether the ``methods`` table has this schema (an ``owner`` column, (name, version) key)."""
        from sqlalchemy import inspect

        insp = inspect(conn)
        columns = {c["name"] for c in insp.get_columns("methods")}
        key = insp.get_pk_constraint("methods").get("constrained_columns") or []
        return "owner" in columns and sorted(key) == sorted(self._METHODS_KEY)

    def _migrate_methods(self) -> None:
        """Rebuild a ``methods`` table of the earlier schema (``name`` unique, no ``owner``).

        Every row is kept, with ``owner`` set to :data:`SUITE_OWNER` (the earlier schema did not
        record one). The table is renamed, recreated and copied in one transaction taken with the
        write lock, and the check is repeated under that lock, so two processes opening the same
        old store migrate it once. A failure leaves the old table as it was.
        """
        with self.engine.connect() as conn:
            if self._methods_current(conn):
                return
        if self.engine.dialect.name == "sqlite":
            # pysqlite runs DDL outside transactions; with the driver in autocommit mode the
            # explicit BEGIN IMMEDIATE ... COMMIT makes rename + create + copy one transaction
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    if not self._methods_current(conn):
                        self._rebuild_methods(conn)
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
        else:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("LOCK TABLE methods IN ACCESS EXCLUSIVE MODE")
                if not self._methods_current(conn):
                    self._rebuild_methods(conn)

    def _rebuild_methods(self, conn) -> None:
        from sqlalchemy import inspect

        old_columns = {c["name"] for c in inspect(conn).get_columns("methods")}
        conn.exec_driver_sql("ALTER TABLE methods RENAME TO methods_before_versions")
        self.methods.create(conn)
        defaults = {"version": "''", "owner": "''", "links": "'[]'", "config": "'{}'"}
        names = [c.name for c in self.methods.columns]
        select_list = [n if n in old_columns and n != "owner" else defaults.get(n, "''") for n in names]
        conn.exec_driver_sql(
            f"INSERT INTO methods ({', '.join(names)}) SELECT {', '.join(select_list)} FROM methods_before_versions"
        )
        conn.exec_driver_sql("DROP TABLE methods_before_versions")

    def _open_error(self, exc: Exception) -> str:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if self.engine.dialect.name == "sqlite":
            fix = "point --store at a new or existing SQLite results file (e.g. results.db), not another kind of file"
        else:
            fix = "check that the database server is running and the URL (host, port, user, database) is right"
        return f"cannot open the results store {self.safe_url!r}: {reason}; {fix}"

    def __repr__(self) -> str:
        return f"ResultsStore({self.url!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def _insert(self, table):
        """The dialect's INSERT construct with ``on_conflict_*`` (SQLite, PostgreSQL), else None."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert

            return insert(table)
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            return insert(table)
        return None

    def _upsert(self, table, key: str | Sequence[str], row: dict[str, Any]) -> None:
        """Insert ``row`` or update the row with the same ``key`` column(s), race-free.

        A select-then-insert lets two processes that register the same name at the same moment
        both decide to insert, and the second one fails on the unique key. SQLite and PostgreSQL
        do it in one statement (``INSERT ... ON CONFLICT (key) DO UPDATE``); other dialects try an
        update, insert when no row matched, and retry once as an update when a concurrent insert
        won the race.
        """
        from sqlalchemy import and_
        from sqlalchemy.exc import IntegrityError

        keys = [key] if isinstance(key, str) else list(key)
        stmt = self._insert(table)
        if stmt is not None:
            stmt = stmt.values(**row)
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in row if c not in keys}
            )
            with self.engine.begin() as conn:
                conn.execute(stmt)
            return
        where = and_(*(table.c[k] == row[k] for k in keys))
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if not conn.execute(table.update().where(where).values(**row)).rowcount:
                        conn.execute(table.insert().values(**row))
                return
            except IntegrityError:
                if attempt == 1:
                    raise

    def upsert_dataset(self, rec: DatasetRecord) -> None:
        """Insert or update the description of a dataset."""
        self._upsert(
            self.datasets,
            "name",
            {
                "name": rec.name,
                "root": rec.root,
                "layout": rec.layout,
                "scale": int(rec.scale),
                "n_pairs": int(rec.n_pairs),
                "config": json.dumps(rec.config, sort_keys=True, default=str),
                "updated": _now(),
            },
        )

    def upsert_method(self, rec: MethodRecord) -> None:
        """Insert or update one version of a method (the row of ``(rec.name, rec.version)``).

        Other versions of the method are left as they are: a new version is a new row.

        Raises:
            MethodOwnershipError: ``rec.name`` is already registered by another owner (the suite
                or another submitter); a name keeps its first owner.
        """
        from sqlalchemy import select

        m = self.methods.c
        with self.engine.connect() as conn:
            owners = set(conn.execute(select(m.owner).where(m.name == rec.name).distinct()).scalars())
        if owners and owners != {rec.owner}:
            who = "the suite's own methods" if SUITE_OWNER in owners else "another submitter"
            raise MethodOwnershipError(
                f"method name {rec.name!r} belongs to {who}; a method's versions all share one owner, "
                "so register this one under another name"
            )
        self._upsert(
            self.methods,
            self._METHODS_KEY,
            {
                "name": rec.name,
                "version": rec.version,
                "family": rec.family,
                "description": rec.description,
                "config": json.dumps(rec.config, sort_keys=True, default=str),
                "config_hash": rec.config_hash,
                "outputs": rec.outputs,
                "links": json.dumps(list(rec.links)),
                "owner": rec.owner,
                "updated": _now(),
            },
        )

    def upsert_metric(self, rec: MetricRecord) -> None:
        """Insert or update the description of a metric (direction, settings)."""
        self._upsert(
            self.metrics,
            "name",
            {
                "name": rec.name,
                "kind": rec.kind,
                "higher_is_better": bool(rec.higher_is_better),
                "settings": json.dumps(rec.settings, sort_keys=True, default=str),
                "settings_hash": rec.settings_hash,
                "pyiqa_version": rec.pyiqa_version,
            },
        )

    def set_dataset_images(self, dataset: str, images: Mapping[str, bool]) -> None:
        """Record the images ``dataset`` holds now: ``{image id: has an HR image}``.

        Rows of images no longer listed are removed, new ones inserted (insert-or-ignore, so two
        processes registering the same dataset at once both succeed), changed flags updated;
        nothing is written when the set is unchanged. The scores of removed images stay in
        ``scores`` (they are history) but stop counting in reports (:mod:`benchmark.report`).
        """
        from sqlalchemy import and_, select

        t = self.dataset_images
        want = {str(k): bool(v) for k, v in images.items()}
        with self.engine.begin() as conn:
            have = {r.image: bool(r.has_reference) for r in conn.execute(
                select(t.c.image, t.c.has_reference).where(t.c.dataset == dataset))}  # fmt: skip
            gone = sorted(set(have) - set(want))
            for i in range(0, len(gone), _CHUNK):
                conn.execute(t.delete().where(and_(t.c.dataset == dataset, t.c.image.in_(gone[i : i + _CHUNK]))))
            for flag in (True, False):
                changed = sorted(k for k, v in want.items() if k in have and have[k] != v and v is flag)
                for i in range(0, len(changed), _CHUNK):
                    conn.execute(t.update().where(and_(t.c.dataset == dataset, t.c.image.in_(changed[i : i + _CHUNK])))
                                 .values(has_reference=flag))  # fmt: skip
            fresh = [{"dataset": dataset, "image": k, "has_reference": v} for k, v in sorted(want.items()) if k not in have]
            if fresh:
                stmt = self._insert(t)
                if stmt is not None:
                    conn.execute(stmt.on_conflict_do_nothing(index_elements=["dataset", "image"]), fresh)
                else:
                    conn.execute(t.insert(), fresh)

    def dataset_images_frame(self, dataset: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Columns ``dataset, image, has_reference``: the images each dataset holds now (see
        :meth:`set_dataset_images`); datasets never registered by the runner have no rows."""
        import pandas as pd
        from sqlalchemy import select

        t = self.dataset_images
        q = select(t.c.dataset, t.c.image, t.c.has_reference).order_by(t.c.dataset, t.c.image)
        if dataset is not None:
            q = q.where(t.c.dataset.in_([dataset] if isinstance(dataset, str) else list(dataset)))
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(q).fetchall(), columns=["dataset", "image", "has_reference"])
        frame["has_reference"] = frame["has_reference"].astype(bool)
        return frame

    # ------------------------------------------------------------------ method runs
    def start_runs(
        self,
        run_id: str,
        dataset: str,
        methods: Sequence[tuple[str, str]],
        *,
        n_pairs: int,
        metrics: Sequence[str],
        unavailable: Sequence[str] = (),
    ) -> None:
        """Record that ``methods`` (``(name, method hash)`` pairs) start on ``dataset`` (status
        ``running``); a repeated call for the same run is a no-op."""
        if not methods:
            return
        now = _now()
        rows = [
            {
                "run_id": run_id,
                "dataset": dataset,
                "method": name,
                "method_hash": mhash,
                "status": "running",
                "error": "",
                "n_pairs": int(n_pairs),
                "n_skipped": 0,
                "metrics": json.dumps(list(metrics)),
                "unavailable": json.dumps(list(unavailable)),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": now,
                "finished": None,
            }
            for name, mhash in methods
        ]
        stmt = self._insert(self.runs)
        with self.engine.begin() as conn:
            if stmt is not None:
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["run_id", "dataset", "method"]), rows)
            else:
                conn.execute(self.runs.insert(), rows)

    def finish_runs(
        self,
        run_id: str,
        dataset: str,
        methods: Iterable[str],
        status: str,
        *,
        error: str = "",
        n_skipped: int | Mapping[str, int] = 0,
    ) -> int:
        """Set the final ``status`` of runs that are still ``running`` (the first outcome wins:
        a worker that recorded ``failed`` is not overwritten by rank 0's later ``aborted``).

        Returns:
            How many runs changed.
        """
        from sqlalchemy import and_

        if status not in RUN_STATUSES or status == "running":
            raise ValueError(f"run status {status!r} is not one of {RUN_STATUSES[1:]}")
        r = self.runs.c
        changed = 0
        now = _now()
        with self.engine.begin() as conn:
            for name in methods:
                skipped = n_skipped.get(name, 0) if isinstance(n_skipped, Mapping) else n_skipped
                where = and_(r.run_id == run_id, r.dataset == dataset, r.method == name, r.status == "running")
                res = conn.execute(self.runs.update().where(where).values(
                    status=status, error=error, n_skipped=int(skipped), finished=now))  # fmt: skip
                changed += int(res.rowcount or 0)
        return changed

    def runs_frame(self, *, latest: bool = True) -> pd.DataFrame:
        """Method runs: columns ``run_id, dataset, method, method_hash, status, error, n_pairs,
        n_skipped, metrics (list), unavailable (list), host, pid, started, finished``.

        Args:
            latest: keep only the most recent run per ``(dataset, method)``.
        """
        import pandas as pd
        from sqlalchemy import select

        cols = [c.name for c in self.runs.columns if c.name != "id"]
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(select(*(self.runs.c[c] for c in cols)).order_by(self.runs.c.id)).fetchall(),
                                 columns=cols)  # fmt: skip
        if latest and len(frame):
            frame = frame.drop_duplicates(["dataset", "method"], keep="last")
        for c in ("metrics", "unavailable"):
            frame[c] = frame[c].map(json.loads)
        if len(frame):
            # a run still "running" whose process on this host is gone was killed (SIGKILL, power
            # loss): show it as interrupted; runs of other hosts cannot be checked from here
            here = socket.gethostname()
            dead = [s == "running" and h == here and not _pid_alive(int(p))
                    for s, h, p in zip(frame["status"], frame["host"], frame["pid"], strict=True)]  # fmt: skip
            frame.loc[dead, "status"] = "interrupted"
        return frame.reset_index(drop=True)

    def add_scores(self, records: Iterable[ScoreRecord]) -> int:
        """Write scores in one transaction; rows already stored are left alone.

        Returns:
            The number of rows actually inserted (0 on a rerun).
        """
        rows = []
        now = _now()
        for r in records:
            v = float(r.value)
            if v != v:  # NaN: a metric that failed must be reported, never stored as a value
                raise ValueError(f"score {r.metric} of {r.dataset}/{r.image}/{r.method} is NaN")
            rows.append(
                {
                    "dataset": r.dataset,
                    "image": r.image,
                    "method": r.method,
                    "metric": r.metric,
                    "value": v,
                    "settings_hash": r.settings_hash,
                    "method_hash": r.method_hash,
                    "content_hash": r.content_hash,
                    "versions": json.dumps(r.versions, sort_keys=True),
                    "created": now,
                }
            )
        if not rows:
            return 0
        insert = self._insert(self.scores)
        with self.engine.begin() as conn:
            if insert is not None:
                stmt = insert.on_conflict_do_nothing(
                    index_elements=[
                        "dataset",
                        "image",
                        "method",
                        "metric",
                        "settings_hash",
                        "method_hash",
                        "content_hash",
                    ]
                )
                before = self._count(conn)
                conn.execute(stmt, rows)
                return self._count(conn) - before
            # other dialects: filter out what is there, then insert
            have = self._keys(conn, {str(r["dataset"]) for r in rows}, {str(r["method"]) for r in rows})
            fresh = [
                r
                for r in rows
                if (
                    r["dataset"],
                    r["image"],
                    r["method"],
                    r["metric"],
                    r["settings_hash"],
                    r["method_hash"],
                    r["content_hash"],
                )
                not in have
            ]
            if fresh:
                conn.execute(self.scores.insert(), fresh)
            return len(fresh)

    def _count(self, conn) -> int:
        from sqlalchemy import func, select

        return int(conn.execute(select(func.count()).select_from(self.scores)).scalar_one())

    def _keys(self, conn, datasets: set[str], methods: set[str]) -> set[tuple]:
        from sqlalchemy import select

        s = self.scores.c
        q = select(
            s.dataset, s.image, s.method, s.metric, s.settings_hash, s.method_hash, s.content_hash
        ).where(s.dataset.in_(sorted(datasets)), s.method.in_(sorted(methods)))
        return {tuple(r) for r in conn.execute(q)}

    def existing_keys(self, dataset: str, method: str) -> set[tuple[str, str, str, str, str, str, str]]:
        """Identities (:meth:`ScoreRecord.key`) already stored for one dataset and method."""
        with self.engine.connect() as conn:
            return self._keys(conn, {dataset}, {method})

    def delete_scores(self, *, dataset: str | None = None, method: str | None = None) -> int:
        """Delete the scores of a dataset and/or method; returns the number of rows removed."""
        if dataset is None and method is None:
            raise ValueError("delete_scores needs dataset= and/or method= (refusing to delete everything)")
        s = self.scores.c
        stmt = self.scores.delete()
        if dataset is not None:
            stmt = stmt.where(s.dataset == dataset)
        if method is not None:
            stmt = stmt.where(s.method == method)
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    # ------------------------------------------------------------------ reading
    def scores_frame(
        self,
        dataset: str | Sequence[str] | None = None,
        method: str | Sequence[str] | None = None,
        metric: str | Sequence[str] | None = None,
        *,
        latest: bool = True,
    ) -> pd.DataFrame:
        """Per-image scores as a data frame.

        Args:
            dataset, method, metric: a name or a list of names to keep (None: all).
            latest: keep only the most recent row per ``(dataset, image, method, metric)``
                (older rows come from earlier method configs, metric settings or inputs).

        Returns:
            Columns ``dataset, image, method, metric, value, settings_hash, method_hash,
            content_hash, versions, created``; sorted by dataset, method, metric, image.
        """
        import pandas as pd
        from sqlalchemy import select

        s = self.scores.c
        q = select(*(s[c] for c in SCORE_COLUMNS))
        for col, want in (("dataset", dataset), ("method", method), ("metric", metric)):
            if want is not None:
                names = [want] if isinstance(want, str) else list(want)
                q = q.where(s[col].in_(names))
        q = q.order_by(s.id)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(q).fetchall(), columns=SCORE_COLUMNS)
        if latest and len(frame):
            frame = frame.drop_duplicates(["dataset", "image", "method", "metric"], keep="last")
        frame["value"] = frame["value"].astype(float)
        return frame.sort_values(["dataset", "method", "metric", "image"]).reset_index(drop=True)

    def _frame(self, table, json_cols: Sequence[str]) -> pd.DataFrame:
        import pandas as pd
        from sqlalchemy import select

        with self.engine.connect() as conn:
            res = conn.execute(select(table).order_by(table.c.name))
            frame = pd.DataFrame(res.fetchall(), columns=list(res.keys()))
        for c in json_cols:
            frame[c] = frame[c].map(json.loads)
        return frame

    def datasets_frame(self) -> pd.DataFrame:
        """Columns ``name, root, layout, scale, n_pairs, config (dict), updated``."""
        return self._frame(self.datasets, ["config"])

    def methods_frame(self, *, all_versions: bool = False) -> pd.DataFrame:
        """The methods: by default one row per name, its current version (the one registered or
        rescored last); ``all_versions=True`` gives every ``(name, version)`` row, the current
        version first within each name.

        Columns ``name, version, family, description, config (dict), config_hash, outputs,
        links (list), owner, updated``, sorted by name. Which version a method's *scores* come
        from on each dataset is :meth:`score_versions`.
        """
        frame = self._frame(self.methods, ["config", "links"])
        # newest first within a name; the version breaks ties of equal timestamps deterministically
        frame = frame.sort_values(
            ["name", "updated", "version"], ascending=[True, False, False], kind="stable"
        )
        if not all_versions:
            frame = frame.drop_duplicates("name", keep="first")
        return frame.reset_index(drop=True)

    def score_versions(self, dataset: str | None = None) -> pd.DataFrame:
        """Which version of each method the current scores come from, per dataset.

        The current scores are the latest row per ``(dataset, image, method, metric)`` (what
        :meth:`scores_frame` and the leaderboard show). Each is matched to the method row whose
        ``config_hash`` equals the score's ``method_hash`` (the newest such row when versions share
        a configuration); a method with one version row and no match is that version.

        Returns:
            Columns ``dataset, method, version, outputs, images`` (images: how many of the
            dataset's images have current scores from that version), one row per
            ``(dataset, method, version)``; a method whose scores mix versions (a newer version
            scored on fewer metrics) has several rows. ``version`` is None where no method row
            matches (scores written without a method description).
        """
        import pandas as pd
        from sqlalchemy import func, select

        s = self.scores.c
        latest = select(func.max(s.id).label("id")).group_by(s.dataset, s.image, s.method, s.metric)
        if dataset is not None:
            latest = latest.where(s.dataset == dataset)
        latest_ids = latest.subquery()
        q = (
            select(s.dataset, s.method, s.method_hash, s.image)
            .join(latest_ids, s.id == latest_ids.c.id)
            .where(s.method != GT)
            .distinct()
        )
        with self.engine.connect() as conn:
            current = pd.DataFrame(
                conn.execute(q).fetchall(), columns=["dataset", "method", "method_hash", "image"]
            )
        methods = self.methods_frame(all_versions=True)
        columns = ["dataset", "method", "version", "outputs", "images"]
        if current.empty:
            return pd.DataFrame(columns=columns)
        by_hash = methods.drop_duplicates(["name", "config_hash"], keep="first").set_index(
            ["name", "config_hash"]
        )
        only = methods.groupby("name").filter(lambda g: len(g) == 1).set_index("name")
        resolved: list[tuple[str, str, str | None, str | None]] = []
        for name, mhash in current[["method", "method_hash"]].drop_duplicates().itertuples(index=False):
            if (name, mhash) in by_hash.index:
                row = by_hash.loc[(name, mhash)]
            elif name in only.index:
                row = only.loc[name]
            else:
                resolved.append((name, mhash, None, None))
                continue
            resolved.append((name, mhash, str(row["version"]), str(row["outputs"])))
        lookup = pd.DataFrame(resolved, columns=["method", "method_hash", "version", "outputs"])
        current = current.merge(lookup, on=["method", "method_hash"], how="left")
        grouped = (
            current.groupby(["dataset", "method", "version", "outputs"], dropna=False)["image"]
            .nunique()
            .rename("images")
        )
        return (
            grouped.reset_index()[columns]
            .sort_values(["dataset", "method", "version"])
            .reset_index(drop=True)
        )

    def metrics_frame(self) -> pd.DataFrame:
        """Columns ``name, kind (FR|NR), higher_is_better, settings (dict), settings_hash,
        pyiqa_version``."""
        frame = self._frame(self.metrics, ["settings"])
        frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
        return frame

    def export(self, path: str | os.PathLike[str], **filters: Any) -> Path:
        """Write :meth:`scores_frame` to ``.csv``, ``.parquet`` or ``.json`` (atomic)."""
        path = Path(path)
        frame = self.scores_frame(**filters)
        frame["created"] = frame["created"].astype(str)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet", ".json"):
            raise ConfigError(f"export {path}: unknown format {suffix!r}; use .csv, .parquet or .json")
        with atomic_path(path) as tmp:
            if suffix == ".csv":
                frame.to_csv(tmp, index=False)
            elif suffix == ".parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_json(tmp, orient="records", indent=1)
        return path

    # ------------------------------------------------------------------ reported numbers
    #: Columns of :meth:`reported_frame` (the ``reported`` table without its id).
    REPORTED_COLUMNS = ["dataset", "method", "metric", "image", "value", "decimals", "n", "source", "source_table",
                        "link", "protocol", "note", "imported"]  # fmt: skip

    def add_reported(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or update published numbers (one mapping per row, keys of :data:`REPORTED_COLUMNS`
        but ``imported``), in one transaction; they never enter :meth:`scores_frame`.

        Returns:
            How many rows were written (inserted or updated).
        """
        rows = [dict(r, imported=_now()) for r in rows]
        if not rows:
            return 0
        keys = ["source", "source_table", "dataset", "method", "metric", "image"]
        stmt = self._insert(self.reported)
        with self.engine.begin() as conn:
            for row in rows:
                if stmt is not None:
                    one = stmt.values(**row)
                    conn.execute(one.on_conflict_do_update(
                        index_elements=keys, set_={c: one.excluded[c] for c in row if c not in keys}))  # fmt: skip
                else:
                    from sqlalchemy import and_

                    where = and_(*(self.reported.c[k] == row[k] for k in keys))
                    if not conn.execute(self.reported.update().where(where).values(**row)).rowcount:
                        conn.execute(self.reported.insert().values(**row))
        return len(rows)

    def reported_frame(self, *, dataset: str | None = None) -> pd.DataFrame:
        """The published numbers: columns :data:`REPORTED_COLUMNS`, sorted by source, dataset,
        method, metric, image."""
        import pandas as pd
        from sqlalchemy import select

        r = self.reported.c
        q = select(*(r[c] for c in self.REPORTED_COLUMNS))
        if dataset is not None:
            q = q.where(r.dataset == dataset)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(q).fetchall(), columns=self.REPORTED_COLUMNS)
        frame["value"] = frame["value"].astype(float)
        return frame.sort_values(["source", "dataset", "method", "metric", "image"]).reset_index(drop=True)
