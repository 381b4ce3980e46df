"""Leaderboard benchmark: data preparation and first page load at the issue's scale.

Run: ``python tests/perf/bench_board.py [--methods 50 --datasets 3 --images 130] [--no-browser]``

Store: 50 methods x 3 datasets x 12 metrics x 130 images (+ GT no-reference scores), written
through the results store's own API (as the runner writes them).

Measured in the same run (median of ``--repeat`` runs where it is cheap):

* data preparation of the leaderboard page, cold: read the store + aggregate every
  (dataset, method, metric) with a 1000-resample bootstrap CI + the ranked table of one dataset;
  warm: the table from the cached board (what a filter change costs);
* the baseline for the aggregation: ``benchmark.report.summary`` (scipy's bootstrap, one group at
  a time) on the same scores, so the ratio shows what the vectorised bootstrap buys;
* first page load in Chromium (Playwright, Debian's chromium): ``screensr board`` started, the
  page opened until the table and every lazily loaded element are drawn; cold (empty cache:
  includes reading the store) and warm (a second browser tab); baseline: a one-line Streamlit
  page served the same way (the framework's own cost).

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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "leaderboard"))


def build_store(base: Path, n_methods: int, n_datasets: int, n_images: int) -> tuple[str, float, int]:
    import board_fixtures as bf

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


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def prep_benchmarks(url: str, repeat: int) -> list[tuple[str, float]]:
    from benchmark import report
    from leaderboard import data

    def cold():
        board = data.load_board(url)
        cols = data.select_metric_set(board.columns("Set0"), "Default")
        return board, data.leaderboard_table(board.summary, "Set0", cols, methods=board.methods)

    t_cold, (board, _) = timed(cold, repeat)

    from benchmark.store import ResultsStore

    def read_only():
        store = ResultsStore(url)
        try:
            return store.scores_frame()
        finally:
            store.close()

    t_read, scores = timed(read_only, repeat)
    t_agg, _ = timed(lambda: data.summarize(board.scores), repeat)

    def warm():
        cols = data.select_metric_set(board.columns("Set1"), "All")
        table = data.leaderboard_table(board.summary, "Set1", cols, methods=board.methods)
        return data.sort_table(table, "lpips", cols)

    t_warm, _ = timed(warm, repeat)
    t0 = time.perf_counter()
    report.summary(scores[["dataset", "image", "method", "metric", "value"]], n_boot=1000)
    t_base = time.perf_counter() - t0
    return [
        ("store read (scores_frame)", t_read),
        ("aggregate: leaderboard.data.summarize", t_agg),
        ("aggregate baseline: benchmark.report.summary", t_base),
        ("page data preparation, cold (read + aggregate + table)", t_cold),
        ("page data preparation, warm (filter change)", t_warm),
    ]


def _serve(args: list[str], port: int, env: dict):
    import subprocess

    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def browser_benchmarks(url: str, tmp: Path, repeat: int) -> list[tuple[str, float]]:
    import signal

    from playwright.sync_api import sync_playwright
    from test_browser_board import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

    hello = tmp / "hello.py"
    hello.write_text('import streamlit as st\nst.title("Hello")\nst.write("baseline page")\n')
    port_b, port_h = free_port(), free_port()
    env = {**os.environ}
    board = _serve([sys.executable, "-m", "screensr.cli", "board", "--store", url, "--port", str(port_b)], port_b, env)
    base = _serve(
        [sys.executable, "-m", "streamlit", "run", str(hello), "--server.headless", "true", "--server.port",
         str(port_h), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"], port_h, env,
    )  # fmt: skip
    results = []
    try:
        wait_healthy(port_b, board)
        wait_healthy(port_h, base)
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

            lb = f"http://127.0.0.1:{port_b}/"
            results.append(("browser: leaderboard first load, cold cache", load(lb, "Best by aggregated rank")))
            warm = statistics.median(load(lb, "Best by aggregated rank") for _ in range(repeat))
            results.append(("browser: leaderboard load, warm cache", warm))
            hello_t = statistics.median(load(f"http://127.0.0.1:{port_h}/", "baseline page") for _ in range(repeat))
            results.append(("browser baseline: one-line Streamlit page", hello_t))
            browser.close()
    finally:
        for proc in (board, base):
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
    base_agg = dict(results)["aggregate baseline: benchmark.report.summary"]
    base_web = dict(results).get("browser baseline: one-line Streamlit page")
    print(f"\n{'measurement':58s} {'seconds':>9s} {'ratio':>14s}")
    for name, seconds in results:
        ratio = ""
        if name.startswith("aggregate"):
            ratio = f"{seconds / base_agg:.3f}x scipy"
        elif name.startswith("browser") and base_web:
            ratio = f"{seconds / base_web:.2f}x hello"
        print(f"{name:58s} {seconds:9.3f} {ratio:>14s}")
    prep = dict(results)["page data preparation, cold (read + aggregate + table)"]
    print(f"\ngoal: data preparation < 1 s: {'met' if prep < 1.0 else 'NOT met'} ({prep:.3f} s cold)")
    if not args.no_browser:
        first = dict(results)["browser: leaderboard first load, cold cache"]
        print(f"goal: first page load < 3 s: {'met' if first < 3.0 else 'NOT met'} ({first:.3f} s cold)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
