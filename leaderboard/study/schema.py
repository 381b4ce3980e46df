"""The study store's tables and the triggers that freeze them (SQLite and PostgreSQL).

What the database itself guarantees (the store's vote path relies on it, :mod:`leaderboard.study.chain`
and :meth:`leaderboard.study.store.StudyStore.verify` catch what triggers cannot):

* one vote per (participant, trial, criterion): the UNIQUE constraint ``uq_study_vote_once``;
* the votes table is append-only: triggers reject UPDATE and DELETE;
* studies, trials, participants and consents reject both too, and an assignment accepts only its
  first ``served_at``;
* one platform id (Prolific, MTurk) enrols once per study: the unique index ``uq_study_platform_id``;
* one chain per study: UNIQUE ``(study, seq)`` and ``(study, prev_hash)`` forbid forks.

:func:`schema_changes` and :func:`apply_schema_changes` bring a store written by an older version
up to this schema (new tables, new nullable columns, the triggers) without touching a row.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.engine import Connection, Engine

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
    # Added with chain version 2 (NULL in studies created before): see the module docstring.
    Column("chain_version", Integer),
    Column("trials_hash", String(64)),
    # The secret seed of the assignment RNG when the YAML fixes none (never shown to voters).
    Column("assignment_seed", BigInteger),
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
    # sha256 over the participant's assignments (NULL for participants created before chain v2).
    Column("plan_hash", String(64)),
    # Chain version 3: how a platform participant enrolled (prolific/mturk) and sha256 hashes of
    # the platform's ids (never the ids); one platform id enrols once per study (unique index
    # uq_study_platform_id, created with the triggers below).
    Column("platform", String(16)),
    Column("platform_id_hash", String(64)),
    Column("platform_study_hash", String(64)),
    Column("platform_session_hash", String(64)),
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
    # Chain version 3: set on assignments made after enrolment (adaptive), NULL on planned ones.
    Column("assignment_hash", String(64)),
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
    # One layout for every design. position/choice: the chosen candidate's screen position and
    # name (best-of-N, pairwise; -1 and "" for "no preference"), the rated candidate (ACR, 0), the
    # candidate ranked first (ranking). design + response_json (canonical JSON: {"choice": ...},
    # {"rating": 1-5}, {"ranking": [first, ..., last]}) hold the whole judgement; both NULL in
    # votes of studies created before the designs (best-of-N, described by position/choice).
    Column("position", Integer, nullable=False),
    Column("choice", String(255), nullable=False),
    Column("design", String(16)),
    Column("response_json", Text),
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

# Errors shown to voters as a neutral message with an id; the details (paths, exceptions) live
# here for the study admin page. Repeats of one error share a row (``count``), so a broken file
# seen by every voter on every rerun stays one line.
study_incidents = Table(
    "study_incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("error_id", String(16), nullable=False, unique=True),
    Column("study_id", Integer, ForeignKey("study_studies.id")),
    Column("fingerprint", String(64), nullable=False),
    Column("context", String(80), nullable=False),
    Column("participant", Integer),  # number of the first participant who met it
    Column("summary", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_at", String(40), nullable=False),
    Column("last_at", String(40), nullable=False),
)

# Consent to a study's consent text, given before the first trial (chain version 3).
consents = Table(
    "study_consents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("participant_id", Integer, ForeignKey("study_participants.id"), nullable=False, unique=True),
    Column("consented_at", String(40), nullable=False),
    Column("text_hash", String(64), nullable=False),
    Column("consent_hash", String(64), nullable=False),
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

# What the chain covers is frozen as well: studies, trials and participants are never changed
# once written, and an assignment only gets its first ``served_at``. (An attacker with write
# access to the file can drop these triggers; :meth:`StudyStore.verify` still catches the edit.)
_ASSIGNMENT_CHANGED = (
    "NEW.id IS DISTINCT FROM OLD.id OR NEW.participant_id IS DISTINCT FROM OLD.participant_id "
    "OR NEW.ord IS DISTINCT FROM OLD.ord OR NEW.trial_id IS DISTINCT FROM OLD.trial_id "
    "OR NEW.shown_json IS DISTINCT FROM OLD.shown_json OR OLD.served_at IS NOT NULL "
    "OR NEW.assignment_hash IS DISTINCT FROM OLD.assignment_hash"
)
_FROZEN = ("study_studies", "study_trials", "study_participants", "study_consents")
_PLATFORM_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_study_platform_id "
    "ON study_participants (study_id, platform, platform_id_hash)"
)


def _sqlite_guard_ddl() -> list[str]:
    """SQLite triggers freezing studies, trials, participants and assignments (idempotent DDL)."""
    out = [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable: {op} rejected'); END"
        for table in _FROZEN
        for op in ("UPDATE", "DELETE")
    ]
    changed = _ASSIGNMENT_CHANGED.replace("IS DISTINCT FROM", "IS NOT")  # SQLite's spelling
    out += [
        "CREATE TRIGGER IF NOT EXISTS study_assignments_no_delete BEFORE DELETE ON study_assignments "
        "BEGIN SELECT RAISE(ABORT, 'study_assignments rows are immutable: DELETE rejected'); END",
        # recreated: the condition of older versions does not know assignment_hash
        "DROP TRIGGER IF EXISTS study_assignments_no_update",
        f"CREATE TRIGGER study_assignments_no_update BEFORE UPDATE ON study_assignments "
        f"WHEN {changed} "
        "BEGIN SELECT RAISE(ABORT, 'study_assignments rows are immutable: only a first served_at may be set'); END",
    ]
    return out


def _postgres_guard_ddl() -> list[str]:
    """PostgreSQL triggers with the same effect (idempotent: each is dropped and recreated)."""
    out = [
        "CREATE OR REPLACE FUNCTION study_rows_frozen() RETURNS trigger AS $$ "
        # '%%': psycopg reads '%' as a placeholder; PL/pgSQL receives '%'
        "BEGIN RAISE EXCEPTION '%% rows are immutable: %% rejected', TG_TABLE_NAME, TG_OP; END; $$ LANGUAGE plpgsql"
    ]
    for table in _FROZEN:
        out += [
            f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}",
            f"CREATE TRIGGER {table}_frozen BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION study_rows_frozen()",
        ]
    out += [
        "DROP TRIGGER IF EXISTS study_assignments_no_delete ON study_assignments",
        "CREATE TRIGGER study_assignments_no_delete BEFORE DELETE ON study_assignments "
        "FOR EACH ROW EXECUTE FUNCTION study_rows_frozen()",
        "DROP TRIGGER IF EXISTS study_assignments_no_update ON study_assignments",
        f"CREATE TRIGGER study_assignments_no_update BEFORE UPDATE ON study_assignments "
        f"FOR EACH ROW WHEN ({_ASSIGNMENT_CHANGED}) EXECUTE FUNCTION study_rows_frozen()",
    ]
    return out


def _install_guards(conn: Connection) -> None:
    """Create the freezing triggers of the tables above (after they exist)."""
    conn.exec_driver_sql(_PLATFORM_INDEX)  # needed everywhere: it enforces "one platform id enrols once"
    if conn.dialect.name not in ("sqlite", "postgresql"):
        return  # other databases: the chain still detects edits; no triggers to offer
    for statement in _sqlite_guard_ddl() if conn.dialect.name == "sqlite" else _postgres_guard_ddl():
        conn.exec_driver_sql(statement)


# Columns added since the first schema, with their types (all nullable: old rows keep NULL).
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "study_studies": (("chain_version", "INTEGER"), ("trials_hash", "VARCHAR(64)"), ("assignment_seed", "BIGINT")),
    "study_participants": (
        ("plan_hash", "VARCHAR(64)"), ("platform", "VARCHAR(16)"), ("platform_id_hash", "VARCHAR(64)"),
        ("platform_study_hash", "VARCHAR(64)"), ("platform_session_hash", "VARCHAR(64)"),
    ),
    "study_assignments": (("assignment_hash", "VARCHAR(64)"),),
    "study_votes": (("design", "VARCHAR(16)"), ("response_json", "TEXT")),
}  # fmt: skip


def schema_changes(bind: Engine | Connection) -> dict[str, list[tuple[str, str]]]:
    """Missing tables (``{name: []}``) and missing columns (``{table: [(column, type)]}``)."""
    insp = inspect(bind)
    have_tables = set(insp.get_table_names())
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in metadata.tables if t not in have_tables}
    for table, columns in ADDED_COLUMNS.items():
        if table not in have_tables:
            continue  # created whole by create_all
        have = {c["name"] for c in insp.get_columns(table)}
        todo = [(name, sql_type) for name, sql_type in columns if name not in have]
        if todo:
            out[table] = todo
    return out


def apply_schema_changes(conn: Connection, changes: dict[str, list[tuple[str, str]]]) -> None:
    """Create the missing tables and add the missing columns, in ``conn``'s transaction, then
    (re)install the triggers and the platform-id index on every table (idempotent)."""
    metadata.create_all(conn)
    for table, columns in changes.items():
        for name, sql_type in columns:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
    _install_guards(conn)
