"""Real browser, end to end: ``screensr board`` serves a populated store; Chromium loads every page.

Debian's Chromium driven by Playwright (never a downloaded browser). Run with ``-m browser``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.distributed import free_port
from leaderboard import crops
from leaderboard.board import data, display, loading

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Until Streamlit's health endpoint answers ``ok`` (or the server died / timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"screensr board exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout} s")


def serve(url: str, port: int) -> subprocess.Popen:
    """``screensr board --store URL --port P`` as a user runs it (the real command line)."""
    return subprocess.Popen(
        [sys.executable, "-m", "screensr.cli", "board", "--store", url, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and the streamlit process it started (its own process group)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def env(board_env):
    return board_env


@pytest.fixture(scope="module")
def server(env):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium chromium-driver)")
    port = free_port()
    proc = serve(env.url, port)
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    return page


def wait_done(page, text: str, timeout: float = 60_000) -> None:
    """Until ``text`` is shown and the script has finished running."""
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
    # Streamlit draws a page as its script runs: the sections after ``text`` may still be coming
    # (seen on a loaded machine); the app root says when the run has ended
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
    # lazily loaded elements (the data grid, inputs) show skeletons until their code has arrived
    page.wait_for_function(
        "() => document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0", timeout=timeout
    )


def assert_not_blank(png: bytes, min_ink: float = 0.005) -> float:
    """A screenshot that shows content: at least ``min_ink`` of its pixels differ clearly from the
    background (the most common colour), in more than a handful of colours. Returns the ink share."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert img.shape[0] > 300 and img.shape[1] > 300
    flat = img.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    ink = float(np.mean(np.abs(flat - background).max(axis=1) > 40))
    assert len(colours) > 50, f"screenshot has only {len(colours)} colours"
    assert ink > min_ink, f"screenshot is nearly blank ({ink:.2%} of pixels differ from the background)"
    return ink


def test_leaderboard_page_in_a_real_browser(server, browser, env, tmp_path):
    page = open_page(browser, server)
    wait_done(page, "Best by aggregated rank")
    text = page.inner_text("[data-testid='stMain']")
    board = loading.load_board(env.url)
    cols = display.select_metric_set(board.columns("DRealSR"), "Default")
    best = data.leaderboard_table(board.summary, "DRealSR", cols, methods=board.methods)["method"].tolist()
    assert f"1. {best[0]}" in text and f"2. {best[1]}" in text  # the podium, from the real data
    assert "Leaderboard" in text and "Ground-truth quality" in text
    # the leaderboard itself; the per-metric rank intervals and pairwise tests wait behind their
    # toggle; this store has no NTIRE 2025 components and no reported rows
    assert "Rank intervals per metric and pairwise tests" in text
    assert "NTIRE 2025 perceptual score" not in text and "Reported vs measured" not in text
    assert page.locator("[data-testid='stDataFrame']").count() == 1
    assert page.locator("[data-testid='stException']").count() == 0
    # the GT table is an HTML table: its numbers are in the DOM
    gt = data.gt_quality_table(board.summary)
    assert f"{gt.loc[0, 'niqe']:.4f}" in page.inner_text("[data-testid='stTable']")
    shot = page.screenshot(full_page=True)
    (tmp_path / "leaderboard.png").write_bytes(shot)
    assert_not_blank(shot, min_ink=0.015)  # a full table of numbers, not a page of whitespace
    page.close()


@pytest.mark.parametrize(
    ("path", "text", "min_ink"),
    [
        ("plots", "Pareto front:", 0.01),
        ("compare", "Scores of this image", 0.01),
        ("methods", "Configuration", 0.005),
        ("submit", "Submissions are disabled", 0.002),
        ("study_admin", "User study: administration", 0.001),  # no study yet: navigation and a title
    ],
)
def test_every_page_loads(server, browser, path, text, min_ink):
    page = open_page(browser, f"{server}/{path}")
    wait_done(page, text)
    assert page.locator("[data-testid='stException']").count() == 0
    assert_not_blank(page.screenshot(full_page=True), min_ink)
    page.close()


