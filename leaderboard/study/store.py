"""Storage of user studies: studies, trials, participants, assignments and an append-only vote log.

SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL through psycopg 3) for shared deployments.
What the database itself guarantees, so that no vote is lost and none is counted twice:

* one vote per (participant, trial, criterion): a UNIQUE constraint; a repeated submit (refresh,
  double click, replay, second tab) is recognised and ignored (:meth:`StudyStore.record_vote`
  returns ``recorded=False``);
* the votes table is append-only: triggers reject UPDATE and DELETE (SQLite and PostgreSQL);
  studies, trials and participants reject both too, and an assignment accepts only its first
  ``served_at``;
* every vote row carries ``row_hash = sha256(prev_hash || canonical row)``, chained per study in
  ``seq`` order (UNIQUE ``(study, seq)`` and ``(study, prev_hash)`` forbid forks). The chain
  starts at a genesis hash derived from the study's config hash and a hash of its trials
  (images, candidates, gold answers); each participant's assignments (trial order and the
  candidates in screen order) are hashed into a plan hash when the participant is created; and
  each vote's canonical row includes what was shown with it (image, screen order, gold answer)
  and the participant's plan hash. :meth:`StudyStore.verify` recomputes all of it, so editing,
  deleting, inserting or reordering votes, or editing the stored config, a trial, a gold answer
  or what a participant was shown, makes it fail. The head hash can be published with the
  results; only the published head detects votes removed from the end (see :meth:`verify`);
* trials are assigned by the server when a participant is created, with the on-screen order of
  the candidates recorded; the client submits only a screen position, which the server maps to
  the method. Unless the study YAML fixes a seed, the assignment RNG uses a secret seed drawn
  when the study is created, so nobody can recompute which method sits behind a screen position.

Studies created before trials, plans and shown candidates were chained (chain version 1) keep
their original chain (their published head hashes stay valid) and verify what it covers: the
votes and the config; :class:`VerifyReport` says so in ``notes``.

The tables and their triggers are :mod:`leaderboard.study.schema`; serialised writers and group
commit are :mod:`leaderboard.study.writer` (``SELECT ... FOR UPDATE`` on the study row is added
here for PostgreSQL); the hashes are :mod:`leaderboard.study.chain`. Participants' tokens and the
admin secret are stored as hashes only.

Example:
    >>> store = StudyStore("sqlite:///studies.sqlite")        # doctest: +SKIP
    >>> info, secret, created = store.create_study(config)     # doctest: +SKIP
    >>> tokens = store.add_participants(config.name, 10)       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from core.errors import UserError
from core.paths import screensr_home
from core.secrets import check_secret, hash_secret
from leaderboard.study.assignment import assign_trials, build_trials
from leaderboard.study.chain import (
    CHAIN_VERSION,
    VoteContext,
    canonical_vote,
    chain_hash,
    config_digest,
    genesis_digest,
    plan_digest,
    sha256_hex,
    trials_digest,
)
from leaderboard.study.config import StudyConfig, StudyConfigError, config_from_dict
from leaderboard.study.schema import (
    apply_schema_changes,
    assignments,
    participants,
    schema_changes,
    studies,
    study_incidents,
    trials,
    votes,
)
from leaderboard.study.writer import Database

__all__ = ["StudyStore", "StudyNotFound", "hash_secret", "check_secret", "default_store_url", "normalise_url"]

ENV_STORE = "SCREENSR_STUDY_STORE"

# The vote path's statements, written once as text: building SQLAlchemy expressions (and their
# cache keys) on every call cost more CPU than the queries themselves.
_SQL_EXISTING = text(
    "SELECT v.choice, v.seq, v.row_hash FROM study_votes v "
    "JOIN study_assignments a ON v.trial_id = a.trial_id "
    "WHERE a.id = :aid AND a.participant_id = :pid AND v.participant_id = :pid AND v.criterion = :crit"
)
_SQL_ASSIGNMENT = text(
    "SELECT a.participant_id, a.trial_id, a.shown_json, a.served_at, t.image_id, t.gold_answer, p.plan_hash "
    "FROM study_assignments a JOIN study_trials t ON t.id = a.trial_id "
    "JOIN study_participants p ON p.id = a.participant_id WHERE a.id = :aid"
)
_SQL_SERVED = text("SELECT served_at FROM study_assignments WHERE id = :aid")
_SQL_MARK_SERVED = text("UPDATE study_assignments SET served_at = :now WHERE id = :aid AND served_at IS NULL")
_SQL_HEAD = text("SELECT seq, row_hash FROM study_votes WHERE study_id = :sid ORDER BY seq DESC LIMIT 1")
_VOTE_COLUMNS = [c.name for c in votes.columns if c.name != "id"]
_SQL_INSERT_VOTE = text(
    f"INSERT INTO study_votes ({', '.join(_VOTE_COLUMNS)}) VALUES ({', '.join(':' + c for c in _VOTE_COLUMNS)})"
)


class StudyNotFound(UserError, LookupError):
    """A study name that is not in the store."""


class VoteRejected(UserError, ValueError):
    """A vote for a criterion the study does not ask, or a screen position outside the candidates."""


class NotYourTrial(UserError, PermissionError):
    """A vote on a trial assigned to another participant."""


class EnrolmentClosed(UserError, PermissionError):
    """Open enrolment asked of a study that admits participants by personal link only."""


def _new_id(result: Any) -> int:
    """The primary key of the one row an INSERT result inserted."""
    key = result.inserted_primary_key
    if key is None:  # not an INSERT: a bug in this module
        raise AssertionError("expected the result of a single-row INSERT")
    return int(key[0])


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


def default_store_url() -> str:
    """``$SCREENSR_STUDY_STORE``, else ``sqlite:///$SCREENSR_HOME/studies.sqlite``."""
    if os.environ.get(ENV_STORE):
        return os.environ[ENV_STORE]
    return f"sqlite:///{screensr_home() / 'studies.sqlite'}"


