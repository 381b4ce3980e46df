"""Storage of user studies: studies, trials, participants, assignments and an append-only vote log.

SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL through psycopg 3) for shared deployments.
What the database itself guarantees, so that no vote is lost and none is counted twice:

* one vote per (participant, trial, criterion): a UNIQUE constraint; a repeated submit (refresh,
  double click, replay, second tab) is recognised and ignored (:meth:`StudyStore.record_vote`
  returns ``recorded=False``);
* the votes table is append-only: triggers reject UPDATE and DELETE (SQLite and PostgreSQL);
* every vote row carries ``row_hash = sha256(prev_hash || canonical row)``, chained per study in
  ``seq`` order (UNIQUE ``(study, seq)`` and ``(study, prev_hash)`` forbid forks), so editing,
  deleting or reordering stored rows makes :meth:`StudyStore.verify` fail; the head hash can be
  published with the results;
* trials are assigned by the server when a participant is created, with the on-screen order of
  the candidates recorded; the client submits only a screen position, which the server maps to
  the method.

Writers serialise per database: ``BEGIN IMMEDIATE`` on SQLite (behind an in-process lock and an
OS file lock, so threads and processes queue without SQLite's sleeping busy handler) and
``SELECT ... FOR UPDATE`` on the study row on PostgreSQL. Concurrent votes of one process are
group-committed: one transaction (one fsync with ``synchronous=FULL``) carries every vote that
arrived while the previous one was being written, each still checked and chained one by one.
Participants' tokens and the admin secret are stored as hashes only.

Example:
    >>> store = StudyStore("sqlite:///studies.sqlite")        # doctest: +SKIP
    >>> info, secret, created = store.create_study(config)     # doctest: +SKIP
    >>> tokens = store.add_participants(config.name, 10)       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from core.secrets import check_secret, hash_secret  # noqa: F401  (re-exported for the pages and CLI)
from leaderboard.study import StudyConfig, StudyConfigError, assign_trials, build_trials, config_from_dict

ENV_STORE = "SCREENSR_STUDY_STORE"

metadata = MetaData()

studies = Table(
    "study_studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("config_json", Text, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("admin_hash", String(200), nullable=False),
    Column("genesis_hash", String(64), nullable=False),
    Column("app_version", String(40), nullable=False),
    Column("created_at", String(40), nullable=False),
)

trials = Table(
    "study_trials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("study_studies.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("image_id", String(255), nullable=False),
    Column("candidates_json", Text, nullable=False),
    Column("gold_answer", String(255)),
    UniqueConstraint("study_id", "position"),
)

participants = Table(
    "study_participants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("study_studies.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("enrolled_via", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("study_id", "number"),
)

assignments = Table(
    "study_assignments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("participant_id", Integer, ForeignKey("study_participants.id"), nullable=False),
    Column("ord", Integer, nullable=False),
    Column("trial_id", Integer, ForeignKey("study_trials.id"), nullable=False),
    Column("shown_json", Text, nullable=False),
    Column("served_at", String(40)),
    UniqueConstraint("participant_id", "ord"),
    UniqueConstraint("participant_id", "trial_id"),
)

votes = Table(
    "study_votes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("study_studies.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("participant_id", Integer, ForeignKey("study_participants.id"), nullable=False),
    Column("trial_id", Integer, ForeignKey("study_trials.id"), nullable=False),
    Column("assignment_id", Integer, ForeignKey("study_assignments.id"), nullable=False),
    Column("criterion", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("choice", String(255), nullable=False),
    Column("served_at", String(40)),
    Column("voted_at", String(40), nullable=False),
    Column("app_version", String(40), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
    UniqueConstraint("participant_id", "trial_id", "criterion", name="uq_study_vote_once"),
    UniqueConstraint("study_id", "seq", name="uq_study_vote_seq"),
    UniqueConstraint("study_id", "prev_hash", name="uq_study_vote_chain"),
)

# Append-only: the database rejects UPDATE and DELETE on votes, whoever issues them.
for _op in ("UPDATE", "DELETE"):
    event.listen(
        votes,
        "after_create",
        DDL(
            f"CREATE TRIGGER study_votes_no_{_op.lower()} BEFORE {_op} ON study_votes "
            f"BEGIN SELECT RAISE(ABORT, 'study_votes is append-only: {_op} rejected'); END"
        ).execute_if(dialect="sqlite"),
    )
event.listen(
    votes,
    "after_create",
    DDL(
        "CREATE OR REPLACE FUNCTION study_votes_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'study_votes is append-only: %% rejected', TG_OP; END; $$ LANGUAGE plpgsql"
    ).execute_if(dialect="postgresql"),
)
event.listen(
    votes,
    "after_create",
    DDL(
        "CREATE TRIGGER study_votes_no_change BEFORE UPDATE OR DELETE ON study_votes "
        "FOR EACH ROW EXECUTE FUNCTION study_votes_append_only()"
    ).execute_if(dialect="postgresql"),
)


# The vote path's statements, written once as text: building SQLAlchemy expressions (and their
# cache keys) on every call cost more CPU than the queries themselves.
_SQL_EXISTING = text(
    "SELECT v.choice, v.seq, v.row_hash FROM study_votes v "
    "JOIN study_assignments a ON v.trial_id = a.trial_id "
    "WHERE a.id = :aid AND a.participant_id = :pid AND v.participant_id = :pid AND v.criterion = :crit"
)
_SQL_ASSIGNMENT = text(
    "SELECT participant_id, trial_id, shown_json, served_at FROM study_assignments WHERE id = :aid"
)
_SQL_SERVED = text("SELECT served_at FROM study_assignments WHERE id = :aid")
_SQL_MARK_SERVED = text("UPDATE study_assignments SET served_at = :now WHERE id = :aid AND served_at IS NULL")
_SQL_HEAD = text("SELECT seq, row_hash FROM study_votes WHERE study_id = :sid ORDER BY seq DESC LIMIT 1")
_VOTE_COLUMNS = [c.name for c in votes.columns if c.name != "id"]
_SQL_INSERT_VOTE = text(
    f"INSERT INTO study_votes ({', '.join(_VOTE_COLUMNS)}) VALUES ({', '.join(':' + c for c in _VOTE_COLUMNS)})"
)


class StudyNotFound(LookupError):
    """A study name that is not in the store."""

    is_user_error = True


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds (stored as text, so it hashes identically everywhere)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def app_version() -> str:
    """Version of the installed ``screensr`` distribution, recorded with every vote."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("screensr")
    except PackageNotFoundError:
        return "unknown"


