"""Participants in a real browser (Chromium + Playwright) on the voting app as users serve it.

Starts ``screensr board study serve`` (the real command line) on a free local port against a
temporary study store, then:

* a participant opens their personal link and votes every criterion of every trial (refreshing
  the page half-way); the votes are checked in the database and the chain;
* a participant link leads nowhere else: no link, sidebar, toolbar or menu on the page, and every
  URL of the results board (``/leaderboard``, ``/compare``, ``/methods``, ``/study_admin``,
  ``/submit``...) shows the vote page again, never a result or a method name;
* a broken candidate file shows a neutral error with an id, and the page's HTML holds no path
  and no method name.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
METHODS = ("SecretNetV2", "HiddenDiffusion")
BOARD_PATHS = ("/leaderboard", "/plots", "/compare", "/methods", "/study_admin", "/submit", "/study_vote", "/app")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def voter_server(tmp_path: Path, make_study_files):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium)")
    db = tmp_path / "votes.sqlite"
    config = load_study(make_study_files(tmp_path, methods=METHODS, n_images=2))
    store = StudyStore(db)
    store.create_study(config, admin_secret="adm1n")
    port = _free_port()
    log = open(tmp_path / "voter.log", "wb")  # noqa: SIM115 - closed in the finaliser below
    proc = subprocess.Popen(
        [sys.executable, "-m", "screensr.cli", "board", "study", "serve", "--store", str(db), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the voting app did not start: " + (tmp_path / "voter.log").read_text()[-2000:])
            time.sleep(0.5)
        yield base, store, config, tmp_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _wait(predicate, timeout: float = 30.0, what: str = "condition", page=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            shown = page.inner_text("body")[-1500:] if page is not None else ""
            raise AssertionError(f"timed out waiting for {what}; page shows:\n{shown}")
        time.sleep(0.2)


def _settle(page, heading: str, open_forms: int) -> None:
    """Wait until the rerun finished: the trial's heading, its open forms, no stale elements."""
    page.get_by_text(heading).wait_for(timeout=60_000)
    _wait(
        lambda: page.locator("[data-testid='stForm']").count() == open_forms
        and page.locator("[data-testid='stForm'] [data-stale='true'], [data-stale='true']").count() == 0,
        60,
        f"{open_forms} open form(s) under '{heading}'",
        page,
    )


def _links_elsewhere(page) -> list[str]:
    """Every link on the page except jumps within it (``#stMain``, Streamlit's skip link)."""
    here = page.url.split("#", 1)[0]
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    return [h for h in hrefs if h.split("#", 1)[0] != here]


def _assert_blind(page, tmp_path: Path) -> None:
    html = page.content()
    for secret in (*METHODS, str(tmp_path), "img_0", "__hr__", "__bicubic__"):
        assert secret not in html, f"{secret!r} is in the voter's HTML"


def test_participant_votes_in_a_real_browser(voter_server, browser) -> None:
    base, store, config, tmp_path = voter_server
    (token,) = store.add_participants(config.name, 1)
    participant = store.participant(token)
    n_trials = len(store.trial_views(participant.id))
    page = browser.new_page()
    page.goto(f"{base}/?token={token}")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_text(f"Comparison 1 of {n_trials}").wait_for(timeout=60_000)
    _assert_blind(page, tmp_path)
    # the images are PNG bytes without metadata
    src = page.locator("[data-testid='stImage'] img").first.get_attribute("src")
    png = page.request.get(base + src if src.startswith("/") else src).body()
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and not im.info.get("icc_profile") and "Software" not in im.info
    n_votes = 0
    n_criteria = len(config.criteria)
    for trial in range(n_trials):
        if trial == 1:
            page.reload()  # a refresh resumes at the open trial
            page.wait_for_selector("[data-testid='stApp']")
        for done in range(n_criteria):
            _settle(page, f"Comparison {trial + 1} of {n_trials}", n_criteria - done)
            form = page.locator("[data-testid='stForm']").first
            form.get_by_text("A", exact=True).click()
            form.get_by_role("button", name="Submit").click()
            n_votes += 1
            _wait(lambda n=n_votes: store.verify(config.name).n_votes >= n, 60, f"vote {n_votes}", page)
    page.get_by_text("You have completed the study").wait_for(timeout=60_000)
    _assert_blind(page, tmp_path)
    frame = store.votes_frame(config.name)
    assert len(frame) == n_trials * len(config.criteria)
    assert (frame["position"] == 0).all(), "each vote went to the first option on screen"
    assert not frame.duplicated(["participant", "trial", "criterion"]).any()
    assert store.verify(config.name).ok


def test_a_participant_link_leads_nowhere_else(voter_server, browser) -> None:
    base, store, config, tmp_path = voter_server
    (token,) = store.add_participants(config.name, 1)
    n_trials = len(store.trial_views(store.participant(token).id))
    page = browser.new_page()
    page.goto(f"{base}/?token={token}")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_text(f"Comparison 1 of {n_trials}").wait_for(timeout=60_000)
    _wait(lambda: page.locator("[data-stale='true']").count() == 0, 30, "the page to settle", page)
    assert _links_elsewhere(page) == [], "the vote page links somewhere"
    for chrome in ("stSidebar", "stSidebarNav", "stSidebarCollapsedControl", "stToolbar", "stMainMenu",
                   "stHeader", "stAppDeployButton"):  # fmt: skip
        shown = page.locator(f"[data-testid='{chrome}']")
        assert all(not shown.nth(i).is_visible() for i in range(shown.count())), f"{chrome} is visible"
    _assert_blind(page, tmp_path)
    # every URL of the results board is this same vote page (with the token) or the welcome (without)
    for path in BOARD_PATHS:
        for query, expect in ((f"?token={token}", f"Comparison 1 of {n_trials}"), ("", "personal link")):
            page.goto(f"{base}{path}{query}")
            page.wait_for_selector("[data-testid='stApp']")
            page.get_by_text(expect).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            for board_text in ("Leaderboard", "Admin secret", "Ground-truth", "Pareto", "Submissions", "Configuration"):
                assert board_text not in body, f"{path}{query} shows {board_text!r}"
            assert page.locator("input[type='password'], [data-testid='stDataFrame']").count() == 0
            assert _links_elsewhere(page) == [], f"{path}{query} links somewhere"
            _assert_blind(page, tmp_path)


def test_a_broken_candidate_file_shows_a_neutral_error_in_the_browser(voter_server, browser) -> None:
    base, store, config, tmp_path = voter_server
    (token,) = store.add_participants(config.name, 1)
    view = store.next_trial(store.participant(token))
    missing = config.file(view.shown[0], view.image_id)
    missing.unlink()
    page = browser.new_page()
    page.goto(f"{base}/?token={token}")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_text("quoting error id").wait_for(timeout=60_000)
    error_id = re.search(r"error id ([0-9a-f]{8})", page.inner_text("body")).group(1)
    _assert_blind(page, tmp_path)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stForm']").count() == 0, "no vote without the images"
    incidents = store.incidents(config.name)
    assert str(missing) in incidents.loc[incidents["error_id"] == error_id, "detail"].iloc[0]
    log = (tmp_path / "voter.log").read_text()
    assert error_id in log and str(missing) in log, "the server log has the details"
