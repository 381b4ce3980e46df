"""Participants in a real browser (Chromium + Playwright) on the voting app as users serve it.

Starts ``screensr board study serve`` (the real command line) on a free local port against a
temporary study store, then:

* a participant opens their personal link and votes every criterion of every trial (refreshing
  the page half-way); the votes are checked in the database and the chain;
* a participant link leads nowhere else: no link, sidebar, toolbar or menu on the page, and every
  URL of the results board (``/leaderboard``, ``/compare``, ``/methods``, ``/study_admin``,
  ``/submit``...) shows the vote page again, never a result or a method name;
* a broken candidate file shows a neutral error with an id, and the page's HTML holds no path
  and no method name;
* each design (pairwise with "no preference" and the HR reference, ACR, ranking) is voted end to
  end through its widgets, blind at every step, and stored as the judgement given;
* a Prolific-style link (``?study=...&PROLIFIC_PID=...``) shows the consent, enrols, completes and
  shows the completion code with the link back to Prolific; the same PID cannot enrol again.

One voting server (module-scoped) serves every study of the module from one store.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from core.distributed import free_port
from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
METHODS = ("SecretNetV2", "HiddenDiffusion")
BOARD_PATHS = ("/leaderboard", "/plots", "/compare", "/methods", "/study_admin", "/submit", "/study_vote", "/app")


# The studies one voting server serves (one store, one server for the module): name -> YAML.
STUDIES: dict[str, dict] = {
    "best": {},
    "broken": {},
    "pairwise": {"design": "pairwise", "no_preference": True, "reference": True, "votes_per_participant": 2},
    "acr": {"design": "acr", "reference": True, "votes_per_participant": 3},
    "ranking": {"design": "ranking", "methods": {m: m for m in (*METHODS, "CovertGAN")}},
    "prolific": {"consent": "I agree that my answers are stored anonymously.",
                 "recruitment": {"platforms": ["prolific"], "completion_code": "CQ7K2ZX1",
                                 "completion_url": "https://app.prolific.com/submissions/complete?cc=CQ7K2ZX1"}},
}  # fmt: skip


@pytest.fixture(scope="module")
def voting_server(tmp_path_factory: pytest.TempPathFactory, make_study_files):
    """``screensr board study serve`` (the real command line) on a store holding :data:`STUDIES`;
    yields ``(base URL, store, {name: (config, files root)})``."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium)")
    root = tmp_path_factory.mktemp("voting")
    db = root / "votes.sqlite"
    store = StudyStore(db)
    studies = {}
    for name, settings in STUDIES.items():
        extra = dict(settings)
        files = root / name
        methods = tuple(extra.pop("methods", {m: m for m in METHODS}))
        config = load_study(make_study_files(files, methods=methods, n_images=2, name=name, gold={"images": ["img_00"]},
                                             **extra))  # fmt: skip
        store.create_study(config, admin_secret="adm1n")
        studies[name] = (config, files)
    port = free_port()
    log = open(root / "voter.log", "wb")  # noqa: SIM115 - closed in the finaliser below
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
                pytest.fail("the voting app did not start: " + (root / "voter.log").read_text()[-2000:])
            time.sleep(0.5)
        yield base, store, studies, root
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def voter_server(voting_server):
    """The best-of-N study of the voting server: ``(base URL, store, config, its files root)``."""
    base, store, studies, _ = voting_server
    config, files = studies["best"]
    return base, store, config, files


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
    for secret in (*METHODS, "CovertGAN", str(tmp_path), "img_0", "__hr__", "__bicubic__"):
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
        # the page's style sheet hides it; on a busy machine it may be applied a moment after the
        # trial is drawn, so wait a little for it
        _wait(lambda s=shown: all(not s.nth(i).is_visible() for i in range(s.count())), 15, f"{chrome} hidden", page)
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


def test_a_broken_candidate_file_shows_a_neutral_error_in_the_browser(voting_server, browser) -> None:
    base, store, studies, root = voting_server
    config, tmp_path = studies["broken"]
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
    log = (root / "voter.log").read_text()
    assert error_id in log and str(missing) in log, "the server log has the details"


