"""Tampering with what chain version 3 adds: the design fields of votes, platform enrolment records,
consents and adaptive assignments. Each edit is made on the raw SQLite file with the triggers
dropped, as someone with write access would; ``verify`` must notice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

RANK = {"alpha": 0, "beta": 1, "gamma": 2, "__hr__": -1, "__bicubic__": 9}


def _answer(design: str, shown: list[str], no_preference: bool = False) -> dict:
    if design == "acr":
        return {"rating": {"__hr__": 5, "alpha": 4, "beta": 3, "gamma": 2, "__bicubic__": 1}[shown[0]]}
    if design == "ranking":
        return {"ranking": sorted(range(len(shown)), key=lambda i: RANK[shown[i]])}
    if no_preference:
        return {"position": None}
    return {"position": min(range(len(shown)), key=lambda i: RANK[shown[i]])}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, write_study):
    """One voted store per design: pairwise (adaptive, no preference, Prolific, consent), acr, ranking."""
    built = {}
    for design, extra in {
        "pairwise": {"assignment": "adaptive", "votes_per_participant": 4, "no_preference": True,
                     "consent": "I agree.", "recruitment": {"platforms": ["prolific"]}},
        "acr": {}, "ranking": {},
    }.items():  # fmt: skip
        root = tmp_path_factory.mktemp(design)
        config = load_study(write_study(root, design=design, **extra))
        store = StudyStore(root / "votes.sqlite")
        store.create_study(config)
        if design == "pairwise":
            tokens = [store.enrol(config.name, "prolific", (f"PID{k:04d}", "S", f"X{k}"), consent=True) for k in range(3)]
        else:
            tokens = store.add_participants(config.name, 2)
        no_preferences = 0
        for token in tokens:
            p = store.participant(token)
            given = False
            while (view := store.next_trial(p)) is not None:
                store.mark_served(view.assignment_id)
                # each participant's first pair without the reference gets a "no preference" (which
                # trial that is depends on the study's random trial order: the answer follows it)
                shown = list(view.shown)
                none = design == "pairwise" and not given and "__hr__" not in shown
                for c in config.criteria:
                    store.record_vote(p, view.assignment_id, c.key, **_answer(design, shown, none))
                given = given or none
            no_preferences += given
        assert design != "pairwise" or no_preferences, "no trial without the reference: no 'no preference' vote"
        report = store.verify(config.name)
        assert report.ok and report.chain_version == 3, report.problems
        store.close()
        built[design] = (root / "votes.sqlite", config.name, report.head_hash)
    return built


@pytest.fixture()
def study(templates, tmp_path: Path):
    """``study(design)``: a private copy of that design's voted store: ``(store, db, name, head)``."""
    opened = []

    def copy(design: str):
        source, name, head = templates[design]
        db = tmp_path / f"{design}.sqlite"
        shutil.copyfile(source, db)
        store = StudyStore(db)
        opened.append(store)
        return store, db, name, head

    yield copy
    for store in opened:
        store.close()


def _fails(store: StudyStore, name: str, *patterns: str) -> list[str]:
    report = store.verify(name)
    assert not report.ok, "the edit went unnoticed"
    for pattern in patterns:
        assert any(pattern in p for p in report.problems), (pattern, report.problems)
    return report.problems


@pytest.mark.parametrize("design", ["pairwise", "acr", "ranking"])
def test_an_untouched_study_of_each_design_verifies_to_its_head(study, design: str) -> None:
    store, _, name, head = study(design)
    assert store.verify(name, expected_head=head).ok