def hash_token(token: str) -> str:
    """sha256 of a participant token; tokens are 144 random bits, so a fast hash suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def canonical_vote(row: dict[str, Any], study_name: str) -> str:
    """The canonical text of a vote that its hash covers (sorted-key compact JSON)."""
    fields = {
        "study": study_name,
        "seq": int(row["seq"]),
        "participant": int(row["participant_id"]),
        "trial": int(row["trial_id"]),
        "assignment": int(row["assignment_id"]),
        "criterion": row["criterion"],
        "position": int(row["position"]),
        "choice": row["choice"],
        "served_at": row["served_at"],
        "voted_at": row["voted_at"],
        "app_version": row["app_version"],
        "config_hash": row["config_hash"],
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``sha256(prev_hash || "\\n" || canonical)`` as hex."""
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def default_store_url() -> str:
    """``$SCREENSR_STUDY_STORE``, else ``sqlite:///$SCREENSR_HOME/studies.sqlite``."""
    if os.environ.get(ENV_STORE):
        return os.environ[ENV_STORE]
    home = Path(os.environ.get("SCREENSR_HOME", Path.home() / ".cache" / "screensr"))
    return f"sqlite:///{home / 'studies.sqlite'}"


def normalise_url(url_or_path: str | os.PathLike[str] | None) -> str:
    """A SQLAlchemy URL from a URL, a plain file path (SQLite) or ``None`` (the default store)."""
    if url_or_path is None:
        return default_store_url()
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


# One lock per SQLite file in this process: threads then wait on a mutex (woken at once) instead
# of SQLite's busy handler, which sleeps in steps of up to 100 ms and caps throughput.
_SQLITE_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_LOCKS_GUARD = threading.Lock()


