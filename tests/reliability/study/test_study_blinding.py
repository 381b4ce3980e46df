"""Voters cannot unblind a study: the voting app leaks no method name, path or way to the results.

Driven headlessly (AppTest); the real-browser check of the same guarantees (links, URLs, the
toolbar) is ``tests/leaderboard/test_browser_study.py`` (marker ``browser``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

ROOT = Path(__file__).resolve().parents[3]
VOTER_APP = str(ROOT / "leaderboard" / "study" / "voter" / "app.py")
BOARD_APP = str(ROOT / "leaderboard" / "app.py")
METHODS = ("SecretNetV2", "HiddenDiffusion", "CovertGAN")


@pytest.fixture()
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_study):
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    config = load_study(write_study(tmp_path / "files", methods=METHODS))
    store = StudyStore(url)
    store.create_study(config, admin_secret="adm1n")
    (token,) = store.add_participants(config.name, 1)
    return store, config, token, tmp_path


def _voter(token: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(VOTER_APP, default_timeout=60)
    at.query_params["token"] = token
    at.run()
    assert not at.exception, at.exception
    return at


def _page_text(at) -> str:
    """Every field of every element the page sends (labels, options, captions, markdown, URLs...)."""

    def walk(node):
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return "\n".join(str(n.proto) for n in walk(at._tree) if getattr(n, "proto", None) is not None)


def _with_a_file(shown: tuple[str, ...]) -> str:
    """The first candidate served from a file (a gold trial's bicubic one is computed)."""
    from leaderboard.study.config import BICUBIC

    return next(c for c in shown if c != BICUBIC)


def _assert_blind(text: str, tmp_path: Path) -> None:
    for secret in (*METHODS, str(tmp_path), "/files/", ".png'", "img_0", "__hr__", "__bicubic__"):
        assert secret not in text, f"{secret!r} reached the voter"


def test_the_voting_page_names_no_method(study) -> None:
    store, config, token, tmp_path = study
    at = _voter(token)
    for _ in range(len(store.trial_views(store.participant(token).id))):
        _assert_blind(_page_text(at), tmp_path)
        for _ in config.criteria:
            at.radio[0].set_value("A")
            at.button[0].click().run()
            assert not at.exception, at.exception
    assert any("completed the study" in s.value for s in at.success)
    _assert_blind(_page_text(at), tmp_path)


def test_the_voting_app_has_one_page_and_no_chrome(study) -> None:
    _, _, token, _ = study
    at = _voter(token)
    assert not at.get("page_link") and not at.sidebar.children, "no links or sidebar to other pages"
    css = "\n".join(str(h.proto) for h in at.get("html"))
    for hidden in ("stToolbar", "stMainMenu", "stSidebarNav", "stHeader"):
        assert hidden in css, f"{hidden} is not hidden"
    with pytest.raises(Exception, match="Could not find page"):  # noqa: B017 - AppTest raises a bare error
        at.switch_page("pages/compare.py")


def test_the_results_board_offers_no_vote_page() -> None:
    """A voter who finds the board gets no vote page there (nor would a vote link lead into it)."""
    from streamlit.testing.v1 import AppTest

    assert not (ROOT / "leaderboard" / "pages" / "study_vote.py").exists()
    at = AppTest.from_file(BOARD_APP, default_timeout=60)
    at.run()
    with pytest.raises(Exception, match="Could not find page"):  # noqa: B017 - AppTest raises a bare error
        at.switch_page("pages/study_vote.py")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_broken_candidate_file_shows_a_neutral_error_with_an_id(study, damage, caplog) -> None:
    store, config, token, tmp_path = study
    view = store.next_trial(store.participant(token))
    broken = config.file(_with_a_file(view.shown), view.image_id)
    if damage == "missing":
        broken.unlink()
    else:
        broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with caplog.at_level(logging.ERROR, logger="screensr.voter"):
        at = _voter(token)
    text = _page_text(at)
    _assert_blind(text, tmp_path)
    (error,) = [e.value for e in at.error]
    error_id = re.search(r"error id ([0-9a-f]{8})", error).group(1)
    assert not at.radio, "no vote on a trial whose images cannot be shown"
    # the organiser gets the details, keyed by the id the voter saw
    incidents = store.incidents(config.name)
    (row,) = incidents[incidents["error_id"] == error_id].itertuples()
    assert str(broken) in row.detail and row.participant == 0 and "serving the trial's images" in row.context
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert error_id in logged and str(broken) in logged
    # the same problem again: the same id, counted
    assert error_id in _voter(token).error[0].value
    assert int(store.incidents(config.name).loc[0, "count"]) == 2


def test_the_admin_page_lists_voter_errors_by_id(study) -> None:
    from streamlit.testing.v1 import AppTest

    store, config, token, _ = study
    view = store.next_trial(store.participant(token))
    missing = config.file(_with_a_file(view.shown[::-1]), view.image_id)
    missing.unlink()
    error_id = re.search(r"error id ([0-9a-f]{8})", _voter(token).error[0].value).group(1)
    at = AppTest.from_file(BOARD_APP, default_timeout=60)
    at.run()
    at.switch_page("study/pages/study_admin.py").run()
    at.text_input[0].input("adm1n")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("Voters met 1 error" in w.value for w in at.warning)
    table = at.table[0].value
    assert table["error_id"].tolist() == [error_id] and str(missing) in table["summary"].iloc[0]
    assert any(error_id in c.value and str(missing) in c.value for c in at.code)
    at.text_input(key="admin_error_id").input("deadbeef").run()
    assert any("No error 'deadbeef'" in i.value for i in at.info)


def test_study_admin_login_is_rate_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_study) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.secrets import AttemptLimiter

    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    StudyStore(url).create_study(load_study(write_study(tmp_path, name="rate-limited")), admin_secret="adm1n")
    original = AttemptLimiter.__init__
    # no sleeping in the test (every failure still counts); a fresh limiter for this test
    monkeypatch.setattr(AttemptLimiter, "__init__", lambda self, **kw: original(self, **kw, sleep=lambda _s: None))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(BOARD_APP, default_timeout=60)
        at.run()
        at.switch_page("study/pages/study_admin.py").run()
        for _ in range(5):
            at.text_input[0].input("guess")
            at.button[0].click().run()
            assert any("Wrong admin secret" in e.value for e in at.error)
        fresh = AppTest.from_file(BOARD_APP, default_timeout=60)  # a new session does not reset it
        fresh.run()
        fresh.switch_page("study/pages/study_admin.py").run()
        fresh.text_input[0].input("adm1n")  # even the right secret waits out the lockout
        fresh.button[0].click().run()
        assert any("Too many wrong secrets" in e.value for e in fresh.error) and not fresh.metric
    finally:
        st.cache_resource.clear()  # later tests get an unlocked limiter
