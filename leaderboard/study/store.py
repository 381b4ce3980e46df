"""Storage of user studies: studies, trials, participants, assignments and an append-only vote log.

SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL through psycopg 3) for shared deployments
(several voting-app replicas on one PostgreSQL store keep every guarantee below).
What the database itself guarantees, so that no vote is lost and none is counted twice:

* one vote per (participant, trial, criterion): a UNIQUE constraint; a repeated submit (refresh,
  double click, replay, second tab) is recognised and ignored (:meth:`StudyStore.record_vote`
  returns ``recorded=False``);
* one judgement row layout for every design (best-of-N, pairwise, ACR, ranking): the chosen (or
  rated, or first-ranked) candidate and its screen position, plus the design and the whole
  response as canonical JSON;
* the votes table is append-only: triggers reject UPDATE and DELETE (SQLite and PostgreSQL);
  studies, trials, participants and consents reject both too, and an assignment accepts only its
  first ``served_at``;
* every vote row carries ``row_hash = sha256(prev_hash || canonical row)``, chained per study in
  ``seq`` order (UNIQUE ``(study, seq)`` and ``(study, prev_hash)`` forbid forks); what the chain
  covers is listed in :mod:`leaderboard.study.chain` and recomputed by :meth:`StudyStore.verify`
  (:mod:`leaderboard.study.audit`). The head hash can be published with the results; only the
  published head detects votes removed from the end;
* trials are assigned by the server, with the on-screen order of the candidates recorded: when a
  participant is created (uniform assignment), or one at a time when they reach it (adaptive);
  the client submits only screen positions (or a rating), which the server maps to methods.
  Unless the study YAML fixes a seed, the assignment RNG uses a secret seed drawn when the study
  is created, so nobody can recompute which method sits behind a screen position;
* a platform id (Prolific's ``PROLIFIC_PID``, MTurk's ``workerId``) enrols once per study: it is
  stored hashed, under a unique index.

Studies created by older versions keep their chain (their published head hashes stay valid) and
verify what it covers; :class:`VerifyReport` says so in ``notes``.

The tables and their triggers are :mod:`leaderboard.study.schema`; serialised writers and group
commit are :mod:`leaderboard.study.writer` (``SELECT ... FOR UPDATE`` on the study row is added
here for PostgreSQL). Participants' tokens and the admin secret are stored as hashes only.

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
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from core.errors import UserError
from core.paths import screensr_home
from core.secrets import check_secret, hash_secret
from leaderboard.study.assignment import (
    adaptive_trial,
    assign_trials,
    build_trials,
    plan_length,
    shown_order,
)
from leaderboard.study.audit import VerifyReport, enrolment_record, verify_study
from leaderboard.study.chain import (
    CHAIN_VERSION,
    VoteContext,
    assignment_digest,
    canonical_vote,
    chain_hash,
    consent_digest,
    genesis_digest,
    plan_digest,
    sha256_hex,
    trials_digest,
)
from leaderboard.study.config import (
    ACR_SCALE,
    GOLD_HIGH,
    GOLD_LOW,
    StudyConfig,
    StudyConfigError,
    config_from_dict,
)
from leaderboard.study.schema import (
    apply_schema_changes,
    assignments,
    consents,
    participants,
    schema_changes,
    studies,
    study_incidents,
    trials,
    votes,
)
from leaderboard.study.writer import Database

__all__ = [
    "StudyStore", "StudyNotFound", "VerifyReport", "hash_secret", "check_secret", "default_store_url",
    "normalise_url", "PLATFORM_PARAMS",
]  # fmt: skip

ENV_STORE = "SCREENSR_STUDY_STORE"

# The query parameters each platform appends to the study URL: the participant id first, then
# the study and session (or HIT assignment) ids. All are client-controlled: hashed, never trusted.
PLATFORM_PARAMS: dict[str, tuple[str, str, str]] = {
    "prolific": ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    "mturk": ("workerId", "hitId", "assignmentId"),
}
_PLATFORM_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

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
_SQL_VOTES_SINCE = text("SELECT COUNT(*) FROM study_votes WHERE participant_id = :pid AND voted_at >= :since")
_VOTE_COLUMNS = [c.name for c in votes.columns if c.name != "id"]
_SQL_INSERT_VOTE = text(
    f"INSERT INTO study_votes ({', '.join(_VOTE_COLUMNS)}) VALUES ({', '.join(':' + c for c in _VOTE_COLUMNS)})"
)


class StudyNotFound(UserError, LookupError):
    """A study name that is not in the store."""


class VoteRejected(UserError, ValueError):
    """A judgement the trial cannot take: unknown criterion, a screen position outside the
    candidates, a rating off the scale, a ranking that is not a permutation."""


class NotYourTrial(UserError, PermissionError):
    """A vote on a trial assigned to another participant."""


class EnrolmentClosed(UserError, PermissionError):
    """Enrolment the study does not offer (open enrolment, or the platform it was asked through)."""


class EnrolmentRejected(UserError, ValueError):
    """A platform link whose participant id is missing or malformed."""


class AlreadyEnrolled(UserError, PermissionError):
    """A platform id (Prolific, MTurk) that has enrolled in this study already."""


class DailyCapReached(UserError, PermissionError):
    """A participant who has cast the study's ``daily_cap`` votes today (UTC)."""


