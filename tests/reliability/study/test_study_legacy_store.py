"""A study store made by the old schema (chain version 1) keeps working after the upgrade.

``data/study_store_v1.sql`` was written by the old code (see ``data/README.md``). Opened by the
current store it is upgraded in place; its study still verifies to the head the old code
published, says that its chain covers less, keeps chaining new votes the old way, and still
fails on the edits its chain covers.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study
from screensr.cli import main

DUMP = Path(__file__).with_name("data") / "study_store_v1.sql"
NAME = "legacy-study"
HEAD = "26748c9fd09d4874d4d05f24c5b643e93ccab14aadcaa8c9d1db959598e07bd5"
TOKENS = ("xLshTKqMxwxdrW3xRZiUlieq", "zpygxMkE28OFe3LiuCNFKJWv")


@pytest.fixture()
def legacy_db(tmp_path: Path) -> Path:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as raw:
        raw.executescript(DUMP.read_text())
    columns = {c[1] for c in sqlite3.connect(db).execute("PRAGMA table_info(study_studies)")}
    assert "chain_version" not in columns, "the fixture must be the old schema"
    return db


def test_old_store_verifies_to_its_published_head(legacy_db: Path) -> None:
    report = StudyStore(legacy_db).verify(NAME, expected_head=HEAD)
    assert report.ok, report.problems
    assert (report.n_votes, report.head_hash, report.chain_version) == (10, HEAD, 1)
    assert any("created by an older version" in n and "not what each voter was shown" in n for n in report.notes)


def test_verify_command_says_what_an_old_chain_covers(legacy_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["board", "study", "verify", NAME, "--store", str(legacy_db), "--expect-head", HEAD])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith(f"ok: 10 votes, head {HEAD}")
    assert "note:" in err and "created by an older version of ScreenSR (chain version 1)" in err


def test_old_study_keeps_working_after_the_upgrade(legacy_db: Path) -> None:
    store = StudyStore(legacy_db)
    participant = store.participant(TOKENS[1])
    view = store.next_trial(participant)
    store.mark_served(view.assignment_id)
    outcome = store.record_vote(participant, view.assignment_id, "perceptual", 0)
    assert outcome.recorded and outcome.seq == 11
    (token,) = store.add_participants(NAME, 1)
    assert len(store.trial_views(store.participant(token).id)) == 4
    report = store.verify(NAME)
    assert report.ok and report.n_votes == 11 and report.chain_version == 1, report.problems
    # the old head is now vote 10 of 11: a head published earlier is recognised as a prefix
    assert any("vote 10 of 11" in p for p in store.verify(NAME, expected_head=HEAD).problems)


def test_old_votes_are_read_in_the_one_judgement_layout(legacy_db: Path) -> None:
    """The migrated store keeps its rows as they were (NULL design/response) and reads them as the
    best-of-N judgements they are; a vote added now to the old study keeps the old row layout."""
    store = StudyStore(legacy_db)
    frame = store.votes_frame(NAME)
    assert len(frame) == 10 and (frame["design"] == "best_of_n").all() and frame["response_json"].isna().all()
    assert frame["rating"].isna().all() and (frame["ranking"] == "").all() and not frame["no_preference"].any()
    assert (frame["choice"] == [s.split("|")[p] for s, p in zip(frame["shown"], frame["position"], strict=True)]).all()
    participant = store.participant(TOKENS[1])
    view = store.next_trial(participant)
    store.record_vote(participant, view.assignment_id, "perceptual", 1)
    with sqlite3.connect(legacy_db) as raw:
        assert raw.execute("SELECT design, response_json FROM study_votes WHERE seq = 11").fetchone() == (None, None)
    assert store.verify(NAME, expected_head=None).ok


def test_old_study_still_fails_on_the_edits_its_chain_covers(legacy_db: Path, attack) -> None:
    StudyStore(legacy_db).close()  # upgrade first: the attacker edits the current schema
    attack(legacy_db, "UPDATE study_votes SET choice = 'gamma' WHERE seq = 2 AND choice != 'gamma'",
           "UPDATE study_votes SET choice = 'beta' WHERE seq = 2 AND choice = 'gamma'")  # fmt: skip
    assert any("seq 2: content does not match" in p for p in StudyStore(legacy_db).verify(NAME).problems)


def test_old_study_config_edit_is_detected(legacy_db: Path, attack) -> None:
    attack(legacy_db, "UPDATE study_studies SET config_json = replace(config_json, '\"crop\": 16', '\"crop\": 64')")
    problems = StudyStore(legacy_db).verify(NAME).problems
    assert any("config_json) does not match its config_hash" in p for p in problems), problems


def test_upgrade_adds_the_freezing_triggers(legacy_db: Path) -> None:
    store = StudyStore(legacy_db)
    with pytest.raises(DatabaseError, match="immutable"), store.engine.begin() as conn:
        conn.execute(text("UPDATE study_trials SET gold_answer = 'alpha'"))
    assert store.verify(NAME, expected_head=HEAD).ok


def test_rerunning_create_with_the_old_definition_changes_nothing(legacy_db: Path) -> None:
    import dataclasses

    store = StudyStore(legacy_db)
    stored = store.study(NAME).config
    assert stored.seed == 0  # the old default, stored explicitly
    # the same YAML read by the current code leaves the seed out (None): still the same study
    info, secret, created = store.create_study(dataclasses.replace(stored, seed=None))
    assert not created and secret is None and info.chain_version == 1
    assert store.verify(NAME, expected_head=HEAD).ok


def test_a_new_study_in_an_upgraded_store_gets_the_full_chain(legacy_db: Path, tmp_path: Path, write_study) -> None:
    store = StudyStore(legacy_db)
    info, _, created = store.create_study(load_study(write_study(tmp_path / "new")))
    assert created and info.chain_version == 3 and info.assignment_seed is not None
    assert store.verify(info.name).ok and store.verify(NAME, expected_head=HEAD).ok


def _open_and_verify(db: str) -> tuple[bool, int]:
    store = StudyStore(db)
    try:
        report = store.verify(NAME)
        return report.ok, report.chain_version
    finally:
        store.close()


def test_concurrent_openers_upgrade_once(legacy_db: Path) -> None:
    with ProcessPoolExecutor(3, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(_open_and_verify, [str(legacy_db)] * 3))
    assert results == [(True, 1)] * 3


def test_a_current_store_needs_no_upgrade(tmp_path: Path, voted_study) -> None:
    study = voted_study(tmp_path)
    before = (tmp_path / "votes.sqlite").stat().st_mtime_ns
    StudyStore(tmp_path / "votes.sqlite").close()
    assert (tmp_path / "votes.sqlite").stat().st_mtime_ns == before, "opening a current store writes nothing"
    assert study.store.verify(study.name, expected_head=study.head).ok
