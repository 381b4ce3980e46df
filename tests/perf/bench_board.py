"""Leaderboard benchmark: data preparation and first page load at the issue's scale.

Run from the repository root, with the checkout importable (``pip install -e .`` or
``PYTHONPATH=.``): ``python tests/perf/bench_board.py [--methods 50 --datasets 3 --images 130] [--no-browser]``

Store: 50 methods x 3 datasets x 12 metrics x 130 images (+ GT no-reference scores), written
through the results store's own API (as the runner writes them).

Measured in the same run (median of ``--repeat`` runs where it is cheap):

* data preparation of the leaderboard page, cold: read the store + aggregate every
  (dataset, method, metric) with a 1000-resample bootstrap CI + the ranked table of one dataset;
  warm: the table from the cached board (what a filter change costs);
* the baseline for the aggregation: scipy's bootstrap one group at a time (``scipy_summary``
  below) on the same scores, so the ratio shows what the vectorised bootstrap
  (``benchmark.report.mean_ci``, used by the leaderboard and the reports) buys;
* page loads in Chromium (Playwright, Debian's chromium), from ``goto`` until the table and every
  lazily loaded element are drawn: the first visit after ``screensr board`` started (the server
  preloads the board while it starts), later visits (cached board), and visits that find the
  board stale (a server with ``SCREENSR_BOARD_TTL=1``: each visit starts a background reload of
  the store, competing for the CPU, while the page is served from the previous board); baseline: a one-line Streamlit page served the same way (the framework's own cost).

Goals (issue 7): data preparation < 1 s, first page load < 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, file: str):
    """A module of tests/leaderboard/board/, loaded by path (the tests folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "leaderboard" / "board" / file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _fixtures():
    """tests/leaderboard/board/conftest.py (the synthetic-store builder)."""
    return _load("board_conftest", "conftest.py")



def scipy_summary(frame, n_boot: int = 1000):
    """The straightforward aggregation: scipy's percentile bootstrap, one group at a time."""
    import numpy as np
    from scipy.stats import bootstrap

    rows = []
    for key, g in frame.groupby(["dataset", "method", "metric"], sort=True):
        v = g["value"].to_numpy(dtype=float)
        ci = bootstrap((v,), np.mean, n_resamples=n_boot, method="percentile", vectorized=True,
                       random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
        rows.append((*key, v.mean(), ci.low, ci.high, len(v)))
    return rows

def build_store(base: Path, n_methods: int, n_datasets: int, n_images: int) -> tuple[str, float, int]:
    bf = _fixtures()

    from benchmark.store import ResultsStore

    url = f"sqlite:///{base / 'results.db'}"
    store = ResultsStore(url)
    t0 = time.perf_counter()
    names = tuple(f"Set{i}" for i in range(n_datasets))
    bf.populate(store, datasets=names, n_methods=n_methods, n_images=n_images, metrics=tuple(bf.METRICS))
    seconds = time.perf_counter() - t0
    rows = len(store.scores_frame())
    store.close()
    return url, seconds, rows


CPU: dict[str, float] = {}  # measurement -> median CPU seconds of this process (contention-free)


def timed(fn, repeat: int, name: str) -> tuple[float, object]:
    times, cpus, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    CPU[name] = statistics.median(cpus)
    return statistics.median(times), out


def prep_benchmarks(url: str, repeat: int) -> list[tuple[str, float]]:
    from benchmark import report
    from leaderboard.board import data, display, loading

    def cold():
        board = loading.load_board(url)
        cols = display.select_metric_set(board.columns("Set0"), "Default")
        return board, data.leaderboard_table(board.summary, "Set0", cols, methods=board.methods)

    t_cold, (board, _) = timed(cold, repeat, "page data preparation, cold (read + aggregate + table)")

    from benchmark.store import ResultsStore

    def read_only():
        store = ResultsStore(url)
        try:
            return store.scores_frame()
        finally:
            store.close()

    t_read, scores = timed(read_only, 1, "store read baseline: ResultsStore.scores_frame")
    t_fast, _ = timed(lambda: loading.read_scores(ResultsStore(url)), repeat, "store read: leaderboard.loading.read_scores")
    t_agg, _ = timed(lambda: report.summary(board.scores), repeat, "aggregate: benchmark.report.summary")

    def warm():
        cols = display.select_metric_set(board.columns("Set1"), "All")
        table = data.leaderboard_table(board.summary, "Set1", cols, methods=board.methods)
        return data.sort_table(table, "lpips", cols)

    t_warm, _ = timed(warm, repeat, "page data preparation, warm (filter change)")

    def with_intervals():
        # what the page builds: the table plus the bootstrap rank intervals (N_BOOT resamples,
        # every ranked metric), computed afresh (the board memoises them per filter)
        board._memo.clear()
        cols = display.select_metric_set(board.columns("Set1"), "All")
        return board.table("Set1", cols)

    t_ranks, _ = timed(with_intervals, repeat, "page table with rank intervals (Board.table, not memoised)")
    frame = scores[["dataset", "image", "method", "metric", "value"]]
    t_base, _ = timed(lambda: scipy_summary(frame, n_boot=1000), 1, "aggregate baseline: scipy per group")
    return [
        ("store read baseline: ResultsStore.scores_frame", t_read),
        ("store read: leaderboard.loading.read_scores", t_fast),
        ("aggregate: benchmark.report.summary", t_agg),
        ("aggregate baseline: scipy per group", t_base),
        ("page data preparation, cold (read + aggregate + table)", t_cold),
        ("page data preparation, warm (filter change)", t_warm),
        ("page table with rank intervals (Board.table, not memoised)", t_ranks),
    ]


def _serve(args: list[str], port: int, env: dict):
    import subprocess

    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def browser_benchmarks(url: str, tmp: Path, repeat: int) -> list[tuple[str, float]]:
    import signal

    from playwright.sync_api import sync_playwright

    from core.distributed import free_port

    browser_tests = _load("board_browser_tests", "test_browser_board.py")
    CHROMIUM, CHROMIUM_ARGS = browser_tests.CHROMIUM, browser_tests.CHROMIUM_ARGS  # noqa: N806
    wait_healthy = browser_tests.wait_healthy

    hello = tmp / "hello.py"
    hello.write_text('import streamlit as st\nst.title("Hello")\nst.write("baseline page")\n')
    port_b, port_m, port_h = free_port(), free_port(), free_port()
    env = {**os.environ}
    cmd = [sys.executable, "-m", "screensr.cli", "board", "--store", url, "--port"]
    board = _serve([*cmd, str(port_b)], port_b, env)
    # the same app with a 1 s time-to-live: every visit (1.5 s apart) finds the board stale and
    # triggers a background reload of the store while its page is served
    miss = _serve([*cmd, str(port_m)], port_m, {**env, "SCREENSR_BOARD_TTL": "1"})
    base = _serve(
        [sys.executable, "-m", "streamlit", "run", str(hello), "--server.headless", "true", "--server.port",
         str(port_h), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"], port_h, env,
    )  # fmt: skip
    results = []
    try:
        for port, proc in ((port_b, board), (port_m, miss), (port_h, base)):
            wait_healthy(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

            def load(address: str, text: str) -> float:
                page = browser.new_page(viewport={"width": 1600, "height": 1100})
                t0 = time.perf_counter()
                page.goto(address)
                page.get_by_text(text).first.wait_for(timeout=120_000)
                page.wait_for_function(
                    "() => document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0", timeout=120_000
                )
                seconds = time.perf_counter() - t0
                page.close()
                return seconds

            def missed() -> float:
                time.sleep(1.5)
                return load(f"http://127.0.0.1:{port_m}/", "Best by aggregated rank")

            lb = f"http://127.0.0.1:{port_b}/"
            results.append(("browser: first load after `screensr board` started", load(lb, "Best by aggregated rank")))
            warm = statistics.median(load(lb, "Best by aggregated rank") for _ in range(repeat))
            results.append(("browser: leaderboard load, cached board", warm))
            missed()  # the first visit to this server pays Streamlit's own first-session costs
            results.append(("browser: leaderboard load, board stale (reloading)", statistics.median(missed() for _ in range(repeat))))
            load(f"http://127.0.0.1:{port_h}/", "baseline page")
            hello_t = statistics.median(load(f"http://127.0.0.1:{port_h}/", "baseline page") for _ in range(repeat))
            results.append(("browser baseline: one-line Streamlit page", hello_t))
            browser.close()
    finally:
        for proc in (board, miss, base):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=int, default=50)
    parser.add_argument("--datasets", type=int, default=3)
    parser.add_argument("--images", type=int, default=130)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-board-") as tmp:
        os.environ["SCREENSR_HOME"] = str(Path(tmp) / "home")
        url, t_write, rows = build_store(Path(tmp), args.methods, args.datasets, args.images)
        print(f"store: {args.methods} methods x {args.datasets} datasets x 12 metrics x {args.images} images "
              f"= {rows} scores (incl. GT), written in {t_write:.2f} s")  # fmt: skip
        results = prep_benchmarks(url, args.repeat)
        if not args.no_browser:
            results += browser_benchmarks(url, Path(tmp), args.repeat)
    base_agg = dict(results)["aggregate baseline: scipy per group"]
    base_read = dict(results)["store read baseline: ResultsStore.scores_frame"]
    base_web = dict(results).get("browser baseline: one-line Streamlit page")
    load = os.getloadavg()[0]
    print(f"\n{'measurement':58s} {'wall s':>8s} {'cpu s':>7s} {'ratio':>15s}   (load average {load:.1f})")
    for name, seconds in results:
        ratio = ""
        if name.startswith("aggregate"):
            ratio = f"{seconds / base_agg:.3f}x scipy"
        elif name.startswith("store read"):
            ratio = f"{seconds / base_read:.3f}x store"
        elif name.startswith("browser") and base_web:
            ratio = f"{seconds / base_web:.2f}x hello"
        cpu = f"{CPU[name]:7.3f}" if name in CPU else " " * 7
        print(f"{name:58s} {seconds:8.3f} {cpu} {ratio:>15s}")
    prep = dict(results)["page data preparation, cold (read + aggregate + table)"]
    print(f"\ngoal: data preparation < 1 s: {'met' if prep < 1.0 else 'NOT met'} ({prep:.3f} s cold)")
    if not args.no_browser:
        first = dict(results)["browser: first load after `screensr board` started"]
        stale = dict(results)["browser: leaderboard load, board stale (reloading)"]
        print(f"goal: first page load < 3 s: {'met' if first < 3.0 else 'NOT met'} ({first:.3f} s; "
              f"{stale:.3f} s while the board reloads in the background)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