def _new_id(result: Any) -> int:
    """The primary key of the one row an INSERT result inserted."""
    key = result.inserted_primary_key
    if key is None:  # not an INSERT: a bug in this module
        raise AssertionError("expected the result of a single-row INSERT")
    return int(key[0])


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds (stored as text, so it hashes identically everywhere)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _utc_midnight() -> str:
    """Today's 00:00 UTC in :func:`utc_now`'s format (ISO text compares in time order)."""
    now = datetime.now(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(timespec="microseconds")


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


def hash_platform_id(study: str, platform: str, kind: str, value: str) -> str:
    """sha256 of one platform id, salted with the study and platform (ids never stored in clear,
    and the same worker's hashes differ between studies)."""
    return sha256_hex(f"screensr-platform|{study}|{platform}|{kind}|{value}")


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

    @property
    def seed(self) -> int:
        """The assignment RNG's study seed: the YAML's, else the secret one drawn at creation."""
        seed = self.config.seed if self.config.seed is not None else self.assignment_seed
        if seed is None:  # create_study always draws one when the YAML fixes none
            raise AssertionError(f"study {self.name!r} has no assignment seed")
        return int(seed)


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
    """Result of :meth:`StudyStore.record_vote`; ``recorded`` is False for an ignored repeat.

    ``choice`` is the chosen candidate (best-of-N, pairwise; ``""`` for "no preference"), the
    rated one (ACR) or the one ranked first (ranking).
    """

    recorded: bool
    choice: str
    seq: int
    row_hash: str


@dataclass
class WriteRequest:
    """A vote (``kind="vote"``) or a first-serve time (``"serve"``) waiting for the writer lock.

    A vote carries what the page submitted: ``position`` (best-of-N, pairwise; ``None`` for
    "no preference"), ``rating`` (ACR) or ``ranking`` (screen positions, best first).
    """

    kind: str
    participant: Participant | None
    assignment_id: int
    criterion: str = ""
    position: int | None = 0
    rating: int | None = None
    ranking: tuple[int, ...] | None = None
    done: bool = False
    outcome: VoteOutcome | str | None = None
    error: BaseException | None = None


class StudyStore:
    """Studies, participants, assignments and votes in one SQLAlchemy database.

    Args:
        url: SQLAlchemy URL, a SQLite file path, or ``None`` for :func:`default_store_url`.
        synchronous: SQLite ``PRAGMA synchronous`` (``FULL``: every committed vote is on disk
            before the participant sees the confirmation, so a power cut loses none).

    Thread-safe: one instance may serve all Streamlit sessions (share it through
    ``st.cache_resource``); separate processes (or replicas on one PostgreSQL server) open their
    own instance on the same URL.
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

        Adds what is missing (tables; the nullable columns of later chain versions; the triggers
        that freeze studies, trials, participants, consents and assignments) and keeps every row:
        existing studies keep their chain version. Opening a current store only reads its schema.
        The changes run in one serialised write transaction that re-checks inside it, so
        processes opening one old store at the same time upgrade it once (a plain ``create_all``
        from several processes fails with "database is locked" when one of them has just written).
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

        Raises:
            StudyConfigError: ``n`` is negative.
        """
        if n < 0:
            raise StudyConfigError(f"number of participants must be >= 0, got {n}")
        info = self.study(name)
        with self._write() as conn:
            self._lock_study(conn, info.id)
            return [self._new_participant(conn, info, enrolled_via) for _ in range(n)]

    def _new_participant(
        self,
        conn: Connection,
        info: StudyInfo,
        enrolled_via: str,
        platform: str | None = None,
        platform_ids: Sequence[str | None] = (None, None, None),
        consent: bool = False,
    ) -> str:
        """Insert one participant, their plan and (optionally) their consent, inside ``conn``'s
        transaction (the study locked); returns the token."""
        trial_rows = conn.execute(select(trials.c.id, trials.c.position).where(trials.c.study_id == info.id)).all()
        by_position = {position: tid for tid, position in trial_rows}
        specs = build_trials(info.config)
        trial_load, method_load = self._loads(conn, info.id)
        number = conn.execute(
            select(func.coalesce(func.max(participants.c.number), -1)).where(participants.c.study_id == info.id)
        ).scalar_one() + 1
        token = secrets.token_urlsafe(18)
        token_hash = hash_token(token)
        plan = assign_trials(info.config, specs, number, trial_load, method_load, seed=info.seed)
        hashed = [None if v is None else hash_platform_id(info.name, str(platform), k, v)
                  for k, v in zip(("id", "study", "session"), platform_ids, strict=True)]  # fmt: skip
        row = {
            "study_id": info.id,
            "number": number,
            "token_hash": token_hash,
            "enrolled_via": enrolled_via,
            "created_at": utc_now(),
            "platform": platform,
            "platform_id_hash": hashed[0],
            "platform_study_hash": hashed[1],
            "platform_session_hash": hashed[2],
        }
        enrolment = None
        if info.chain_version >= 3:
            slots = info.config.votes_per_participant if info.config.assignment == "adaptive" else None
            enrolment = enrolment_record(row, slots)
        row["plan_hash"] = plan_digest(
            info.name, number, token_hash, [(a.order, a.trial_position, list(a.shown)) for a in plan], enrolment
        )
        pid = _new_id(conn.execute(participants.insert().values(**row)))
        if plan:
            conn.execute(
                assignments.insert(),
                [{"participant_id": pid, "ord": a.order, "trial_id": by_position[a.trial_position],
                  "shown_json": json.dumps(list(a.shown))} for a in plan],
            )  # fmt: skip
        if consent and info.config.consent:
            self._insert_consent(conn, pid, row["plan_hash"], info.config.consent)
        return token

    @staticmethod
    def _loads(conn: Connection, study_id: int) -> tuple[dict[int, int], dict[str, int]]:
        """Times each trial (by position) and each candidate were assigned so far in a study."""
        rows = conn.execute(
            select(trials.c.position, assignments.c.shown_json)
            .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
            .where(trials.c.study_id == study_id)
        ).all()
        trial_load: dict[int, int] = {}
        method_load: dict[str, int] = {}
        for position, shown_json in rows:
            trial_load[position] = trial_load.get(position, 0) + 1
            for m in json.loads(shown_json):
                method_load[m] = method_load.get(m, 0) + 1
        return trial_load, method_load

    def enrol(
        self,
        name: str,
        platform: str | None = None,
        platform_ids: Sequence[str | None] = (),
        consent: bool = False,
    ) -> str:
        """Open enrolment: a new participant of study ``name``; returns their token.

        Args:
            platform: ``prolific`` or ``mturk`` for a participant sent by that platform (the
                study must list it in ``recruitment.platforms``); ``None`` for the study's open
                link (``open_enrolment: true``).
            platform_ids: the platform's ``(participant id, study id, session id)`` from the URL
                (:data:`PLATFORM_PARAMS`); only their salted hashes are stored.
            consent: the participant accepted the study's consent text on the way in (recorded
                now, in the same transaction).

        Raises:
            EnrolmentClosed: the study offers no such enrolment.
            AlreadyEnrolled: this platform id has enrolled in the study before.
            EnrolmentRejected: the platform id is missing or malformed.
        """
        info = self.study(name)
        config = info.config
        ids: tuple[str | None, ...] = tuple(v or None for v in platform_ids) + (None,) * (3 - len(tuple(platform_ids)))
        if platform is None:
            if not config.open_enrolment:
                raise EnrolmentClosed(f"study {name!r} admits participants by personal link only")
        else:
            if platform not in config.recruitment.platforms:
                raise EnrolmentClosed(f"study {name!r} does not recruit through {platform!r}")
            if not ids[0]:
                raise EnrolmentRejected(f"a {platform} link needs its {PLATFORM_PARAMS[platform][0]} parameter")
            for value in ids:
                if value and not _PLATFORM_ID_RE.match(value):
                    raise EnrolmentRejected(f"{platform} id {value[:40]!r} is malformed")
        with self._write() as conn:
            self._lock_study(conn, info.id)
            if platform is not None:
                id_hash = hash_platform_id(name, platform, "id", str(ids[0]))
                taken = conn.execute(
                    select(participants.c.id).where(
                        participants.c.study_id == info.id, participants.c.platform == platform,
                        participants.c.platform_id_hash == id_hash,
                    )
                ).first()  # fmt: skip
                if taken is not None:
                    raise AlreadyEnrolled(f"this {platform} id has already taken part in study {name!r}")
            via = "open" if platform is None else platform
            return self._new_participant(conn, info, via, platform, ids[:3], consent)

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

    # ----------------------------------------------------------------- consent

    @staticmethod
    def _insert_consent(conn: Connection, participant_id: int, plan_hash: str, text_value: str) -> str:
        now = utc_now()
        text_hash = sha256_hex(text_value)
        conn.execute(consents.insert().values(
            participant_id=participant_id, consented_at=now, text_hash=text_hash,
            consent_hash=consent_digest(plan_hash, now, text_hash),
        ))  # fmt: skip
        return now

    def consented_at(self, participant: Participant) -> str | None:
        """When the participant accepted the consent text (``None``: not yet)."""
        with self._read() as conn:
            return conn.execute(
                select(consents.c.consented_at).where(consents.c.participant_id == participant.id)
            ).scalar()

    def needs_consent(self, participant: Participant) -> bool:
        """Whether the study has a consent text this participant has not accepted yet."""
        return bool(self._study_by_id(participant.study_id).config.consent) and self.consented_at(participant) is None

    def record_consent(self, participant: Participant) -> str:
        """Record that the participant accepted the study's consent text; returns the time (the
        first one stays when called again)."""
        info = self._study_by_id(participant.study_id)
        with self._write() as conn:
            existing = conn.execute(
                select(consents.c.consented_at).where(consents.c.participant_id == participant.id)
            ).scalar()
            if existing is not None:
                return str(existing)
            plan_hash = conn.execute(
                select(participants.c.plan_hash).where(participants.c.id == participant.id)
            ).scalar_one()
            return self._insert_consent(conn, participant.id, str(plan_hash), info.config.consent)

    # ----------------------------------------------------------------- trials

    def trial_views(self, participant_id: int) -> list[TrialView]:
        """Every assignment of a participant so far, in their order, with the criteria already voted.

        In an adaptive study the regular trials are assigned when reached (:meth:`next_trial`),
        so the list grows as the participant goes; ``total`` is always the whole length.
        """
        with self._read() as conn:
            study_id = conn.execute(
                select(participants.c.study_id).where(participants.c.id == participant_id)
            ).scalar_one()
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
        total = self._plan_length(self._study_by_id(study_id), len(rows))
        return [
            TrialView(
                assignment_id=r[0],
                order=r[1],
                total=total,
                image_id=r[4],
                shown=tuple(json.loads(r[2])),
                criteria_done=frozenset(done.get(r[0], ())),
                is_gold=r[5] is not None,
                served_at=r[3],
            )
            for r in rows
        ]

    @staticmethod
    def _plan_length(info: StudyInfo, assigned: int) -> int:
        if info.config.assignment != "adaptive":
            return assigned
        return plan_length(info.config, build_trials(info.config))

    def progress_of(self, participant: Participant) -> tuple[int, int]:
        """``(trials finished, trials in total)`` for one participant."""
        keys = {c.key for c in self._study_by_id(participant.study_id).config.criteria}
        views = self.trial_views(participant.id)
        total = views[0].total if views else self._plan_length(self._study_by_id(participant.study_id), 0)
        return sum(1 for v in views if keys <= v.criteria_done), total

    def next_trial(self, participant: Participant) -> TrialView | None:
        """The first trial (in the participant's order) with a criterion still to vote, or ``None``
        when finished.

        In an adaptive study a regular trial is chosen here, when the participant reaches its
        place, from every vote cast so far (:func:`leaderboard.study.assignment.adaptive_trial`).
        """
        info = self._study_by_id(participant.study_id)
        keys = {c.key for c in info.config.criteria}
        views = self.trial_views(participant.id)
        by_order = {v.order: v for v in views}
        total = views[0].total if views else self._plan_length(info, 0)
        for order in range(total):
            view = by_order.get(order)
            if view is None:
                if info.config.assignment != "adaptive":
                    continue
                self._assign_adaptive(info, participant, order)
                return self.next_trial(participant)
            if not keys <= view.criteria_done:
                return view
        return None

    def _assign_adaptive(self, info: StudyInfo, participant: Participant, order: int) -> None:
        """Give the participant's trial ``order`` an adaptively chosen trial (serialised, and a
        no-op when another tab or replica assigned it meanwhile)."""
        specs = build_trials(info.config)
        with self._write() as conn:
            self._lock_study(conn, info.id)
            mine = conn.execute(
                select(assignments.c.ord, trials.c.position)
                .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
                .where(assignments.c.participant_id == participant.id)
            ).all()
            if any(o == order for o, _ in mine):
                return
            comparisons = [
                (shown[0], shown[1], None if choice == "" else choice)
                for choice, shown_json, gold in conn.execute(
                    select(votes.c.choice, assignments.c.shown_json, trials.c.gold_answer)
                    .select_from(votes.join(assignments, votes.c.assignment_id == assignments.c.id)
                                 .join(trials, votes.c.trial_id == trials.c.id))
                    .where(votes.c.study_id == info.id)
                ).all()
                if gold is None and len(shown := json.loads(shown_json)) == 2
            ]  # fmt: skip
            trial_load, _ = self._loads(conn, info.id)
            rng = np.random.default_rng([info.seed, participant.number, order, 1])
            trial = adaptive_trial(info.config, specs, comparisons, trial_load, {p for _, p in mine}, rng)
            shown = list(shown_order(trial, rng))
            plan_hash = conn.execute(
                select(participants.c.plan_hash).where(participants.c.id == participant.id)
            ).scalar_one()
            trial_id = conn.execute(
                select(trials.c.id).where(trials.c.study_id == info.id, trials.c.position == trial.position)
            ).scalar_one()
            conn.execute(assignments.insert().values(
                participant_id=participant.id, ord=order, trial_id=trial_id, shown_json=json.dumps(shown),
                assignment_hash=assignment_digest(str(plan_hash), order, trial.position, shown),
            ))  # fmt: skip

    def mark_served(self, assignment_id: int) -> str:
        """Record when a trial was first shown (later calls keep the first time); returns it."""
        with self._read() as conn:
            served = conn.execute(_SQL_SERVED, {"aid": assignment_id}).scalar()
        if served is not None:
            return str(served)
        outcome = self._submit(WriteRequest("serve", None, assignment_id))
        assert isinstance(outcome, str)
        return outcome

    def votes_today(self, participant: Participant) -> int:
        """Votes the participant cast since 00:00 UTC today (what ``daily_cap`` counts)."""
        with self._read() as conn:
            return int(conn.execute(_SQL_VOTES_SINCE, {"pid": participant.id, "since": _utc_midnight()}).scalar_one())

    def cap_reached(self, participant: Participant) -> bool:
        """Whether the study's ``daily_cap`` stops this participant for today."""
        cap = self._study_by_id(participant.study_id).config.daily_cap
        return cap is not None and self.votes_today(participant) >= cap

    # ----------------------------------------------------------------- votes

    def _lock_study(self, conn: Connection, study_id: int) -> None:
        # PostgreSQL: serialise writers of one study on its row (SQLite is already serialised by
        # BEGIN IMMEDIATE; SQLAlchemy renders no FOR UPDATE there).
        if not self.is_sqlite:
            conn.execute(select(studies.c.id).where(studies.c.id == study_id).with_for_update())

    def record_vote(
        self,
        participant: Participant,
        assignment_id: int,
        criterion: str,
        position: int | None = None,
        *,
        rating: int | None = None,
        ranking: Sequence[int] | None = None,
    ) -> VoteOutcome:
        """Append one judgement of an assigned trial under ``criterion``.

        What the page submits depends on the study's design:

        * ``best_of_n``: ``position``, the screen position of the chosen candidate;
        * ``pairwise``: ``position`` (0 or 1), or ``None`` for "no preference" (``no_preference``);
        * ``acr``: ``rating``, 1 (Bad) to 5 (Excellent), of the one candidate shown;
        * ``ranking``: ``ranking``, every screen position once, best first.

        A repeat for the same (participant, trial, criterion) is ignored: the stored vote stays,
        and the outcome has ``recorded=False`` and the stored choice. The call returns once the
        vote is committed (durably with SQLite's ``synchronous=FULL``).

        Concurrent calls are group-committed: a caller that obtains the writer lock writes every
        vote queued meanwhile in one transaction (one fsync), each still checked and chained
        one by one. This is what sustains hundreds of durable votes per second on SQLite.

        Raises:
            NotYourTrial: the assignment belongs to another participant (a ``PermissionError``).
            DailyCapReached: the participant cast ``daily_cap`` votes today (a ``PermissionError``).
            VoteRejected: unknown criterion, or a response the design does not take (a ``ValueError``).
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
        request = WriteRequest("vote", participant, assignment_id, criterion, position, rating,
                               None if ranking is None else tuple(int(r) for r in ranking))  # fmt: skip
        outcome = self._submit(request)
        assert isinstance(outcome, VoteOutcome)
        return outcome

    # Errors _apply raises after checking a request and before writing anything for it.
    _REQUEST_ERRORS: tuple[type[BaseException], ...] = (PermissionError, ValueError)

    def _submit(self, request: WriteRequest) -> VoteOutcome | str:
        """Queue a write and return its result once committed (group commit, see :meth:`record_vote`)."""
        outcome: VoteOutcome | str = self._db.submit(
            request, self._apply, self._recover, self._REQUEST_ERRORS, self._lock_studies
        )
        return outcome

    def _commit_batch(self, batch: list[WriteRequest]) -> None:
        """Write ``batch`` in one transaction (writer lock held); every request ends ``done``."""
        self._db.commit_batch(batch, self._apply, self._recover, self._REQUEST_ERRORS, self._lock_studies)

    def _lock_studies(self, conn: Connection, batch: Sequence[WriteRequest]) -> None:
        """PostgreSQL: lock the row of every study the batch writes to, first and in id order.

        A batch can mix first-serve times and votes of different participants; without one lock
        order, replica A (serve time of assignment X, then a vote) and replica B (a vote, then the
        serve time of the same X) each hold what the other waits for. SQLite needs nothing:
        ``BEGIN IMMEDIATE`` already serialises whole transactions.
        """
        if self.is_sqlite:
            return
        ids = {r.participant.study_id for r in batch if r.participant is not None}
        serves = [r.assignment_id for r in batch if r.participant is None]
        if serves:
            ids |= set(conn.execute(
                select(participants.c.study_id)
                .select_from(assignments.join(participants, assignments.c.participant_id == participants.c.id))
                .where(assignments.c.id.in_(serves))
            ).scalars())  # fmt: skip
        for study_id in sorted(ids):
            self._lock_study(conn, study_id)

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
                raise VoteRejected(f"no assigned trial with id {req.assignment_id}")
            return str(served)
        return self._insert_vote(conn, req)

    @staticmethod
    def _judgement(config: StudyConfig, shown: list[str], req: WriteRequest) -> tuple[int, str, dict[str, Any]]:
        """``(position, choice, response)`` of a submitted judgement, checked against the design.

        Raises:
            VoteRejected: the submission does not fit the design or the candidates shown.
        """
        n = len(shown)
        design = config.design

        def in_range(p: int | None) -> int:
            if p is None or isinstance(p, bool) or not 0 <= int(p) < n:
                raise VoteRejected(f"position {p} is outside the {n} candidates shown")
            return int(p)

        if design == "acr":
            levels = [level for level, _ in ACR_SCALE]
            if req.rating is None or isinstance(req.rating, bool) or req.rating not in levels:
                raise VoteRejected(f"rating {req.rating!r} is not on the scale {min(levels)}-{max(levels)}")
            return 0, shown[0], {"rating": int(req.rating)}
        if design == "ranking":
            order = list(req.ranking or ())
            if sorted(order) != list(range(n)):
                raise VoteRejected(f"ranking {order} must list each of the {n} screen positions once, best first")
            return order[0], shown[order[0]], {"ranking": [shown[i] for i in order]}
        if design == "pairwise" and req.position is None:
            if not config.no_preference:
                raise VoteRejected(f"study {config.name!r} offers no 'no preference' answer: pick a candidate")
            return -1, "", {"choice": None}
        position = in_range(req.position)
        return position, shown[position], {"choice": shown[position]}

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
        position, choice, response = self._judgement(info.config, shown, req)
        existing = self._existing_vote(conn, participant.id, req.assignment_id, req.criterion)
        if existing is not None:
            return existing
        cap = info.config.daily_cap
        if cap is not None:
            today = conn.execute(_SQL_VOTES_SINCE, {"pid": participant.id, "since": _utc_midnight()}).scalar_one()
            if int(today) >= cap:
                raise DailyCapReached(f"participant {participant.number} has cast today's {cap} votes")
        last = conn.execute(_SQL_HEAD, {"sid": info.id}).first()
        seq, prev = (1, info.genesis_hash) if last is None else (last[0] + 1, last[1])
        row = {
            "study_id": info.id,
            "seq": seq,
            "participant_id": participant.id,
            "trial_id": arow["trial_id"],
            "assignment_id": req.assignment_id,
            "criterion": req.criterion,
            "position": position,
            "choice": choice,
            # studies created before the designs keep their row layout (and chain): NULL here
            "design": info.config.design if info.chain_version >= 3 else None,
            "response_json": _canonical(response) if info.chain_version >= 3 else None,
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
        return VoteOutcome(True, choice, seq, row["row_hash"])

    def verify(self, name: str, expected_head: str | None = None) -> VerifyReport:
        """Recompute everything the study's hash chain covers, from the stored rows
        (:func:`leaderboard.study.audit.verify_study` lists the checks).

        Raises:
            StudyNotFound: no study called ``name``.
        """
        with self._read() as conn:
            srow = conn.execute(select(studies).where(studies.c.name == name)).mappings().first()
            if srow is None:
                self.study(name)  # raises StudyNotFound listing the known studies
                raise AssertionError("unreachable: study() raised")
            return verify_study(conn, srow, expected_head)

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

    # The tidy vote table: one row per judgement, every design's fields (see votes_frame).
    VOTE_FRAME_COLUMNS = [
        "seq", "participant", "trial", "image_id", "criterion", "design", "position", "choice", "rating",
        "ranking", "no_preference", "shown", "n_shown", "is_gold", "gold_answer", "correct", "served_at",
        "voted_at", "dwell_s", "response_json", "app_version", "config_hash", "prev_hash", "row_hash",
    ]  # fmt: skip

    def votes_frame(self, name: str) -> Any:
        """All votes of a study as a ``pandas.DataFrame``, one row per judgement in chain order.

        Columns (:attr:`VOTE_FRAME_COLUMNS`): ``seq, participant, trial, image_id, criterion,
        design`` (``best_of_n`` for votes stored before the designs), ``position, choice`` (the
        chosen, rated or first-ranked candidate and its screen position; ``-1``/``""`` for "no
        preference"), ``rating`` (ACR, 1-5, else NaN), ``ranking`` (``|``-joined candidates best
        first, ranking design, else ``""``), ``no_preference``, ``shown`` (``|``-joined screen
        order), ``n_shown, is_gold, gold_answer, correct, served_at, voted_at`` (UTC timestamps),
        ``dwell_s`` (seconds from first serve to vote), ``response_json`` (the stored canonical
        response), ``app_version, config_hash, prev_hash, row_hash``.
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
                votes.c.design,
                votes.c.position,
                votes.c.choice,
                votes.c.response_json,
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
        return tidy_votes(frame)

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
        rows = []
        for pid, number, via, created, n_assigned in assigned:
            n_trials = self._plan_length(info, n_assigned)
            rows.append({
                "participant": number, "enrolled_via": via, "created_at": created, "trials": n_trials,
                "votes": voted.get(pid, 0), "votes_expected": n_trials * n_criteria,
                "complete": voted.get(pid, 0) >= n_trials * n_criteria,
            })  # fmt: skip
        cols = ["participant", "enrolled_via", "created_at", "trials", "votes", "votes_expected", "complete"]
        return pd.DataFrame(rows, columns=cols)


def _is_correct(gold: Any, choice: str, rating: float) -> bool:
    """Whether a gold trial's judgement is what the gold answer expects."""
    if not isinstance(gold, str):
        return False
    if gold == GOLD_HIGH:
        return bool(rating >= 4)
    if gold == GOLD_LOW:
        return bool(rating <= 2)
    return choice == gold


def tidy_votes(raw: Any) -> Any:
    """The tidy vote table (:attr:`StudyStore.VOTE_FRAME_COLUMNS`) from the stored vote rows
    joined with their assignments and trials (``shown_json``, ``gold_answer``; NULL ``design``
    and ``response_json`` for votes stored before the designs, which were best-of-N)."""
    import pandas as pd

    frame = raw.copy()
    n = len(frame)
    shown = frame["shown_json"].map(json.loads) if n else pd.Series([], dtype=object)
    responses = frame["response_json"].map(lambda r: {} if r is None or r != r else json.loads(r)) if n else shown
    frame["design"] = frame["design"].fillna("best_of_n").astype(str) if n else pd.Series([], dtype=str)
    frame["shown"] = shown.map(lambda s: "|".join(s)).astype(str) if n else pd.Series([], dtype=str)
    frame["n_shown"] = shown.map(len).astype(int) if n else pd.Series([], dtype=int)
    frame["rating"] = responses.map(lambda r: float(r.get("rating", np.nan))) if n else pd.Series([], dtype=float)
    frame["ranking"] = responses.map(lambda r: "|".join(r.get("ranking", []))).astype(str) if n else pd.Series(
        [], dtype=str)
    frame["no_preference"] = (frame["design"] == "pairwise") & (frame["position"] == -1)
    frame["is_gold"] = frame["gold_answer"].notna()
    frame["correct"] = [
        bool(g) and _is_correct(a, c, r)
        for g, a, c, r in zip(frame["is_gold"], frame["gold_answer"], frame["choice"], frame["rating"], strict=True)
    ] if n else pd.Series([], dtype=bool)  # fmt: skip
    frame["correct"] = frame["correct"].astype(bool)
    frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True, format="ISO8601")
    frame["voted_at"] = pd.to_datetime(frame["voted_at"], utc=True, format="ISO8601")
    frame["dwell_s"] = (frame["voted_at"] - frame["served_at"]).dt.total_seconds()
    frame = frame.drop(columns=["shown_json"])
    return frame[StudyStore.VOTE_FRAME_COLUMNS].reset_index(drop=True)
