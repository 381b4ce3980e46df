"""A participant votes through a small study in a real browser (Chromium + Playwright).

Starts ``streamlit run leaderboard/app.py`` on a free local port against a temporary study store,
opens the participant's personal link, votes every criterion of every trial (refreshing the page
half-way), and checks the votes in the database and the chain.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from test_study_fixtures import make_study_files

from leaderboard.study import load_study
from leaderboard.study_db import StudyStore

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def app_server(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium)")
    db = tmp_path / "votes.sqlite"
    config = load_study(make_study_files(tmp_path, methods=("SecretNetV2", "HiddenDiffusion"), n_images=2))
    store = StudyStore(db)
    store.create_study(config, admin_secret="adm1n")
    port = _free_port()
    env = {**os.environ, "SCREENSR_STUDY_STORE": f"sqlite:///{db}"}
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed in the finaliser below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "leaderboard" / "app.py"),
         "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
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
                pytest.fail("streamlit did not start: " + (tmp_path / "streamlit.log").read_text()[-2000:])
            time.sleep(0.5)
        yield base, store, config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
        and page.locator("[data-stale='true']").count() == 0,
        60,
        f"{open_forms} open form(s) under '{heading}'",
        page,
    )


def test_participant_votes_in_a_real_browser(app_server) -> None:
    from playwright.sync_api import sync_playwright

    base, store, config = app_server
    (token,) = store.add_participants(config.name, 1)
    participant = store.participant(token)
    n_trials = len(store.trial_views(participant.id))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/study_vote?token={token}")
            page.wait_for_selector("[data-testid='stApp']")
            page.get_by_text(f"Comparison 1 of {n_trials}").wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "SecretNetV2" not in body and "HiddenDiffusion" not in body
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
                    _wait(lambda n=n_votes: store.verify(config.name).n_votes >= n, 60, f"vote {n_votes}",
                          page)  # fmt: skip
            page.get_by_text("You have completed the study").wait_for(timeout=60_000)
        finally:
            browser.close()
    frame = store.votes_frame(config.name)
    assert len(frame) == n_trials * len(config.criteria)
    assert (frame["position"] == 0).all(), "each vote went to the first option on screen"
    assert not frame.duplicated(["participant", "trial", "criterion"]).any()
    assert store.verify(config.name).ok
