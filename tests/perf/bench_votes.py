"""User-study benchmark: sustained vote throughput on SQLite and PostgreSQL, and the time to serve a trial's images.

Run: ``python tests/perf/bench_votes.py [--writers 16] [--trials 40] [--processes 4]`` (with the checkout
installed, ``pip install -e .``, or ``PYTHONPATH=.``)

Throughput: a study with ``--trials`` images x 2 criteria; ``--writers`` participants vote every
trial at once, each from its own thread sharing one ``StudyStore`` (how Streamlit sessions
share it), each vote being ``mark_served`` + ``record_vote`` (one durable transaction, hash chain
extended). Every vote is also submitted a second time, which must be ignored. Rows:

* ``1 writer``: the same work from one thread (the baseline of this run);
* ``N threads``: the target configuration (goal >= 200 votes/s, zero lost, zero duplicates);
* ``N threads, synchronous=NORMAL``: WAL without an fsync per commit, for comparison;
* ``P processes``: separate processes with their own engine (several app replicas on one host);
* ``PostgreSQL: N threads`` and ``PostgreSQL: P processes``: the same on a PostgreSQL server
  (``--postgres URL``, default ``$SCREENSR_TEST_POSTGRES_URL``, the server ``.ci/run`` starts;
  a fresh database per row, dropped after; rows left out, saying so, without a server), the
  ratio against the SQLite row of the same shape.

Serving: time to produce the PNG bytes of one trial (LR crop + every candidate's zoomed crop)
for 512x512 SR outputs of 6 methods, cold (decoded from disk) and warm (decoded images cached),
against the baseline of merely reading the same files' bytes from disk.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np


def make_study(root: Path, n_images: int, methods: list[str], lr_size: int, scale: int, seed: int = 0) -> Path:
    """LR/SR PNG folders and a study YAML (smooth random images: realistic PNG sizes)."""
    import yaml
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder in ("lr", *methods):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        base = rng.normal(size=(lr_size // 8, lr_size // 8, 3))
        lr = Image.fromarray(np.uint8(np.clip(128 + 60 * base, 0, 255))).resize((lr_size, lr_size), Image.BICUBIC)
        lr.save(root / "lr" / f"im{i:03d}.png")
        for m in methods:
            sr = np.asarray(lr.resize((lr_size * scale, lr_size * scale), Image.BICUBIC)).astype(int)
            sr = np.clip(sr + rng.integers(-6, 7, sr.shape), 0, 255).astype(np.uint8)
            Image.fromarray(sr).save(root / m / f"im{i:03d}.png")
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "bench", "lr": "lr", "methods": {m: m for m in methods}, "crop": 128}))
    return path


def vote_all(store, token: str) -> tuple[int, int]:
    """Vote (twice) every criterion of every trial of one participant; returns (recorded, attempts)."""
    participant = store.participant(token)
    keys = [c.key for c in store.study(participant.study_name).config.criteria]
    recorded = attempts = 0
    for view in store.trial_views(participant.id):
        store.mark_served(view.assignment_id)
        for key in keys:
            for _ in range(2):
                recorded += store.record_vote(participant, view.assignment_id, key, view.order % len(view.shown)).recorded
                attempts += 1
    return recorded, attempts


def _warm_up(barrier) -> None:
    import leaderboard.study.store  # noqa: F401 - the import is the warm-up

    barrier.wait()  # every worker process is started before the timed run


def _process_job(args: tuple[str, list[str]]) -> tuple[int, int]:
    from leaderboard.study.store import StudyStore

    url, tokens = args
    store = StudyStore(url)
    out = [vote_all(store, t) for t in tokens]
    store.close()
    return sum(r for r, _ in out), sum(a for _, a in out)


def throughput(
    tmp: Path, yaml_path: Path, label: str, writers: int, mode: str, synchronous: str = "FULL", url: str | None = None
) -> dict:
    from leaderboard.study.store import StudyStore
    from leaderboard.study.validation import load_study

    db = url or tmp / f"{label.replace(' ', '_').replace(',', '').replace('=', '').replace(':', '')}.sqlite"
    store = StudyStore(db, synchronous=synchronous)
    config = load_study(yaml_path)
    store.create_study(config)
    tokens = store.add_participants(config.name, writers)
    barrier = threading.Barrier(writers if mode == "threads" else 1)
    t0 = time.perf_counter()
    if mode == "threads":

        def job(token: str) -> tuple[int, int]:
            barrier.wait()
            return vote_all(store, token)

        with ThreadPoolExecutor(writers) as pool:
            results = list(pool.map(job, tokens))
    elif mode == "serial":
        results = [vote_all(store, t) for t in tokens]
    else:
        n_proc = int(mode)
        chunks = [(store.url, tokens[i::n_proc]) for i in range(n_proc)]
        with ProcessPoolExecutor(n_proc, mp_context=mp.get_context("spawn")) as pool:
            barrier_mp = mp.get_context("spawn").Manager().Barrier(n_proc)
            list(pool.map(_warm_up, [barrier_mp] * n_proc))  # start and import in every worker first
            t0 = time.perf_counter()  # so interpreter start-up is not timed
            results = list(pool.map(_process_job, chunks))
    elapsed = time.perf_counter() - t0
    recorded = sum(r for r, _ in results)
    frame = store.votes_frame(config.name)
    expected = writers * len(config.images) * len(config.criteria)
    chain_ok = store.verify(config.name).ok
    store.close()
    return {
        "label": label,
        "votes": len(frame),
        "seconds": elapsed,
        "votes_per_s": len(frame) / elapsed,
        "lost": expected - len(frame),
        "duplicates": int(frame.duplicated(["participant", "trial", "criterion"]).sum()),
        "recorded_reported": recorded,
        "chain_ok": chain_ok,
    }


def postgres_rows(server: str, tmp: Path, yaml_path: Path, writers: int, processes: int) -> list[dict]:
    """The PostgreSQL rows, each on a fresh database of ``server`` (dropped after)."""
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    rows = []
    try:
        for label, mode in ((f"PostgreSQL: {writers} threads", "threads"), (f"PostgreSQL: {processes} processes",
                                                                            str(processes))):  # fmt: skip
            name = f"bench_votes_{secrets.token_hex(4)}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(server).set(database=name).render_as_string(hide_password=False)
                rows.append(throughput(tmp, yaml_path, label, writers, mode, url=url))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    return rows


def serving(tmp: Path, repeats: int) -> list[dict]:
    from leaderboard.study.serving import ImageCache, trial_pngs
    from leaderboard.study.validation import load_study

    methods = [f"method{i}" for i in range(6)]
    config = load_study(make_study(tmp / "serve", 4, methods, 128, 4))
    shown = tuple(methods)
    from leaderboard.study.config import LR

    files = [config.file(c, "im000") for c in (LR, *methods)]

    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    base = timed(lambda: [f.read_bytes() for f in files])
    cold = timed(lambda: trial_pngs(config, "im000", shown, (0.5, 0.5), 2))
    cache = ImageCache()
    trial_pngs(config, "im000", shown, (0.5, 0.5), 2, cache=cache)
    warm = timed(lambda: trial_pngs(config, "im000", shown, (0.3, 0.6), 4, cache=cache))
    return [
        {"label": "read 7 PNG files (baseline)", "ms": 1e3 * base, "ratio": 1.0},
        {"label": "serve trial, cold (decode + crop + PNG)", "ms": 1e3 * cold, "ratio": cold / base},
        {"label": "serve trial, warm cache (crop + PNG)", "ms": 1e3 * warm, "ratio": warm / base},
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--trials", type=int, default=40, help="images in the throughput study")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=20, help="timing repeats for serving")
    ap.add_argument("--postgres", default=os.environ.get("SCREENSR_TEST_POSTGRES_URL"), metavar="URL",
                    help="a PostgreSQL server's SQLAlchemy URL (default $SCREENSR_TEST_POSTGRES_URL)")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-votes-") as tmp_name:
        tmp = Path(tmp_name)
        yaml_path = make_study(tmp / "tp", args.trials, ["a", "b", "c", "d"], 8, 2)
        rows = [
            throughput(tmp, yaml_path, "1 writer (baseline)", args.writers, "serial"),
            throughput(tmp, yaml_path, f"{args.writers} threads", args.writers, "threads"),
            throughput(tmp, yaml_path, f"{args.writers} threads, synchronous=NORMAL", args.writers, "threads", "NORMAL"),
            throughput(tmp, yaml_path, f"{args.processes} processes", args.writers, str(args.processes)),
        ]
        if args.postgres:
            rows += postgres_rows(args.postgres, tmp, yaml_path, args.writers, args.processes)
        base = rows[0]["votes_per_s"]
        print(f"\nVote throughput, SQLite WAL ({args.writers} participants x {args.trials} trials x 2 criteria, "
              f"each vote submitted twice)")  # fmt: skip
        print(f"{'configuration':42s} {'votes':>6s} {'s':>7s} {'votes/s':>8s} {'x base':>7s} {'lost':>5s} "
              f"{'dupes':>5s} {'chain':>6s}")  # fmt: skip
        for r in rows:
            print(f"{r['label']:42s} {r['votes']:6d} {r['seconds']:7.2f} {r['votes_per_s']:8.0f} "
                  f"{r['votes_per_s'] / base:7.2f} {r['lost']:5d} {r['duplicates']:5d} {str(r['chain_ok']):>6s}")  # fmt: skip
        sqlite_by_shape = {"threads": rows[1], "processes": rows[3]}
        for r in rows[4:]:
            shape = "threads" if "threads" in r["label"] else "processes"
            print(f"{r['label']} vs SQLite {sqlite_by_shape[shape]['label']}: "
                  f"{r['votes_per_s'] / sqlite_by_shape[shape]['votes_per_s']:.2f}x")
        if not args.postgres:
            print("PostgreSQL rows left out: pass --postgres URL (or set SCREENSR_TEST_POSTGRES_URL)")
        target = rows[1]
        ok = target["votes_per_s"] >= 200 and target["lost"] == 0 and target["duplicates"] == 0 and target["chain_ok"]
        print(f"goal (>= 200 votes/s with {args.writers} writers, zero lost): {'met' if ok else 'NOT met'}")
        print("\nServing one trial (LR + 6 candidates, 512x512 SR, crop 128 px, zoom 2-4), median of "
              f"{args.repeats}")  # fmt: skip
        print(f"{'step':42s} {'ms':>8s} {'x base':>7s}")
        for r in serving(tmp, args.repeats):
            print(f"{r['label']:42s} {r['ms']:8.2f} {r['ratio']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
