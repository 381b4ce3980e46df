"""The study store on PostgreSQL: same guarantees as on SQLite (marked slow: starts a server).

Uses ``$SCREENSR_TEST_POSTGRES_URL`` when set; otherwise starts a throwaway server with the
PostgreSQL binaries on PATH (``initdb``/``pg_ctl``; as the ``postgres`` user when run as root),
listening on a Unix socket in a temporary folder only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

pytestmark = pytest.mark.slow


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def pg_url():
    if os.environ.get("SCREENSR_TEST_POSTGRES_URL"):
        yield os.environ["SCREENSR_TEST_POSTGRES_URL"]
        return
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not on PATH and SCREENSR_TEST_POSTGRES_URL not set")
    root = Path(tempfile.mkdtemp(prefix="screensr-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, sock = root / "data", root
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "study"]),
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        _as_postgres(["pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                      f"-p {port} -k {sock} -c listen_addresses=''", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://study@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run(_as_postgres(["pg_ctl", "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_store_end_to_end(pg_url: str, tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, n_images=4))
    store = StudyStore(pg_url)
    _, _, created = store.create_study(config, admin_secret="adm1n")
    assert created or store.study(config.name).config_hash == config.config_hash()
    tokens = store.add_participants(config.name, 12)
    barrier = threading.Barrier(24)

    def worker(token: str) -> int:
        barrier.wait()
        p = store.participant(token)
        n = 0
        for view in store.trial_views(p.id):
            store.mark_served(view.assignment_id)
            for c in config.criteria:
                n += store.record_vote(p, view.assignment_id, c.key, view.order % 3).recorded
        return n

    with ThreadPoolExecutor(24) as pool:  # two threads per participant race on every vote
        recorded = sum(pool.map(worker, tokens + tokens))
    frame = store.votes_frame(config.name)
    assert recorded == len(frame) == 12 * 4 * 2
    assert not frame.duplicated(["participant", "trial", "criterion"]).any()
    assert store.verify(config.name).ok
    for statement in ("UPDATE study_votes SET choice = 'alpha'", "DELETE FROM study_votes"):
        with pytest.raises(DatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    with store.engine.begin() as conn:  # an owner of the database can disable the trigger...
        conn.execute(text("ALTER TABLE study_votes DISABLE TRIGGER study_votes_no_change"))
        conn.execute(text(
            "UPDATE study_votes SET choice = CASE choice WHEN 'gamma' THEN 'alpha' ELSE 'gamma' END WHERE seq = 4"
        ))  # fmt: skip
        conn.execute(text("ALTER TABLE study_votes ENABLE TRIGGER study_votes_no_change"))
    report = store.verify(config.name)  # ...but not hide the edit
    assert not report.ok and any("seq 4" in p for p in report.problems)
    # what the chain covers beyond the votes is frozen too, and edits to it are caught the same way
    for statement in ("UPDATE study_trials SET gold_answer = 'alpha'", "DELETE FROM study_participants",
                      "UPDATE study_assignments SET shown_json = '[]'", "UPDATE study_studies SET config_json = '{}'"):
        with pytest.raises(DatabaseError, match="immutable"), store.engine.begin() as conn:
            conn.execute(text(statement))  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE study_trials DISABLE TRIGGER study_trials_frozen"))
        conn.execute(text("UPDATE study_trials SET gold_answer = 'beta' WHERE position = 0"))
        conn.execute(text("ALTER TABLE study_trials ENABLE TRIGGER study_trials_frozen"))
    assert any("gold answers" in p for p in store.verify(config.name).problems)
    store.close()
