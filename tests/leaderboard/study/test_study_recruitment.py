"""Recruitment from Prolific and MTurk, consent before the first trial, completion codes, daily caps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from leaderboard.study.store import (
    AlreadyEnrolled,
    DailyCapReached,
    EnrolmentClosed,
    EnrolmentRejected,
    StudyStore,
)
from leaderboard.study.validation import load_study

VOTER_APP = str(Path(__file__).resolve().parents[3] / "leaderboard" / "study" / "voter" / "app.py")
PID = "5f2a9c0e1b3d4e6f7a8b9c0d"
CONSENT = "I agree that my answers are stored anonymously for research."


@pytest.fixture()
def recruiting(tmp_path: Path, make_study_files, monkeypatch: pytest.MonkeyPatch):
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    config = load_study(make_study_files(
        tmp_path, n_images=2, consent=CONSENT, instructions="Look at the textures.",
        recruitment={"platforms": ["prolific", "mturk"], "completion_code": "C1X2Y3Z4",
                     "completion_url": "https://app.prolific.com/submissions/complete?cc=C1X2Y3Z4"},
    ))  # fmt: skip
    store = StudyStore(url)
    store.create_study(config)
    return store, config, tmp_path / "votes.sqlite"


def test_a_platform_id_enrols_once_and_is_stored_hashed(recruiting) -> None:
    store, config, db = recruiting
    token = store.enrol(config.name, "prolific", (PID, "study-1", "session-1"), consent=True)
    with pytest.raises(AlreadyEnrolled, match="already taken part"):
        store.enrol(config.name, "prolific", (PID, "study-1", "session-2"), consent=True)
    store.enrol(config.name, "mturk", (PID, "hit", "assignment"), consent=True)  # another platform's id space
    with sqlite3.connect(db) as raw:
        dump = "\n".join(raw.iterdump())
    for clear in (PID, "study-1", "session-1", "session-2"):
        assert clear not in dump
    progress = store.progress(config.name)
    assert progress["enrolled_via"].tolist() == ["prolific", "mturk"]
    assert store.participant(token) is not None and not store.needs_consent(store.participant(token))
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.IntegrityError):
        # the unique index is the last line of defence (replicas racing, bypassing the check)
        raw.execute("INSERT INTO study_participants (study_id, number, token_hash, enrolled_via, created_at, "
                    "platform, platform_id_hash) SELECT study_id, 99, 'x', 'prolific', created_at, platform, "
                    "platform_id_hash FROM study_participants WHERE platform = 'prolific'")  # fmt: skip
    assert store.verify(config.name).ok


@pytest.mark.parametrize(
    "platform,ids,error,match",
    [
        ("prolific", ("",), EnrolmentRejected, "needs its PROLIFIC_PID"),
        ("prolific", ("bad id <script>",), EnrolmentRejected, "malformed"),
        ("qualtrics", (PID,), EnrolmentClosed, "does not recruit through 'qualtrics'"),
        (None, (), EnrolmentClosed, "personal link only"),
    ],
)
def test_enrolment_the_study_does_not_offer_is_refused(recruiting, platform, ids, error, match) -> None:
    store, config, _ = recruiting
    with pytest.raises(error, match=match):
        store.enrol(config.name, platform, ids)


def test_consent_is_recorded_once_and_chained(recruiting) -> None:
    store, config, db = recruiting
    (token,) = store.add_participants(config.name, 1)
    p = store.participant(token)
    assert store.needs_consent(p)
    first = store.record_consent(p)
    assert store.record_consent(p) == first and not store.needs_consent(p)
    view = store.next_trial(p)
    store.record_vote(p, view.assignment_id, "perceptual", 0)
    assert store.verify(config.name).ok
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER study_consents_no_delete")
        raw.execute("DELETE FROM study_consents")
    assert any("voted without a consent record" in problem for problem in store.verify(config.name).problems)


def test_daily_cap(tmp_path: Path, make_study_files, monkeypatch: pytest.MonkeyPatch) -> None:
    import leaderboard.study.store as store_module

    store = StudyStore(tmp_path / "v.sqlite")
    config = load_study(make_study_files(tmp_path, n_images=3, daily_cap=3))
    store.create_study(config)
    p = store.participant(store.add_participants(config.name, 1)[0])
    views = store.trial_views(p.id)
    store.record_vote(p, views[0].assignment_id, "perceptual", 0)
    store.record_vote(p, views[0].assignment_id, "consistency", 0)
    store.record_vote(p, views[1].assignment_id, "perceptual", 0)
    assert store.votes_today(p) == 3 and store.cap_reached(p)
    with pytest.raises(DailyCapReached, match="today's 3 votes"):
        store.record_vote(p, views[1].assignment_id, "consistency", 0)
    assert not store.record_vote(p, views[0].assignment_id, "perceptual", 1).recorded, "a repeat is still a repeat"
    # the next day (UTC) the count starts again
    monkeypatch.setattr(store_module, "_utc_midnight", lambda: "2999-01-01T00:00:00.000000+00:00")
    assert not store.cap_reached(p)
    assert store.record_vote(p, views[1].assignment_id, "consistency", 0).recorded


# --------------------------------------------------------------------------- the vote page


def _page(**params: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(VOTER_APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _token(at) -> str:
    token = at.query_params["token"]
    return token[0] if isinstance(token, list) else token


def test_a_prolific_link_enrols_shows_consent_first_and_ends_with_the_completion_code(recruiting) -> None:
    store, config, _ = recruiting
    at = _page(study=config.name, PROLIFIC_PID=PID, STUDY_ID="s1", SESSION_ID="x1")
    assert any(CONSENT in m.value for m in at.markdown) and any("textures" in m.value for m in at.markdown)
    assert not at.radio, "no trial before consent"
    at.button[0].click().run()
    token = _token(at)
    assert "PROLIFIC_PID" not in at.query_params, "the platform id leaves the address once enrolled"
    assert store.participant(token) is not None and at.radio
    for _ in range(len(store.trial_views(store.participant(token).id)) * len(config.criteria)):
        at.radio[0].set_value("A")
        at.button[0].click().run()
        assert not at.exception, at.exception
    assert any("completed the study" in s.value for s in at.success)
    assert any("C1X2Y3Z4" in i.value for i in at.info)
    assert [b.proto.url for b in at.get("link_button")] == [config.recruitment.completion_url]
    assert store.verify(config.name).ok
    again = _page(study=config.name, PROLIFIC_PID=PID, STUDY_ID="s1", SESSION_ID="x2")
    again.button[0].click().run()
    assert any("already taken part" in w.value for w in again.warning) and "token" not in again.query_params
    assert len(store.progress(config.name)) == 1


def test_a_token_participant_accepts_the_consent_before_the_first_trial(recruiting) -> None:
    store, config, _ = recruiting
    (token,) = store.add_participants(config.name, 1)
    at = _page(token=token)
    assert any(CONSENT in m.value for m in at.markdown) and not at.radio
    at.button[0].click().run()
    assert at.radio and not store.needs_consent(store.participant(token))
    assert not _page(token=token).button[0].proto.label.startswith("I agree"), "consent asked once"


def test_the_page_stops_at_the_daily_cap(tmp_path: Path, make_study_files, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'v.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    store = StudyStore(url)
    config = load_study(make_study_files(tmp_path, n_images=3, daily_cap=2))
    store.create_study(config)
    (token,) = store.add_participants(config.name, 1)
    at = _page(token=token)
    for _ in range(2):
        at.radio[0].set_value("B")
        at.button[0].click().run()
    assert any("today's 2 answers" in i.value for i in at.info) and not at.radio
    assert store.verify(config.name).n_votes == 2
