"""Serialised, group-committed writes to the study store's database.

Writers serialise per database: ``BEGIN IMMEDIATE`` on SQLite, behind an in-process lock (one per
SQLite file) and an OS file lock beside the database, so threads and processes queue without
SQLite's sleeping busy handler; on PostgreSQL the store adds ``SELECT ... FOR UPDATE`` on the
study row. Concurrent requests of one process are group-committed (:meth:`Database.submit`): one
transaction (one fsync with ``synchronous=FULL``) carries every request that arrived while the
previous one was being written, each still applied (checked and chained) one by one.

The writer knows nothing about votes: a request is any object with ``done``, ``outcome`` and
``error`` attributes (:class:`Request`), applied by the caller's function.

Example:
    >>> db = Database("sqlite:///votes.sqlite")            # doctest: +SKIP
    >>> with db.write() as conn: ...                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError

from core.errors import UserError


class StoreOpenError(UserError, ValueError):
    """A study store URL that cannot be opened (bad URL, missing driver)."""


class Request(Protocol):
    """A write waiting for the writer lock; the writer sets ``done`` and ``outcome`` or ``error``."""

    done: bool
    outcome: Any
    error: BaseException | None


R = TypeVar("R", bound=Request)

# One lock per SQLite file in this process: threads then wait on a mutex (woken at once) instead
# of SQLite's busy handler, which sleeps in steps of up to 100 ms and caps throughput.
_SQLITE_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_LOCKS_GUARD = threading.Lock()


def _sqlite_lock(database: str) -> threading.Lock:
    with _SQLITE_LOCKS_GUARD:
        return _SQLITE_LOCKS.setdefault(database, threading.Lock())


PG_POOL_SIZE = 12  # persistent connections per replica on a server database (and as many overflow)


def make_engine(url: str, synchronous: str = "FULL") -> Engine:
    """A SQLAlchemy engine for the store at ``url``.

    SQLite: WAL, ``PRAGMA synchronous`` as given, foreign keys on, and transactions under our
    control (a connection with the execution option ``study_write`` begins ``IMMEDIATE``).

    Raises:
        StoreOpenError: a URL SQLAlchemy cannot parse, or a database driver that is not installed.
    """
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1] if ":///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Hand transaction control to us (pysqlite's implicit BEGIN cannot be IMMEDIATE).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("study_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    try:
        # A pool as large as one replica's concurrent sessions: a connection returned beyond
        # pool_size is closed, and each new PostgreSQL connection forks a server process. With
        # SQLAlchemy's default pool (5) 16 voting threads opened 464 connections for 640 votes
        # and ran at a third of the speed (tests/perf/bench_votes.py). 4 replicas x 24 stay
        # below PostgreSQL's default max_connections of 100.
        return create_engine(url, pool_pre_ping=True, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_SIZE)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:  # bad URL or missing driver
        raise StoreOpenError(
            f"cannot open study store {url!r} ({exc}); use sqlite:///PATH or "
            f"postgresql+psycopg://USER@HOST/DB (pip install 'screensr[postgres]')"
        ) from exc


class Database:
    """An engine with serialised write transactions and group commit.

    Args:
        url: SQLAlchemy URL (already normalised).
        synchronous: SQLite ``PRAGMA synchronous``.
    """

    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        self.url = url
        self.engine: Engine = make_engine(url, synchronous)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # In-process writer lock: per SQLite file (shared by every store on that file), per store
        # otherwise (PostgreSQL serialises writers of a study with a row lock as well).
        self.lock = _sqlite_lock(str(self.engine.url.database)) if self.is_sqlite else threading.Lock()
        # Requests waiting for the writer lock; whoever takes the lock commits all of them at once.
        self._pending: list[Any] = []
        self._batch_cond = threading.Condition()
        self._batch_in_flight = False
        database = self.engine.url.database if self.is_sqlite else None
        self._lock_file = (
            Path(f"{database}-writer.lock")
            if database and database != ":memory:" and importlib.util.find_spec("fcntl") is not None
            else None
        )

    # ----------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised write transaction (takes the in-process writer lock)."""
        with self.lock, self.transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, the in-process writer lock already held; BEGIN is retried while
        another process holds SQLite's write lock beyond the busy timeout."""
        with self._process_lock():
            with self._begin() as conn:
                yield conn

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        """SQLite: an OS file lock beside the database, taken before BEGIN IMMEDIATE.

        Processes writing one SQLite file then queue in the kernel, which wakes the next one the
        moment the lock is free, instead of in SQLite's busy handler, which polls with sleeps of
        up to 100 ms. Not needed (a no-op) for server databases or where ``fcntl`` is missing.
        """
        if self._lock_file is None:
            yield
            return
        import fcntl

        with open(self._lock_file, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        for attempt in range(20):
            conn = self.engine.connect()
            conn.execution_options(study_write=True)
            try:
                trans = conn.begin()
                break
            except OperationalError as exc:
                conn.close()
                if "locked" not in str(exc).lower() or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))
        try:
            with trans:
                yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (no writer lock)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # ----------------------------------------------------------------- group commit

    def submit(
        self,
        request: R,
        apply: Callable[[Connection, R], Any],
        recover: Callable[[R], Any],
        request_errors: tuple[type[BaseException], ...],
        prepare: Callable[[Connection, Sequence[R]], None] | None = None,
    ) -> Any:
        """Queue ``request`` and return its outcome once committed (group commit).

        The first caller to find no batch in flight becomes the leader: it takes every queued
        request, commits them in one transaction (:meth:`commit_batch`) and wakes the waiters,
        whose requests are then done; a waiter whose request arrived too late leads the next batch.

        Raises:
            whatever ``apply`` raised for this request.
        """
        with self._batch_cond:
            self._pending.append(request)
            while not request.done and self._batch_in_flight:
                self._batch_cond.wait()
            if not request.done:
                self._batch_in_flight = True
                batch, self._pending = self._pending, []
            else:
                batch = []
        if batch:
            try:
                with self.lock:
                    self.commit_batch(batch, apply, recover, request_errors, prepare)
            finally:
                with self._batch_cond:
                    self._batch_in_flight = False
                    self._batch_cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.outcome is not None  # set by commit_batch for every request without error
        return request.outcome

    def commit_batch(
        self,
        batch: Sequence[R],
        apply: Callable[[Connection, R], Any],
        recover: Callable[[R], Any],
        request_errors: tuple[type[BaseException], ...],
        prepare: Callable[[Connection, Sequence[R]], None] | None = None,
    ) -> None:
        """Apply ``batch`` in one transaction (writer lock held); every request ends ``done``.

        Args:
            apply: applies one request inside the open transaction and returns its outcome.
            recover: for a request the database refused (``IntegrityError``), the outcome of the
                row that is already stored (e.g. the vote a racing replica wrote), or ``None``.
            request_errors: exceptions ``apply`` raises after checking a request and before
                writing anything for it: they fail that request only, the batch goes on.
            prepare: called first in each transaction with the requests it will apply, to take
                the locks they need in one fixed order (writers on a server database, several
                replicas among them, then never deadlock on each other's half-taken locks).
        """
        try:
            with self.transaction() as conn:
                if prepare is not None:
                    prepare(conn, batch)
                for req in batch:
                    try:
                        req.outcome = apply(conn, req)
                    except request_errors as exc:  # checked before any write
                        req.error = exc
        except IntegrityError:
            # Only reachable when a writer bypassed our serialisation (e.g. a second replica on
            # SQLite over a network share): the database refused a row. Redo one by one, so one
            # refused row does not sink the others.
            for req in batch:
                req.outcome, req.error = None, None
                try:
                    with self.transaction() as conn:
                        if prepare is not None:
                            prepare(conn, [req])
                        req.outcome = apply(conn, req)
                except IntegrityError as exc:
                    req.outcome = recover(req)
                    if req.outcome is None:
                        req.error = exc
                except Exception as exc:  # noqa: BLE001 - handed to the caller that owns the request
                    req.error = exc
        except Exception as exc:  # noqa: BLE001 - e.g. the database went away: nothing was committed
            for req in batch:
                req.outcome, req.error = None, exc
        for req in batch:
            req.done = True
