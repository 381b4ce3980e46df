"""Every way of tampering with a stored study makes ``verify`` fail (or the published head expose it).

Each attack edits the SQLite file directly, with the triggers dropped, as someone with write
access to the file would. Covered: each field of a vote, votes deleted or inserted (in the middle,
at the end), the study config (alone, and with its hash recomputed), what a voter was shown
(voted and not yet voted trials), the gold answers and the other trial fields, a participant's
token, and a chain rewritten as a whole with every hash recomputed.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError


@pytest.fixture()
def study(voted_copy):
    """The voted study of the conftest, a private copy per test."""
    return voted_copy


def _fails(study, *patterns: str, expected_head: str | None = None) -> list[str]:
    report = study.store.verify(study.name, expected_head=expected_head)
    assert not report.ok, "the edit went unnoticed"
    for pattern in patterns:
        assert any(pattern in p for p in report.problems), (pattern, report.problems)
    return report.problems


def test_an_untouched_study_verifies_with_its_published_head(study) -> None:
    report = study.store.verify(study.name, expected_head=study.head)
    assert report.ok and report.n_votes == study.n_votes and report.chain_version == 3 and not report.notes


# --------------------------------------------------------------------------- votes

VOTE_EDITS = {
    "choice": "choice = CASE choice WHEN 'alpha' THEN 'beta' ELSE 'alpha' END",
    "position": "position = (position + 1) % 2",
    "criterion": "criterion = 'sharpness'",
    "voted_at": "voted_at = '2020-01-01T00:00:00.000000+00:00'",
    "served_at": "served_at = '2020-01-01T00:00:00.000000+00:00'",
    "participant_id": "participant_id = 3",
    "trial_id": "trial_id = trial_id + 100",
    "assignment_id": "assignment_id = assignment_id + 1",
    "app_version": "app_version = '0.0.1'",
    "config_hash": "config_hash = 'f00d'",
    "row_hash": "row_hash = '0000'",
}


@pytest.mark.parametrize("field", sorted(VOTE_EDITS))
def test_editing_a_vote_field_is_detected(study, field: str, attack) -> None:
    attack(study.db, f"UPDATE study_votes SET {VOTE_EDITS[field]} WHERE seq = 3")
    problems = _fails(study)
    assert any("seq 3" in p or "seq 4" in p for p in problems), problems


def test_deleting_a_vote_in_the_middle_is_detected(study, attack) -> None:
    attack(study.db, "DELETE FROM study_votes WHERE seq = 4")
    _fails(study, "seq 5: expected seq 4", "seq 5: prev_hash")


def test_deleting_the_last_votes_needs_the_published_head(study, attack) -> None:
    attack(study.db, f"DELETE FROM study_votes WHERE seq > {study.n_votes - 2}")
    assert study.store.verify(study.name).ok, "a truncated chain is a valid shorter chain (documented limit)"
    _fails(study, "differs from the expected", expected_head=study.head)


def test_inserting_a_vote_in_the_middle_is_detected(study, attack, query) -> None:
    # make room at seq 3 and insert a vote there, linked on both sides
    (row,) = query(study.db, "SELECT * FROM study_votes WHERE seq = 2")
    columns = [c[1] for c in query(study.db, "PRAGMA table_info(study_votes)")]
    forged = dict(zip(columns, row, strict=True))
    forged.update(id=None, seq=3, criterion="forged", prev_hash=forged["row_hash"], row_hash="f" * 64)
    attack(
        study.db,
        "UPDATE study_votes SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE study_votes SET seq = seq - 999 WHERE seq >= 1000",
        f"UPDATE study_votes SET prev_hash = '{'f' * 64}' WHERE seq = 4",
        (f"INSERT INTO study_votes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
         tuple(forged.values())),
    )
    _fails(study, "seq 3: content does not match", "seq 4: content does not match")


def test_appending_a_forged_vote_is_detected(study, attack, query) -> None:
    (row,) = query(study.db, "SELECT * FROM study_votes WHERE seq = ?", (study.n_votes,))
    columns = [c[1] for c in query(study.db, "PRAGMA table_info(study_votes)")]
    forged = dict(zip(columns, row, strict=True))
    forged.update(id=None, seq=study.n_votes + 1, criterion="forged", prev_hash=forged["row_hash"])
    attack(
        study.db,
        (f"INSERT INTO study_votes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
         tuple(forged.values())),
    )
    _fails(study, f"seq {study.n_votes + 1}: content does not match")


# --------------------------------------------------------------------------- the study config


def test_editing_the_config_json_is_detected(study, attack, query) -> None:
    # e.g. pointing one method at another's outputs: what voters saw is no longer what is claimed
    (config_json,) = query(study.db, "SELECT config_json FROM study_studies")[0]
    config = json.loads(config_json)
    config["methods"]["alpha"], config["methods"]["beta"] = config["methods"]["beta"], config["methods"]["alpha"]
    attack(study.db, ("UPDATE study_studies SET config_json = ?", (json.dumps(config),)))
    _fails(study, "config_json) does not match its config_hash")


def test_editing_the_config_with_its_hash_recomputed_is_detected(study, attack, query) -> None:
    from leaderboard.study.chain import config_digest

    (config_json,) = query(study.db, "SELECT config_json FROM study_studies")[0]
    config = json.loads(config_json)
    config["title"] = "Which result looks best? (pick A)"
    edited = json.dumps(config, sort_keys=True)
    attack(study.db, ("UPDATE study_studies SET config_json = ?, config_hash = ?", (edited, config_digest(edited))))
    _fails(study, "genesis hash does not derive", "cast under config")


def test_the_config_hash_is_the_hash_of_the_stored_config(study, query) -> None:
    from leaderboard.study.chain import config_digest

    (config_json, config_hash), *_ = query(study.db, "SELECT config_json, config_hash FROM study_studies")
    assert config_digest(config_json) == config_hash == study.store.study(study.name).config.config_hash()


# --------------------------------------------------------------------------- what voters were shown


def test_editing_what_a_voter_was_shown_is_detected(study, attack, query, swapped) -> None:
    aid, shown_json = query(
        study.db, "SELECT a.id, a.shown_json FROM study_assignments a JOIN study_votes v ON v.assignment_id = a.id "
        "WHERE v.seq = 1"
    )[0]  # fmt: skip
    attack(study.db, ("UPDATE study_assignments SET shown_json = ? WHERE id = ?", (swapped(shown_json), aid)))
    _fails(study, "seq 1: content does not match", "participant 0: assignments")


def test_editing_a_not_yet_voted_assignment_is_detected(study, attack, query, swapped) -> None:
    # participant 2 has voted nothing: their assignments are pinned by their plan hash alone
    aid, shown_json = query(
        study.db, "SELECT a.id, a.shown_json FROM study_assignments a JOIN study_participants p "
        "ON p.id = a.participant_id WHERE p.number = 2 ORDER BY a.ord LIMIT 1"
    )[0]  # fmt: skip
    attack(study.db, ("UPDATE study_assignments SET shown_json = ? WHERE id = ?", (swapped(shown_json), aid)))
    _fails(study, "participant 2: assignments")


def test_reordering_a_participants_trials_is_detected(study, attack) -> None:
    attack(
        study.db,
        "UPDATE study_assignments SET ord = ord + 100 WHERE participant_id = 3",
        "UPDATE study_assignments SET ord = 199 - ord WHERE participant_id = 3",
    )
    _fails(study, "participant 2: assignments")


def test_editing_shown_and_the_plan_hash_together_is_detected(study, attack, query, swapped) -> None:
    from leaderboard.study.audit import enrolment_record
    from leaderboard.study.chain import plan_digest

    aid, shown_json = query(
        study.db, "SELECT a.id, a.shown_json FROM study_assignments a JOIN study_votes v ON v.assignment_id = a.id "
        "WHERE v.seq = 1"
    )[0]  # fmt: skip
    attack(study.db, ("UPDATE study_assignments SET shown_json = ? WHERE id = ?", (swapped(shown_json), aid)))
    (pid, number, token_hash), *_ = query(
        study.db, "SELECT p.id, p.number, p.token_hash FROM study_participants p JOIN study_votes v "
        "ON v.participant_id = p.id WHERE v.seq = 1"
    )  # fmt: skip
    items = query(
        study.db, "SELECT a.ord, t.position, a.shown_json FROM study_assignments a JOIN study_trials t "
        "ON t.id = a.trial_id WHERE a.participant_id = ?", (pid,)
    )  # fmt: skip
    (person,) = query(
        study.db, "SELECT platform, platform_id_hash, platform_study_hash, platform_session_hash "
        "FROM study_participants WHERE id = ?", (pid,)
    )  # fmt: skip
    keys = ("platform", "platform_id_hash", "platform_study_hash", "platform_session_hash")
    enrolment = enrolment_record(dict(zip(keys, person, strict=True)), None)  # what chain version 3 hashes
    plan = plan_digest(study.name, number, token_hash, [(o, t, json.loads(s)) for o, t, s in items], enrolment)
    attack(study.db, ("UPDATE study_participants SET plan_hash = ? WHERE id = ?", (plan, pid)))
    problems = _fails(study, "seq 1: content does not match")
    assert not any("participant 0: assignments" in p for p in problems), "the plan itself was made consistent"


def test_swapping_a_participants_token_is_detected(study, attack) -> None:
    attack(study.db, "UPDATE study_participants SET token_hash = 'attacker' || token_hash WHERE number = 1")
    _fails(study, "participant 1: assignments (trial order or candidates shown) or token")


# --------------------------------------------------------------------------- trials and gold answers


def test_editing_a_gold_answer_is_detected(study, attack) -> None:
    attack(study.db, "UPDATE study_trials SET gold_answer = '__bicubic__' WHERE gold_answer IS NOT NULL")
    _fails(study, "trials (images, candidates or gold answers)")


def test_turning_a_regular_trial_into_a_gold_trial_is_detected(study, attack) -> None:
    attack(study.db, "UPDATE study_trials SET gold_answer = 'gamma' WHERE position = 1")
    _fails(study, "trials (images, candidates or gold answers)")


@pytest.mark.parametrize(
    "edit", ["image_id = 'img_02'", "candidates_json = '[\"alpha\", \"beta\"]'", "position = 17"]
)
def test_editing_a_trial_is_detected(study, edit: str, attack) -> None:
    attack(study.db, f"UPDATE study_trials SET {edit} WHERE position = 1")
    _fails(study, "trials (images, candidates or gold answers)")


def test_deleting_an_assignment_with_votes_is_detected(study, attack) -> None:
    attack(study.db, "DELETE FROM study_assignments WHERE id = (SELECT assignment_id FROM study_votes WHERE seq = 1)")
    _fails(study, "seq 1: its assignment, trial or participant is missing", "participant 0: assignments")


# --------------------------------------------------------------------------- the whole chain rewritten


def test_a_chain_rewritten_as_a_whole_needs_the_published_head(study, attack, query) -> None:
    """An attacker who edits a vote and recomputes every later hash makes a self-consistent chain:
    only the head hash published before the edit exposes it (what the README promises)."""
    from leaderboard.study.chain import canonical_vote, chain_hash

    rows = study.store.votes_frame(study.name)
    assert len(rows) == study.n_votes
    columns = [c[1] for c in query(study.db, "PRAGMA table_info(study_votes)")]
    stored = [dict(zip(columns, r, strict=True)) for r in query(study.db, "SELECT * FROM study_votes ORDER BY seq")]
    context = _contexts(study, query)
    victim = stored[2]
    shown = context[victim["assignment_id"]].shown
    other = next(i for i, c in enumerate(shown) if c != victim["choice"])
    victim["position"], victim["choice"] = other, shown[other]
    prev = stored[0]["prev_hash"]
    for row in stored:
        row["prev_hash"] = prev
        row["row_hash"] = prev = chain_hash(prev, canonical_vote(row, study.name, context[row["assignment_id"]]))
    insert = f"INSERT INTO study_votes VALUES ({', '.join('?' * len(columns))})"
    attack(study.db, "DELETE FROM study_votes", *((insert, tuple(r.values())) for r in stored))
    assert study.store.verify(study.name).ok, "a full rewrite is self-consistent (documented limit)"
    _fails(study, "differs from the expected", expected_head=study.head)


def _contexts(study, query) -> dict:
    from leaderboard.study.chain import VoteContext

    rows = query(
        study.db, "SELECT a.id, t.image_id, a.shown_json, t.gold_answer, p.plan_hash FROM study_assignments a "
        "JOIN study_trials t ON t.id = a.trial_id JOIN study_participants p ON p.id = a.participant_id"
    )  # fmt: skip
    return {aid: VoteContext(image, tuple(json.loads(s)), gold, plan) for aid, image, s, gold, plan in rows}


# --------------------------------------------------------------------------- the triggers (first line)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE study_studies SET config_json = '{}'",
        "DELETE FROM study_studies",
        "UPDATE study_trials SET gold_answer = 'alpha'",
        "DELETE FROM study_trials",
        "UPDATE study_participants SET token_hash = 'x'",
        "DELETE FROM study_participants",
        "UPDATE study_assignments SET shown_json = '[]'",
        "UPDATE study_assignments SET served_at = '2020-01-01' WHERE served_at IS NOT NULL",
        "DELETE FROM study_assignments",
        "UPDATE study_votes SET choice = 'alpha'",
        "DELETE FROM study_votes",
    ],
)
def test_the_database_refuses_edits_through_the_store(study, statement: str) -> None:
    with pytest.raises(DatabaseError, match="immutable|append-only"), study.store.engine.begin() as conn:
        conn.execute(text(statement))
    assert study.store.verify(study.name, expected_head=study.head).ok


def test_a_first_served_time_is_still_accepted(study) -> None:
    participant = study.store.participant(study.tokens[2])
    view = study.store.next_trial(participant)
    assert view.served_at is None
    served = study.store.mark_served(view.assignment_id)
    assert study.store.mark_served(view.assignment_id) == served
    assert study.store.verify(study.name, expected_head=study.head).ok