def _sqlite_lock(database: str) -> threading.Lock:
    with _SQLITE_LOCKS_GUARD:
        return _SQLITE_LOCKS.setdefault(database, threading.Lock())


@dataclass(frozen=True)
class StudyInfo:
    """A stored study: its id, config and hashes."""

    id: int
    name: str
    config: StudyConfig
    config_hash: str
    genesis_hash: str
    created_at: str


@dataclass(frozen=True)
class Participant:
    """A participant of one study (``number`` counts from 0 in enrolment order)."""

    id: int
    study_id: int
    study_name: str
    number: int


@dataclass(frozen=True)
class TrialView:
    """One assigned trial as the voting page shows it.

    Attributes:
        assignment_id: the server-side assignment the votes refer to.
        order: 0-based place in the participant's sequence; ``total`` is its length.
        image_id: the image (never shown to the participant).
        shown: candidate names in screen order (never shown; the page shows A, B, C...).
        criteria_done: criterion keys already voted for this trial.
        served_at: when this trial was first served (dwell time starts there).
    """

    assignment_id: int
    order: int
    total: int
    image_id: str
    shown: tuple[str, ...]
    criteria_done: frozenset[str]
    is_gold: bool
    served_at: str | None


@dataclass(frozen=True)
class VoteOutcome:
    """Result of :meth:`StudyStore.record_vote`; ``recorded`` is False for an ignored repeat."""

    recorded: bool
    choice: str
    seq: int
    row_hash: str


@dataclass
class _WriteRequest:
    """A vote (``kind="vote"``) or a first-serve time (``"serve"``) waiting for the writer lock."""

    kind: str
    participant: Participant | None
    assignment_id: int
    criterion: str = ""
    position: int = 0
    done: bool = False
    outcome: VoteOutcome | str | None = None
    error: BaseException | None = None