def _click_option(container, text: str) -> None:
    """Pick the radio option ``text`` of ``container`` and wait until the widget shows it picked
    (a click that lands while the page is still being drawn is lost: click again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    picked = container.locator("[data-testid='stRadioOption'][data-selected='true']",
                               has_text=re.compile(f"^{re.escape(text)}$"))  # fmt: skip
    for _ in range(5):
        container.get_by_text(text, exact=True).click()
        try:
            picked.first.wait_for(timeout=3_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the option {text!r} could not be picked")


@pytest.mark.parametrize("design", ["pairwise", "acr", "ranking"])
def test_each_design_is_voted_in_a_real_browser(voting_server, browser, design: str) -> None:
    base, store, studies, _ = voting_server
    config, files = studies[design]
    (token,) = store.add_participants(config.name, 1)
    participant = store.participant(token)
    page = browser.new_page()
    page.goto(f"{base}/?token={token}")
    page.wait_for_selector("[data-testid='stApp']")
    n_criteria = len(config.criteria)
    total = len(store.trial_views(participant.id))
    for trial in range(total):
        heading = f"Comparison {trial + 1} of {total}"
        for done in range(n_criteria):
            _settle(page, heading, n_criteria - done)
            _assert_blind(page, files)
            assert _links_elsewhere(page) == [], "a trial page links somewhere"
            if config.reference:
                page.get_by_text("Reference (HR)").first.wait_for(timeout=30_000)  # the HR tile is shown
            form = page.locator("[data-testid='stForm']").first
            form.get_by_role("button", name="Submit").wait_for()  # drawn after the form's widgets
            if design == "pairwise":
                _click_option(form, "No preference" if trial == 1 else "B")
            elif design == "acr":
                _click_option(form, "4 Good")
            else:
                radios = form.locator("[data-testid='stRadio']")
                n = len(store.trial_views(participant.id)[trial].shown)
                _wait(lambda r=radios, n=n: r.count() == n, 30, f"{n} rank widgets", page)  # drawn one by one
                for i in range(n):  # the last result on screen ranked best
                    _click_option(radios.nth(i), str(n - i))
            form.get_by_role("button", name="Submit").click()
            expected = trial * n_criteria + done + 1
            _wait(lambda n=expected: store.verify(config.name).n_votes >= n, 60, f"vote {expected}", page)
    page.get_by_text("You have completed the study").wait_for(timeout=60_000)
    _assert_blind(page, files)
    frame = store.votes_frame(config.name)
    frame = frame[frame["participant"] == participant.number]
    assert len(frame) == total * n_criteria and store.verify(config.name).ok
    if design == "pairwise":
        assert frame["no_preference"].sum() == n_criteria, "the second trial's answers"
        assert (frame.loc[~frame["no_preference"], "position"] == 1).all()
    elif design == "acr":
        assert (frame["rating"] == 4).all()
    else:
        assert (frame["ranking"] == frame["shown"].map(lambda s: "|".join(reversed(s.split("|"))))).all()


def test_a_prolific_link_enrols_completes_and_shows_the_completion_code(voting_server, browser) -> None:
    base, store, studies, _ = voting_server
    config, files = studies["prolific"]
    page = browser.new_page()
    page.goto(f"{base}/?study={config.name}&PROLIFIC_PID=5f2a9c0e1b3d4e6f7a8b9c0d&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_text("I agree that my answers are stored anonymously.").wait_for(timeout=60_000)
    assert page.locator("[data-testid='stForm']").count() == 0, "no trial before consent"
    page.get_by_role("button", name="I agree and start").click()
    page.get_by_text("Comparison 1 of").first.wait_for(timeout=60_000)
    assert "PROLIFIC_PID" not in page.url and "token=" in page.url
    (participant,) = [store.participant(page.url.split("token=")[1].split("&")[0])]
    total = len(store.trial_views(participant.id))
    for trial in range(total):
        for done in range(len(config.criteria)):
            _settle(page, f"Comparison {trial + 1} of {total}", len(config.criteria) - done)
            _assert_blind(page, files)
            form = page.locator("[data-testid='stForm']").first
            form.get_by_role("button", name="Submit").wait_for()  # drawn after the form's widgets
            _click_option(form, "A")
            form.get_by_role("button", name="Submit").click()
            n = trial * len(config.criteria) + done + 1
            _wait(lambda n=n: store.verify(config.name).n_votes >= n, 60, f"vote {n}", page)
    page.get_by_text("You have completed the study").wait_for(timeout=60_000)
    page.get_by_text("CQ7K2ZX1").wait_for(timeout=30_000)
    page.get_by_role("link", name="Return to the study platform").wait_for(timeout=30_000)
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    assert config.recruitment.completion_url in hrefs
    assert store.progress(config.name)["enrolled_via"].tolist() == ["prolific"]
    # the same Prolific id cannot enrol a second time
    again = browser.new_page()
    again.goto(f"{base}/?study={config.name}&PROLIFIC_PID=5f2a9c0e1b3d4e6f7a8b9c0d&STUDY_ID=s1&SESSION_ID=x2")
    again.get_by_role("button", name="I agree and start").click()
    again.get_by_text("already taken part in this study").wait_for(timeout=60_000)
    assert len(store.progress(config.name)) == 1