@pytest.mark.parametrize(
    "design,edit",
    [
        ("pairwise", "design = 'best_of_n'"),
        ("pairwise", "response_json = '{\"choice\":\"gamma\"}'"),
        ("pairwise", "response_json = NULL, design = NULL"),  # passed off as an older layout
        # another rating than the stored one (a fixed value can equal it: the trial order is random)
        ("acr", "response_json = json_set(response_json, '$.rating', json_extract(response_json, '$.rating') % 5 + 1)"),
        ("ranking", "response_json = '{\"ranking\":[\"gamma\",\"beta\",\"alpha\"]}'"),
        ("ranking", "response_json = 'not json'"),
    ],
)
def test_editing_a_judgement_is_detected(study, attack, design: str, edit: str) -> None:
    store, db, name, _ = study(design)
    attack(db, f"UPDATE study_votes SET {edit} WHERE seq = 3")
    _fails(store, name, "seq 3: content does not match")


def test_turning_no_preference_into_a_choice_is_detected(study, attack, query) -> None:
    store, db, name, _ = study("pairwise")
    (seq, shown), *_ = query(db, "SELECT v.seq, a.shown_json FROM study_votes v JOIN study_assignments a "
                                 "ON a.id = v.assignment_id WHERE v.position = -1")  # fmt: skip
    first = json.loads(shown)[0]
    attack(db, ("UPDATE study_votes SET position = 0, choice = ?, response_json = ? WHERE seq = ?",
                (first, json.dumps({"choice": first}, separators=(",", ":")), seq)))  # fmt: skip
    _fails(store, name, f"seq {seq}: content does not match")


@pytest.mark.parametrize(
    "edit", ["platform_id_hash = 'f' || substr(platform_id_hash, 2)", "platform = 'mturk'",
             "platform_session_hash = NULL"],
)  # fmt: skip
def test_editing_an_enrolment_record_is_detected(study, attack, edit: str) -> None:
    store, db, name, _ = study("pairwise")
    attack(db, f"UPDATE study_participants SET {edit} WHERE number = 1")
    _fails(store, name, "participant 1: assignments (trial order or candidates shown) or token do not match")


@pytest.mark.parametrize(
    "edit,pattern",
    [
        ("consented_at = '2999-01-01T00:00:00.000000+00:00'", "consent record does not match its hash"),
        ("text_hash = '0000'", "consent record does not match its hash"),
    ],
)
def test_editing_a_consent_is_detected(study, attack, edit: str, pattern: str) -> None:
    store, db, name, _ = study("pairwise")
    attack(db, f"UPDATE study_consents SET {edit} WHERE participant_id = 2")
    _fails(store, name, f"participant 1: {pattern}")


def test_deleting_a_consent_is_detected(study, attack) -> None:
    store, db, name, _ = study("pairwise")
    attack(db, "DELETE FROM study_consents WHERE participant_id = 1")
    _fails(store, name, "participant 0: voted without a consent record")


def test_editing_an_adaptive_assignment_is_detected(study, attack, query, swapped) -> None:
    store, db, name, _ = study("pairwise")
    aid, shown = query(db, "SELECT id, shown_json FROM study_assignments WHERE assignment_hash IS NOT NULL "
                           "ORDER BY id LIMIT 1")[0]  # fmt: skip
    attack(db, ("UPDATE study_assignments SET shown_json = ? WHERE id = ?", (swapped(shown), aid)))
    _fails(store, name, "does not match its hash (edited)")


def test_passing_an_adaptive_assignment_off_as_planned_is_detected(study, attack) -> None:
    store, db, name, _ = study("pairwise")
    attack(db, "UPDATE study_assignments SET assignment_hash = NULL WHERE id = (SELECT MIN(id) FROM "
               "study_assignments WHERE assignment_hash IS NOT NULL)")  # fmt: skip
    _fails(store, name, "do not match the participant's plan hash")


@pytest.mark.parametrize(
    "statement",
    ["UPDATE study_consents SET consented_at = 'x'", "DELETE FROM study_consents",
     "UPDATE study_assignments SET assignment_hash = 'x'", "UPDATE study_votes SET response_json = '{}'"],
)  # fmt: skip
def test_the_database_refuses_edits_of_the_new_records(study, statement: str) -> None:
    store, _, name, head = study("pairwise")
    with pytest.raises(DatabaseError, match="immutable|append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.verify(name, expected_head=head).ok