def test_compare_serves_exact_lossless_crops(server, browser, env):
    """The bytes the browser receives decode to exactly the expected nearest-neighbour crops."""
    page = open_page(browser, f"{server}/compare")
    wait_done(page, "Scores of this image")
    images = page.locator("[data-testid='stImage'] img")
    images.first.wait_for(timeout=30_000)
    srcs = [images.nth(i).get_attribute("src") for i in range(images.count())]
    assert len(srcs) == 5  # LR, HR and the three default methods
    board = loading.load_board(env.url)
    files = crops.dataset_images(board.datasets, "DRealSR")["img000"]
    cols = board.columns("DRealSR")
    top = data.leaderboard_table(board.summary, "DRealSR", cols, methods=board.methods)["method"].tolist()[:3]
    outputs = {m: env.outputs[m] / "img000.png" for m in top}
    _, panels = crops.comparison_crops(files, outputs, (0.5, 0.5), 128, 2)
    for src, (name, expected) in zip(srcs, panels.items(), strict=True):
        response = page.request.get(src if src.startswith("http") else f"{server}{src}")
        assert response.headers["content-type"] == "image/png", name
        got = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
        np.testing.assert_array_equal(got, expected, err_msg=name)
    page.close()


def test_static_export_works_offline_in_a_browser(browser, env, tmp_path):
    """The exported site opens from file://, loads every image without the network, and sorts."""
    from leaderboard.board.export import ExportOptions, export_site

    index = export_site(env.url, tmp_path / "site", ExportOptions(crops=1, crop_size=32, zoom=3))
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith("file:") else None)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    assert external == []
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).length")
    assert broken == 0 and page.locator("img").count() >= 4
    table = page.locator("table.sortable").first
    header = table.locator("th", has_text="PSNR ↑")

    def psnr_column() -> list[float]:
        col = [h.inner_text() for h in table.locator("th").all()].index("PSNR ↑")
        cells = table.locator("tbody tr").evaluate_all(f"rows => rows.map(r => r.cells[{col}].dataset.v)")
        return [float(v) for v in cells]

    header.click()
    assert psnr_column() == sorted(psnr_column())
    header.click()
    assert psnr_column() == sorted(psnr_column(), reverse=True)
    assert_not_blank(page.screenshot(full_page=True), 0.01)
    page.close()


def test_deep_link_as_first_request_uses_the_apps_navigation(env, browser):
    """A fresh server whose first visitor opens /methods?method=m04 gets the app's navigation
    (sections and titles from app.py), not Streamlit's pages-folder fallback."""
    port = free_port()
    proc = serve(env.url, port)
    try:
        wait_healthy(port, proc)
        page = open_page(browser, f"http://127.0.0.1:{port}/methods?method=m04")
        wait_done(page, "Configuration")
        nav = page.inner_text("[data-testid='stSidebarNav']")
        for title in ("Results", "Leaderboard", "Compare", "User study", "Submit"):
            assert title in nav, nav
        assert "study_vote" not in nav and "\napp\n" not in nav
        assert page.locator("[data-testid='stHeading']", has_text="m04").count() >= 1
        page.close()
    finally:
        stop(proc)


def test_visitors_get_no_deploy_button_or_developer_menu(server, browser):
    """``screensr board`` serves visitors Streamlit's viewer toolbar (client.toolbarMode=viewer):
    even on localhost, where Streamlit's default shows developers a Deploy button and a Rerun /
    Clear cache menu."""
    page = open_page(browser, server)
    wait_done(page, "Best by aggregated rank")
    assert page.locator("[data-testid='stAppDeployButton']").count() == 0
    menu = page.locator("[data-testid='stMainMenu']")
    if menu.count():  # the menu, when there is one, offers only viewer items
        menu.first.click()
        items = page.locator("[data-testid='stMainMenuItem']").all_inner_texts()
        assert not any(word in " ".join(items) for word in ("Deploy", "Rerun", "Clear cache")), items
    page.close()