def normalise_url(url_or_path: str | os.PathLike[str] | None) -> str:
    """A SQLAlchemy URL from a URL, a plain file path (SQLite) or ``None`` (the default store)."""
    if url_or_path is None:
        return default_store_url()
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


@dataclass(frozen=True)
class StudyInfo:
    """A stored study: its id, config and hashes."""

    id: int
    name: str
    config: StudyConfig
    config_hash: str
    genesis_hash: str
    created_at: str
    chain_version: int = CHAIN_VERSION
    assignment_seed: int | None = None


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
class WriteRequest:
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
    """Outcome of :meth:`StudyStore.verify`: ``ok`` only when every check holds.

    Attributes:
        study: the study's name.
        n_votes: votes in the chain.
        head_hash: hash of the last vote (the genesis hash when there is none): publish it.
        chain_version: 2 for studies whose chain covers trials, plans and what was shown; 1 for
            studies created by an older version (votes and config only).
        problems: one line per failed check (empty when ``ok``).
        notes: limits of what was checked (e.g. an older chain version), not failures.
    """

    study: str
    n_votes: int
    head_hash: str
    chain_version: int = CHAIN_VERSION
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
        self._db = Database(normalise_url(url), synchronous)
        self.url = self._db.url
        self.engine: Engine = self._db.engine
        self.is_sqlite = self._db.is_sqlite
        self._configs: dict[int, StudyInfo] = {}
        self._app_version = app_version()
        self._upgrade_schema()

    def close(self) -> None:
        """Release the connection pool."""
        self._db.close()

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        return self._db.write()

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return self._db.read()

    def _upgrade_schema(self) -> None:
        """Create the tables, or bring a store written by an older version up to this schema.

        Adds what is missing (tables; the nullable columns of chain version 2; the triggers that
        freeze studies, trials, participants and assignments) and keeps every row: existing
        studies keep chain version 1 (NULL). Opening a current store only reads its schema. The
        changes run in one serialised write transaction that re-checks inside it, so processes
        opening one old store at the same time upgrade it once (a plain ``create_all`` from
        several processes fails with "database is locked" when one of them has just written).
        """
        if not schema_changes(self.engine):
            return
        with self._write() as conn:
            changes = schema_changes(conn)
            if changes:
                apply_schema_changes(conn, changes)

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
                if not self._same_definition(row, config):
                    raise StudyConfigError(
                        f"study {config.name!r} already exists in {self.url} with a different definition; "
                        f"stored votes are never overwritten, so give the changed study a new name"
                    )
                return self._info_from_row(row), None, False
            secret = admin_secret or secrets.token_urlsafe(18)
            specs = build_trials(config)
            trials_hash = trials_digest([(t.position, t.image_id, list(t.candidates), t.gold_answer) for t in specs])
            study_id = _new_id(conn.execute(
                studies.insert().values(
                    name=config.name,
                    config_json=json.dumps(config.to_dict(), sort_keys=True),
                    config_hash=config_hash,
                    admin_hash=hash_secret(secret),
                    genesis_hash=genesis_digest(config.name, config_hash, trials_hash, CHAIN_VERSION),
                    app_version=self._app_version,
                    created_at=utc_now(),
                    chain_version=CHAIN_VERSION,
                    trials_hash=trials_hash,
                    # 63 random bits (a signed BIGINT everywhere); secret: the candidates' screen
                    # order follows from it and the participant's number
                    assignment_seed=secrets.randbits(63) if config.seed is None else None,
                )
            ))
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
                    for t in specs
                ],
            )
        return self.study(config.name), secret, True

    @staticmethod
    def _same_definition(row: Any, config: StudyConfig) -> bool:
        """Whether ``config`` is the definition stored in ``row`` (re-running ``create`` is a no-op).

        A study created by an older version stored the then default ``seed: 0``; a YAML that
        still leaves the seed out is the same definition.
        """
        if row["config_hash"] == config.config_hash():
            return True
        legacy = (row["chain_version"] or 1) == 1
        return legacy and config.seed is None and row["config_hash"] == dataclasses.replace(config, seed=0).config_hash()

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
            chain_version=row["chain_version"] or 1,
            assignment_seed=row["assignment_seed"],
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

    def admin_hash(self, name: str) -> str | None:
        """The stored (scrypt) hash of study ``name``'s admin secret; ``None`` for an unknown study."""
        with self._read() as conn:
            return conn.execute(select(studies.c.admin_hash).where(studies.c.name == name)).scalar()

    def check_admin(self, name: str, secret: str) -> bool:
        """Whether ``secret`` is the admin secret of study ``name``."""
        stored = self.admin_hash(name)
        return stored is not None and bool(secret) and check_secret(secret, stored)

    # ----------------------------------------------------------------- participants

    def add_participants(self, name: str, n: int, enrolled_via: str = "token") -> list[str]:
        """Create ``n`` participants with fresh tokens and their server-side trial assignments.

        Returns:
            The tokens (shown once; only their hashes are stored).
        """
        if n < 0:
            raise StudyConfigError(f"number of participants must be >= 0, got {n}")
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
                token_hash = hash_token(token)
                plan = assign_trials(info.config, specs, number, trial_load, method_load, seed=info.assignment_seed)
                plan_hash = plan_digest(
                    info.name, number, token_hash, [(a.order, a.trial_position, list(a.shown)) for a in plan]
                )
                pid = _new_id(conn.execute(
                    participants.insert().values(
                        study_id=info.id,
                        number=number,
                        token_hash=token_hash,
                        enrolled_via=enrolled_via,
                        created_at=utc_now(),
                        plan_hash=plan_hash,
                    )
                ))
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
            EnrolmentClosed: the study does not allow open enrolment.
        """
        if not self.study(name).config.open_enrolment:
            raise EnrolmentClosed(f"study {name!r} admits participants by personal link only")
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
        outcome = self._submit(WriteRequest("serve", None, assignment_id))
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
            NotYourTrial: the assignment belongs to another participant (a ``PermissionError``).
            VoteRejected: unknown criterion, or a position outside the candidates shown (a ``ValueError``).
        """
        info = self._study_by_id(participant.study_id)
        if criterion not in {c.key for c in info.config.criteria}:
            raise VoteRejected(
                f"criterion {criterion!r} is not part of study {info.name!r} "
                f"({', '.join(c.key for c in info.config.criteria)})"
            )
        # A repeat (refresh, double click, second tab) is answered from a read, without writing.
        with self._read() as conn:
            existing = self._existing_vote(conn, participant.id, assignment_id, criterion)
        if existing is not None:
            return existing
        outcome = self._submit(WriteRequest("vote", participant, assignment_id, criterion, position))
        assert isinstance(outcome, VoteOutcome)
        return outcome

    # Errors _apply raises after checking a request and before writing anything for it.
    _REQUEST_ERRORS: tuple[type[BaseException], ...] = (PermissionError, ValueError)

    def _submit(self, request: WriteRequest) -> VoteOutcome | str:
        """Queue a write and return its result once committed (group commit, see :meth:`record_vote`)."""
        outcome: VoteOutcome | str = self._db.submit(request, self._apply, self._recover, self._REQUEST_ERRORS)
        return outcome

    def _commit_batch(self, batch: list[WriteRequest]) -> None:
        """Write ``batch`` in one transaction (writer lock held); every request ends ``done``."""
        self._db.commit_batch(batch, self._apply, self._recover, self._REQUEST_ERRORS)

    def _recover(self, req: WriteRequest) -> VoteOutcome | None:
        """The stored vote of a request the database refused as a duplicate (a racing writer's)."""
        if req.participant is None:
            return None
        with self._read() as conn:
            return self._existing_vote(conn, req.participant.id, req.assignment_id, req.criterion)

    @staticmethod
    def _existing_vote(conn: Connection, participant_id: int, assignment_id: int, criterion: str) -> VoteOutcome | None:
        row = conn.execute(_SQL_EXISTING, {"aid": assignment_id, "pid": participant_id, "crit": criterion}).first()
        return None if row is None else VoteOutcome(False, row[0], row[1], row[2])

    def _apply(self, conn: Connection, req: WriteRequest) -> VoteOutcome | str:
        if req.kind == "serve":
            conn.execute(_SQL_MARK_SERVED, {"aid": req.assignment_id, "now": utc_now()})
            served = conn.execute(_SQL_SERVED, {"aid": req.assignment_id}).scalar()
            if served is None:
                raise ValueError(f"no assigned trial with id {req.assignment_id}")
            return served
        return self._insert_vote(conn, req)

    def _insert_vote(self, conn: Connection, req: WriteRequest) -> VoteOutcome:
        """Check one vote and append it to the chain inside the open transaction ``conn``."""
        participant = req.participant
        assert participant is not None  # votes always carry their participant
        info = self._study_by_id(participant.study_id)
        self._lock_study(conn, info.id)
        arow = conn.execute(_SQL_ASSIGNMENT, {"aid": req.assignment_id}).mappings().first()
        if arow is None or arow["participant_id"] != participant.id:
            raise NotYourTrial(f"trial {req.assignment_id} is not assigned to this participant")
        shown = json.loads(arow["shown_json"])
        if not 0 <= req.position < len(shown):
            raise VoteRejected(f"position {req.position} is outside the {len(shown)} candidates shown")
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
        context = None
        if info.chain_version >= 2:
            context = VoteContext(arow["image_id"], tuple(shown), arow["gold_answer"], arow["plan_hash"])
        row["row_hash"] = chain_hash(prev, canonical_vote(row, info.name, context))
        conn.execute(_SQL_INSERT_VOTE, row)
        return VoteOutcome(True, row["choice"], seq, row["row_hash"])

    def verify(self, name: str, expected_head: str | None = None) -> VerifyReport:
        """Recompute everything the study's hash chain covers, from the stored rows.

        Checks (chain version 2; the study's stored rows are read afresh, never from a cache):

        * the stored ``config_json`` against its ``config_hash``, and the trials (images,
          candidates, gold answers) against the trials hash; the genesis hash must derive from
          both, and the chain must start at it;
        * every participant's assignments (trial order, candidates in screen order) against the
          plan hash stored when the participant was created;
        * every vote: ``seq`` without gaps, ``prev_hash`` linking to the previous row, and its
          hash over the vote row plus what was shown with it (image, screen order, gold answer,
          plan hash), its assignment belonging to the voter and trial, its choice being the
          candidate at its screen position;
        * with ``expected_head`` (a published head hash): that the chain still ends there. This is
          the only check that detects votes removed from the end (a shorter chain is otherwise
          valid), or a chain rewritten as a whole by someone with write access to the database,
          who can recompute every hash.

        Studies created by an older version (chain version 1) are checked for what their chain
        covers, the votes and the config; ``notes`` says so.

        Raises:
            StudyNotFound: no study called ``name``.
        """
        with self._read() as conn:
            srow = conn.execute(select(studies).where(studies.c.name == name)).mappings().first()
            if srow is None:
                self.study(name)  # raises StudyNotFound listing the known studies
                raise AssertionError("unreachable: study() raised")
            sid = srow["id"]
            trial_rows = conn.execute(
                select(trials.c.id, trials.c.position, trials.c.image_id, trials.c.candidates_json, trials.c.gold_answer)
                .where(trials.c.study_id == sid)
            ).all()  # fmt: skip
            people = conn.execute(
                select(participants.c.id, participants.c.number, participants.c.token_hash, participants.c.plan_hash)
                .where(participants.c.study_id == sid)
                .order_by(participants.c.number)
            ).all()  # fmt: skip
            plans = conn.execute(
                select(assignments.c.participant_id, assignments.c.ord, trials.c.position, assignments.c.shown_json)
                .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
                .join(participants, assignments.c.participant_id == participants.c.id)
                .where(participants.c.study_id == sid)
            ).all()  # fmt: skip
            vote_rows = conn.execute(
                select(
                    votes,
                    assignments.c.participant_id.label("a_participant"),
                    assignments.c.trial_id.label("a_trial"),
                    assignments.c.shown_json.label("a_shown"),
                    trials.c.image_id.label("t_image"),
                    trials.c.gold_answer.label("t_gold"),
                    trials.c.study_id.label("t_study"),
                    participants.c.plan_hash.label("p_plan"),
                    participants.c.study_id.label("p_study"),
                )
                .select_from(
                    votes.outerjoin(assignments, votes.c.assignment_id == assignments.c.id)
                    .outerjoin(trials, assignments.c.trial_id == trials.c.id)
                    .outerjoin(participants, votes.c.participant_id == participants.c.id)
                )
                .where(votes.c.study_id == sid)
                .order_by(votes.c.seq)
            ).mappings().all()
        version = srow["chain_version"] or 1
        report = VerifyReport(study=name, n_votes=0, head_hash=srow["genesis_hash"], chain_version=version)
        problems = report.problems
        config_hash = srow["config_hash"]
        try:
            if config_digest(srow["config_json"]) != config_hash:
                problems.append("study config (config_json) does not match its config_hash (edited)")
        except ValueError:
            problems.append("study config (config_json) is not valid JSON (edited)")
        if version == 1:
            report.notes.append(
                f"study {name!r} was created by an older version of ScreenSR (chain version 1): its chain covers "
                "the votes and the study config, not what each voter was shown nor the gold answers; a study "
                "created now covers both"
            )
            trials_hash = None
        else:
            trials_hash = trials_digest([(r[1], r[2], json.loads(r[3]), r[4]) for r in trial_rows])
            if trials_hash != srow["trials_hash"]:
                problems.append("trials (images, candidates or gold answers) do not match the study's trials hash (edited)")
        if genesis_digest(name, config_hash, srow["trials_hash"], version) != srow["genesis_hash"]:
            problems.append("genesis hash does not derive from the study's config and trials hashes (edited)")
        self._verify_plans(name, version, people, plans, problems)
        prev = srow["genesis_hash"]
        expected_seq = 1
        chain: list[str] = []
        for row in vote_rows:
            report.n_votes += 1
            seq = row["seq"]
            if seq != expected_seq:
                problems.append(f"vote seq {seq}: expected seq {expected_seq} (rows missing)")
            if row["prev_hash"] != prev:
                problems.append(f"vote seq {seq}: prev_hash does not match the previous row")
            context = None
            if version >= 2:
                context = self._vote_context(row, sid, problems)
                if context is None:
                    problems.append(f"vote seq {seq}: its assignment, trial or participant is missing (deleted)")
            if row["config_hash"] != config_hash:
                problems.append(f"vote seq {seq}: cast under config {row['config_hash'][:12]}, not the study's")
            if version == 1 or context is not None:
                recomputed = chain_hash(row["prev_hash"], canonical_vote(dict(row), name, context))
                if recomputed != row["row_hash"]:
                    problems.append(
                        f"vote seq {seq}: content does not match its hash (the vote, or what was shown with it, "
                        f"was edited)"
                    )
            prev = row["row_hash"]
            chain.append(prev)
            expected_seq = seq + 1
        report.head_hash = prev
        if expected_head is not None and expected_head != prev:
            if expected_head in chain:
                k = chain.index(expected_head) + 1
                problems.append(
                    f"the expected head is vote {k} of {len(chain)}: {len(chain) - k} vote(s) were added after it"
                )
            else:
                problems.append(
                    f"head hash {prev} differs from the expected {expected_head} (votes removed from the end, "
                    f"or the chain was rewritten)"
                )
        return report

    @staticmethod
    def _verify_plans(name: str, version: int, people: Any, plans: Any, problems: list[str]) -> None:
        """Each participant's assignments against the plan hash stored at enrolment."""
        items: dict[int, list[tuple[int, int, list[str]]]] = {}
        for pid, order, position, shown_json in plans:
            try:
                shown = json.loads(shown_json)
            except ValueError:
                shown = [f"<invalid: {shown_json[:40]}>"]
            items.setdefault(pid, []).append((order, position, shown))
        for pid, number, token_hash, plan_hash in people:
            if plan_hash is None:
                if version >= 2:
                    problems.append(f"participant {number}: no plan hash (its assignments are not covered)")
                continue  # created by an older version: nothing was hashed
            if plan_digest(name, number, token_hash, items.get(pid, [])) != plan_hash:
                problems.append(
                    f"participant {number}: assignments (trial order or candidates shown) or token do not match "
                    f"the participant's plan hash (edited)"
                )

    @staticmethod
    def _vote_context(row: Any, study_id: int, problems: list[str]) -> VoteContext | None:
        """What a stored vote was cast on, from the joined rows (``None`` when a row is missing)."""
        seq = row["seq"]
        if row["a_shown"] is None or row["t_image"] is None or row["p_study"] is None:
            return None
        if row["a_participant"] != row["participant_id"] or row["a_trial"] != row["trial_id"]:
            problems.append(f"vote seq {seq}: its assignment belongs to another participant or trial")
        if row["t_study"] != study_id or row["p_study"] != study_id:
            problems.append(f"vote seq {seq}: its trial or participant belongs to another study")
        try:
            shown = tuple(json.loads(row["a_shown"]))
        except ValueError:
            problems.append(f"vote seq {seq}: the candidates shown are not valid JSON (edited)")
            shown = (row["a_shown"],)  # hashed as it is, so the hash check fails too
        if not (0 <= row["position"] < len(shown) and shown[row["position"]] == row["choice"]):
            problems.append(f"vote seq {seq}: its choice is not the candidate shown at its position")
        return VoteContext(row["t_image"], shown, row["t_gold"], row["p_plan"])

    # ----------------------------------------------------------------- incidents (voter-facing errors)

    def record_incident(
        self, study: str | None, context: str, summary: str, detail: str, participant: int | None = None
    ) -> str:
        """Store the details of an error a voter met; returns the error id shown to them.

        A repeat of the same error (same study, context and summary) returns the same id and
        counts up, so the admin page lists each problem once.

        Args:
            study: the study's name, or ``None`` when it is not known.
            context: where it happened (``"serving trial images"``).
            summary: one line, e.g. ``"FileNotFoundError: [Errno 2] ... /srv/out/SeeSR/img_01.png"``.
            detail: the full report (traceback).
            participant: the participant's number, when known.
        """
        with self._read() as conn:
            study_id = (
                None if study is None else conn.execute(select(studies.c.id).where(studies.c.name == study)).scalar()
            )
        fingerprint = sha256_hex(f"{study_id}|{context}|{summary}")
        now = utc_now()
        with self._write() as conn:
            existing = conn.execute(
                select(study_incidents.c.id, study_incidents.c.error_id).where(study_incidents.c.fingerprint == fingerprint)
            ).first()
            if existing is not None:
                conn.execute(
                    study_incidents.update()
                    .where(study_incidents.c.id == existing[0])
                    .values(count=study_incidents.c.count + 1, last_at=now, detail=detail)
                )
                return existing[1]
            while True:
                error_id = secrets.token_hex(4)
                if conn.execute(select(study_incidents.c.id).where(study_incidents.c.error_id == error_id)).first() is None:
                    break
            conn.execute(
                study_incidents.insert().values(
                    error_id=error_id, study_id=study_id, fingerprint=fingerprint, context=context,
                    participant=participant, summary=summary, detail=detail, count=1, first_at=now, last_at=now,
                )
            )  # fmt: skip
        return error_id

    def incidents(self, study: str) -> Any:
        """Errors voters of ``study`` met (``pandas.DataFrame``, newest first).

        Columns: ``error_id, first_at, last_at, count, context, participant, summary, detail``.
        """
        import pandas as pd

        info = self.study(study)
        cols = ["error_id", "first_at", "last_at", "count", "context", "participant", "summary", "detail"]
        with self._read() as conn:
            rows = conn.execute(
                select(*(study_incidents.c[c] for c in cols))
                .where(study_incidents.c.study_id == info.id)
                .order_by(study_incidents.c.last_at.desc())
            ).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=cols)

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
            voted: dict[int, int] = dict(
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