@dataclass
class VerifyReport:
    """Outcome of :meth:`StudyStore.verify`: ``ok`` only when every link of the chain holds."""

    study: str
    n_votes: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class StudyStore:
    """Studies, participants, assignments and votes in one SQLAlchemy database.

    Args:
        url: SQLAlchemy URL, a SQLite file path, or ``None`` for :func:`default_store_url`.
        synchronous: SQLite ``PRAGMA synchronous`` (``FULL``: every committed vote is on disk
            before the participant sees the confirmation, so a power cut loses none).

    Thread-safe: one instance may serve all Streamlit sessions (share it through
    ``st.cache_resource``); separate processes open their own instance on the same URL.
    """

    def __init__(self, url: str | os.PathLike[str] | None = None, synchronous: str = "FULL") -> None:
        self.url = normalise_url(url)
        self.engine: Engine = self._make_engine(self.url, synchronous)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # In-process writer lock: per SQLite file (shared by every store on that file), per store
        # otherwise (PostgreSQL serialises writers of a study with a row lock as well).
        self._lock = _sqlite_lock(str(self.engine.url.database)) if self.is_sqlite else threading.Lock()
        # Votes waiting for the writer lock; whoever takes the lock commits all of them at once.
        self._pending: list[_WriteRequest] = []
        self._batch_cond = threading.Condition()
        self._batch_in_flight = False
        database = self.engine.url.database if self.is_sqlite else None
        self._lock_file = (
            Path(f"{database}-writer.lock")
            if database and database != ":memory:" and importlib.util.find_spec("fcntl") is not None
            else None
        )
        self._configs: dict[int, StudyInfo] = {}
        self._app_version = app_version()
        metadata.create_all(self.engine)

    # ----------------------------------------------------------------- engine & transactions

    @staticmethod
    def _make_engine(url: str, synchronous: str) -> Engine:
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
            return create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # bad URL or missing driver: say which and how to fix
            raise ValueError(
                f"cannot open study store {url!r} ({exc}); use sqlite:///PATH or "
                f"postgresql+psycopg://USER@HOST/DB (pip install 'screensr[postgres]')"
            ) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A serialised write transaction (takes the in-process writer lock)."""
        with self._lock, self._transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
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
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # ----------------------------------------------------------------- studies

    def create_study(
        self, config: StudyConfig, admin_secret: str | None = None
    ) -> tuple[StudyInfo, str | None, bool]:
        """Store a (validated) study and its trials; idempotent for an identical definition.

        Returns:
            ``(info, admin_secret, created)``: ``admin_secret`` is the secret to hand to the
            administrator (generated when not given) and ``None`` when the study already existed.

        Raises:
            StudyConfigError: a study of that name exists with a different definition.
        """
        config_hash = config.config_hash()
        with self._write() as conn:
            row = conn.execute(select(studies).where(studies.c.name == config.name)).mappings().first()
            if row is not None:
                if row["config_hash"] != config_hash:
                    raise StudyConfigError(
                        f"study {config.name!r} already exists in {self.url} with a different definition; "
                        f"stored votes are never overwritten, so give the changed study a new name"
                    )
                return self._info_from_row(row), None, False
            secret = admin_secret or secrets.token_urlsafe(18)
            genesis = hashlib.sha256(f"screensr-study|{config.name}|{config_hash}".encode()).hexdigest()
            study_id = conn.execute(
                studies.insert().values(
                    name=config.name,
                    config_json=json.dumps(config.to_dict(), sort_keys=True),
                    config_hash=config_hash,
                    admin_hash=hash_secret(secret),
                    genesis_hash=genesis,
                    app_version=self._app_version,
                    created_at=utc_now(),
                )
            ).inserted_primary_key[0]
            conn.execute(
                trials.insert(),
                [
                    {
                        "study_id": study_id,
                        "position": t.position,
                        "image_id": t.image_id,
                        "candidates_json": json.dumps(list(t.candidates)),
                        "gold_answer": t.gold_answer,
                    }
                    for t in build_trials(config)
                ],
            )
        return self.study(config.name), secret, True

    def _info_from_row(self, row: Any) -> StudyInfo:
        cached = self._configs.get(row["id"])
        if cached is not None:
            return cached
        info = StudyInfo(
            id=row["id"],
            name=row["name"],
            config=config_from_dict(json.loads(row["config_json"]), where=f"stored study {row['name']!r}"),
            config_hash=row["config_hash"],
            genesis_hash=row["genesis_hash"],
            created_at=row["created_at"],
        )
        self._configs[row["id"]] = info
        return info

    def study(self, name: str) -> StudyInfo:
        """The stored study called ``name``.

        Raises:
            StudyNotFound: no such study (the message lists the stored ones).
        """
        with self._read() as conn:
            row = conn.execute(select(studies).where(studies.c.name == name)).mappings().first()
        if row is None:
            known = self.study_names()
            raise StudyNotFound(
                f"no study named {name!r} in {self.url}; known studies: {', '.join(known) or 'none'} "
                f"(create one with `screensr board study create STUDY.yaml`)"
            )
        return self._info_from_row(row)

    def _study_by_id(self, study_id: int) -> StudyInfo:
        if study_id in self._configs:
            return self._configs[study_id]
        with self._read() as conn:
            row = conn.execute(select(studies).where(studies.c.id == study_id)).mappings().one()
        return self._info_from_row(row)

    def study_names(self) -> list[str]:
        """Names of all stored studies, oldest first."""
        with self._read() as conn:
            return list(conn.execute(select(studies.c.name).order_by(studies.c.id)).scalars())

    def check_admin(self, name: str, secret: str) -> bool:
        """Whether ``secret`` is the admin secret of study ``name``."""
        with self._read() as conn:
            stored = conn.execute(select(studies.c.admin_hash).where(studies.c.name == name)).scalar()
        return stored is not None and bool(secret) and check_secret(secret, stored)

    # ----------------------------------------------------------------- participants

    def add_participants(self, name: str, n: int, enrolled_via: str = "token") -> list[str]:
        """Create ``n`` participants with fresh tokens and their server-side trial assignments.

        Returns:
            The tokens (shown once; only their hashes are stored).
        """
        if n < 0:
            raise ValueError(f"number of participants must be >= 0, got {n}")
        info = self.study(name)
        tokens: list[str] = []
        with self._write() as conn:
            self._lock_study(conn, info.id)
            trial_rows = conn.execute(select(trials).where(trials.c.study_id == info.id)).mappings().all()
            by_position = {r["position"]: r["id"] for r in trial_rows}
            specs = build_trials(info.config)
            load_rows = conn.execute(
                select(trials.c.position, assignments.c.shown_json)
                .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
                .where(trials.c.study_id == info.id)
            ).all()
            trial_load: dict[int, int] = {}
            method_load: dict[str, int] = {}
            for position, shown_json in load_rows:
                trial_load[position] = trial_load.get(position, 0) + 1
                for m in json.loads(shown_json):
                    method_load[m] = method_load.get(m, 0) + 1
            number = conn.execute(
                select(func.coalesce(func.max(participants.c.number), -1)).where(
                    participants.c.study_id == info.id
                )
            ).scalar_one()
            for _ in range(n):
                number += 1
                token = secrets.token_urlsafe(18)
                pid = conn.execute(
                    participants.insert().values(
                        study_id=info.id,
                        number=number,
                        token_hash=hash_token(token),
                        enrolled_via=enrolled_via,
                        created_at=utc_now(),
                    )
                ).inserted_primary_key[0]
                plan = assign_trials(info.config, specs, number, trial_load, method_load)
                conn.execute(
                    assignments.insert(),
                    [
                        {
                            "participant_id": pid,
                            "ord": a.order,
                            "trial_id": by_position[a.trial_position],
                            "shown_json": json.dumps(list(a.shown)),
                        }
                        for a in plan
                    ],
                )
                for a in plan:
                    trial_load[a.trial_position] = trial_load.get(a.trial_position, 0) + 1
                    for m in a.shown:
                        method_load[m] = method_load.get(m, 0) + 1
                tokens.append(token)
        return tokens

    def enrol(self, name: str) -> str:
        """Open enrolment: a new participant of study ``name``; returns their token.

        Raises:
            PermissionError: the study does not allow open enrolment.
        """
        if not self.study(name).config.open_enrolment:
            raise PermissionError(f"study {name!r} admits participants by personal link only")
        return self.add_participants(name, 1, enrolled_via="open")[0]

    def participant(self, token: str) -> Participant | None:
        """The participant holding ``token``, or ``None`` for an unknown token."""
        if not token:
            return None
        with self._read() as conn:
            row = conn.execute(
                select(participants.c.id, participants.c.study_id, participants.c.number, studies.c.name)
                .select_from(participants.join(studies, participants.c.study_id == studies.c.id))
                .where(participants.c.token_hash == hash_token(token))
            ).first()
        if row is None:
            return None
        return Participant(id=row[0], study_id=row[1], number=row[2], study_name=row[3])

    def trial_views(self, participant_id: int) -> list[TrialView]:
        """Every assignment of a participant, in their order, with the criteria already voted."""
        with self._read() as conn:
            rows = conn.execute(
                select(
                    assignments.c.id,
                    assignments.c.ord,
                    assignments.c.shown_json,
                    assignments.c.served_at,
                    trials.c.image_id,
                    trials.c.gold_answer,
                )
                .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
                .where(assignments.c.participant_id == participant_id)
                .order_by(assignments.c.ord)
            ).all()
            done_rows = conn.execute(
                select(votes.c.assignment_id, votes.c.criterion).where(votes.c.participant_id == participant_id)
            ).all()
        done: dict[int, set[str]] = {}
        for aid, crit in done_rows:
            done.setdefault(aid, set()).add(crit)
        return [
            TrialView(
                assignment_id=r[0],
                order=r[1],
                total=len(rows),
                image_id=r[4],
                shown=tuple(json.loads(r[2])),
                criteria_done=frozenset(done.get(r[0], ())),
                is_gold=r[5] is not None,
                served_at=r[3],
            )
            for r in rows
        ]

    def next_trial(self, participant: Participant) -> TrialView | None:
        """The first assigned trial with a criterion still to vote, or ``None`` when finished."""
        keys = {c.key for c in self._study_by_id(participant.study_id).config.criteria}
        for view in self.trial_views(participant.id):
            if not keys <= view.criteria_done:
                return view
        return None

    def mark_served(self, assignment_id: int) -> str:
        """Record when a trial was first shown (later calls keep the first time); returns it."""
        with self._read() as conn:
            served = conn.execute(_SQL_SERVED, {"aid": assignment_id}).scalar()
        if served is not None:
            return served
        outcome = self._submit(_WriteRequest("serve", None, assignment_id))
        assert isinstance(outcome, str)
        return outcome

    # ----------------------------------------------------------------- votes

    def _lock_study(self, conn: Connection, study_id: int) -> None:
        # PostgreSQL: serialise writers of one study on its row (SQLite is already serialised by
        # BEGIN IMMEDIATE; SQLAlchemy renders no FOR UPDATE there).
        if not self.is_sqlite:
            conn.execute(select(studies.c.id).where(studies.c.id == study_id).with_for_update())

    def record_vote(self, participant: Participant, assignment_id: int, criterion: str, position: int) -> VoteOutcome:
        """Append one vote: the candidate at screen ``position`` of an assigned trial wins ``criterion``.

        A repeat for the same (participant, trial, criterion) is ignored: the stored vote stays,
        and the outcome has ``recorded=False`` and the stored choice. The call returns once the
        vote is committed (durably with SQLite's ``synchronous=FULL``).

        Concurrent calls are group-committed: a caller that obtains the writer lock writes every
        vote queued meanwhile in one transaction (one fsync), each still checked and chained
        one by one. This is what sustains hundreds of durable votes per second on SQLite.

        Raises:
            PermissionError: the assignment belongs to another participant.
            ValueError: unknown criterion, or a position outside the candidates shown.
        """
        info = self._study_by_id(participant.study_id)
        if criterion not in {c.key for c in info.config.criteria}:
            raise ValueError(
                f"criterion {criterion!r} is not part of study {info.name!r} "
                f"({', '.join(c.key for c in info.config.criteria)})"
            )
        # A repeat (refresh, double click, second tab) is answered from a read, without writing.
        with self._read() as conn:
            existing = self._existing_vote(conn, participant.id, assignment_id, criterion)
        if existing is not None:
            return existing
        outcome = self._submit(_WriteRequest("vote", participant, assignment_id, criterion, position))
        assert isinstance(outcome, VoteOutcome)
        return outcome

    def _submit(self, request: _WriteRequest) -> VoteOutcome | str:
        """Queue a write and return its result once committed (group commit, see :meth:`record_vote`).

        The first caller to find no batch in flight becomes the leader: it takes every queued
        request, commits them in one transaction and wakes the waiters, whose requests are then
        done; a waiter whose request arrived too late leads the next batch.
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
                with self._lock:
                    self._commit_batch(batch)
            finally:
                with self._batch_cond:
                    self._batch_in_flight = False
                    self._batch_cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.outcome is not None  # set by _commit_batch for every request without error
        return request.outcome

    def _commit_batch(self, batch: list[_WriteRequest]) -> None:
        """Write ``batch`` in one transaction (writer lock held); every request ends ``done``."""
        try:
            with self._transaction() as conn:
                for req in batch:
                    try:
                        req.outcome = self._apply(conn, req)
                    except (PermissionError, ValueError) as exc:  # checked before any write
                        req.error = exc
        except IntegrityError:
            # Only reachable when a writer bypassed our serialisation (e.g. a second replica on
            # SQLite over a network share): the database refused a row. Redo one by one, so one
            # refused row does not sink the others.
            for req in batch:
                req.outcome, req.error = None, None
                try:
                    with self._transaction() as conn:
                        req.outcome = self._apply(conn, req)
                except IntegrityError as exc:
                    if req.participant is not None:
                        with self._read() as conn:
                            req.outcome = self._existing_vote(
                                conn, req.participant.id, req.assignment_id, req.criterion
                            )
                    if req.outcome is None:
                        req.error = exc
                except Exception as exc:  # noqa: BLE001 - handed to the caller that owns the vote
                    req.error = exc
        except Exception as exc:  # noqa: BLE001 - e.g. the database went away: nothing was committed
            for req in batch:
                req.outcome, req.error = None, exc
        for req in batch:
            req.done = True

    @staticmethod
    def _existing_vote(conn: Connection, participant_id: int, assignment_id: int, criterion: str) -> VoteOutcome | None:
        row = conn.execute(_SQL_EXISTING, {"aid": assignment_id, "pid": participant_id, "crit": criterion}).first()
        return None if row is None else VoteOutcome(False, row[0], row[1], row[2])

    def _apply(self, conn: Connection, req: _WriteRequest) -> VoteOutcome | str:
        if req.kind == "serve":
            conn.execute(_SQL_MARK_SERVED, {"aid": req.assignment_id, "now": utc_now()})
            served = conn.execute(_SQL_SERVED, {"aid": req.assignment_id}).scalar()
            if served is None:
                raise ValueError(f"no assigned trial with id {req.assignment_id}")
            return served
        return self._insert_vote(conn, req)

    def _insert_vote(self, conn: Connection, req: _WriteRequest) -> VoteOutcome:
        """Check one vote and append it to the chain inside the open transaction ``conn``."""
        participant = req.participant
        assert participant is not None  # votes always carry their participant
        info = self._study_by_id(participant.study_id)
        self._lock_study(conn, info.id)
        arow = conn.execute(_SQL_ASSIGNMENT, {"aid": req.assignment_id}).mappings().first()
        if arow is None or arow["participant_id"] != participant.id:
            raise PermissionError(f"trial {req.assignment_id} is not assigned to this participant")
        shown = json.loads(arow["shown_json"])
        if not 0 <= req.position < len(shown):
            raise ValueError(f"position {req.position} is outside the {len(shown)} candidates shown")
        existing = self._existing_vote(conn, participant.id, req.assignment_id, req.criterion)
        if existing is not None:
            return existing
        last = conn.execute(_SQL_HEAD, {"sid": info.id}).first()
        seq, prev = (1, info.genesis_hash) if last is None else (last[0] + 1, last[1])
        row = {
            "study_id": info.id,
            "seq": seq,
            "participant_id": participant.id,
            "trial_id": arow["trial_id"],
            "assignment_id": req.assignment_id,
            "criterion": req.criterion,
            "position": req.position,
            "choice": shown[req.position],
            "served_at": arow["served_at"],
            "voted_at": utc_now(),
            "app_version": self._app_version,
            "config_hash": info.config_hash,
            "prev_hash": prev,
        }
        row["row_hash"] = chain_hash(prev, canonical_vote(row, info.name))
        conn.execute(_SQL_INSERT_VOTE, row)
        return VoteOutcome(True, row["choice"], seq, row["row_hash"])

    def verify(self, name: str, expected_head: str | None = None) -> VerifyReport:
        """Recompute the hash chain of a study's votes.

        Detects edited rows (hash mismatch), deleted or inserted rows (broken links or a gap in
        ``seq``), and, with ``expected_head`` (a published head hash), truncation at the end.
        """
        info = self.study(name)
        report = VerifyReport(study=name, n_votes=0, head_hash=info.genesis_hash)
        prev = info.genesis_hash
        expected_seq = 1
        with self._read() as conn:
            result = conn.execute(select(votes).where(votes.c.study_id == info.id).order_by(votes.c.seq)).mappings()
            for row in result:
                report.n_votes += 1
                if row["seq"] != expected_seq:
                    report.problems.append(f"vote seq {row['seq']}: expected seq {expected_seq} (rows missing)")
                if row["prev_hash"] != prev:
                    report.problems.append(f"vote seq {row['seq']}: prev_hash does not match the previous row")
                recomputed = chain_hash(row["prev_hash"], canonical_vote(dict(row), info.name))
                if recomputed != row["row_hash"]:
                    report.problems.append(f"vote seq {row['seq']}: content does not match its hash (edited)")
                prev = row["row_hash"]
                expected_seq = row["seq"] + 1
        report.head_hash = prev
        if expected_head is not None and expected_head != prev:
            report.problems.append(f"head hash {prev} differs from the expected {expected_head}")
        return report

    # ----------------------------------------------------------------- reading for analysis

    def votes_frame(self, name: str) -> Any:
        """All votes of a study as a ``pandas.DataFrame``, one row per vote in chain order.

        Columns: ``seq, participant, trial, image_id, criterion, position, choice, shown``
        (``|``-joined screen order), ``n_shown, is_gold, gold_answer, correct, served_at,
        voted_at`` (UTC timestamps), ``dwell_s`` (seconds from first serve to vote),
        ``app_version, config_hash, prev_hash, row_hash``.
        """
        import pandas as pd

        info = self.study(name)
        query = (
            select(
                votes.c.seq,
                participants.c.number.label("participant"),
                trials.c.position.label("trial"),
                trials.c.image_id,
                votes.c.criterion,
                votes.c.position,
                votes.c.choice,
                assignments.c.shown_json,
                trials.c.gold_answer,
                votes.c.served_at,
                votes.c.voted_at,
                votes.c.app_version,
                votes.c.config_hash,
                votes.c.prev_hash,
                votes.c.row_hash,
            )
            .select_from(
                votes.join(participants, votes.c.participant_id == participants.c.id)
                .join(trials, votes.c.trial_id == trials.c.id)
                .join(assignments, votes.c.assignment_id == assignments.c.id)
            )
            .where(votes.c.study_id == info.id)
            .order_by(votes.c.seq)
        )
        with self._read() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=list(query.selected_columns.keys()))
        shown = frame["shown_json"].map(json.loads) if len(frame) else pd.Series([], dtype=object)
        frame["shown"] = shown.map(lambda s: "|".join(s)).astype(str) if len(frame) else pd.Series([], dtype=str)
        frame["n_shown"] = shown.map(len).astype(int) if len(frame) else pd.Series([], dtype=int)
        frame = frame.drop(columns=["shown_json"])
        frame["is_gold"] = frame["gold_answer"].notna()
        frame["correct"] = frame["is_gold"] & (frame["choice"] == frame["gold_answer"])
        frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True, format="ISO8601")
        frame["voted_at"] = pd.to_datetime(frame["voted_at"], utc=True, format="ISO8601")
        frame["dwell_s"] = (frame["voted_at"] - frame["served_at"]).dt.total_seconds()
        order = [
            "seq", "participant", "trial", "image_id", "criterion", "position", "choice", "shown", "n_shown",
            "is_gold", "gold_answer", "correct", "served_at", "voted_at", "dwell_s", "app_version",
            "config_hash", "prev_hash", "row_hash",
        ]  # fmt: skip
        return frame[order].reset_index(drop=True)

    def progress(self, name: str) -> Any:
        """Per-participant progress of a study (``pandas.DataFrame``): trials assigned/completed, votes."""
        import pandas as pd

        info = self.study(name)
        n_criteria = len(info.config.criteria)
        with self._read() as conn:
            assigned = conn.execute(
                select(participants.c.id, participants.c.number, participants.c.enrolled_via,
                       participants.c.created_at, func.count(assignments.c.id))
                .select_from(participants.outerjoin(assignments, assignments.c.participant_id == participants.c.id))
                .where(participants.c.study_id == info.id)
                .group_by(participants.c.id, participants.c.number, participants.c.enrolled_via,
                          participants.c.created_at)
                .order_by(participants.c.number)
            ).all()  # fmt: skip
            voted = dict(
                conn.execute(
                    select(votes.c.participant_id, func.count())
                    .where(votes.c.study_id == info.id)
                    .group_by(votes.c.participant_id)
                ).all()
            )
        rows = [
            {
                "participant": number,
                "enrolled_via": via,
                "created_at": created,
                "trials": n_assigned,
                "votes": voted.get(pid, 0),
                "votes_expected": n_assigned * n_criteria,
                "complete": voted.get(pid, 0) >= n_assigned * n_criteria,
            }
            for pid, number, via, created, n_assigned in assigned
        ]
        cols = ["participant", "enrolled_via", "created_at", "trials", "votes", "votes_expected", "complete"]
        return pd.DataFrame(rows, columns=cols)
