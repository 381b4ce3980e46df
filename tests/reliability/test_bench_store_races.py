"""Concurrent writers on the results store: synchronised start-ups and parallel runs.

Issue 12.6: concurrent first registration of the same dataset/method raised IntegrityError (39 of
90 synchronised start-ups). Guarantee: any number of processes may open a fresh store and
register the same names at the same moment; every write succeeds, each score is stored once.
(PostgreSQL: ``tests/benchmark/test_bench_postgres.py``, marked slow.)
"""

from __future__ import annotations

import multiprocessing as mp
import traceback

import pytest

from benchmark.store import DatasetRecord, MethodRecord, MetricRecord, ResultsStore


def _start_up(url: str, barrier, errors, rounds: int) -> None:
    try:
        store = ResultsStore(url)  # a fresh file: the schema is created by whoever is first
        for k in range(rounds):
            barrier.wait(60)
            store.upsert_dataset(DatasetRecord(f"ds{k}", "/d", "generic", 4, 3))
            store.set_dataset_images(f"ds{k}", {"a": True, "b": True, "c": True})
            store.upsert_metric(MetricRecord(f"metric{k}", "NR", True, {}, "s", "0.1.16"))
            store.upsert_method(MethodRecord(f"method{k}", "other"))
            store.start_runs(f"run{k}", f"ds{k}", [(f"method{k}", "h")], n_pairs=3, metrics=["psnr"])
    except BaseException:  # noqa: BLE001 - reported to the parent, which asserts there were none
        errors.put(traceback.format_exc())
        raise


@pytest.mark.parametrize("n_procs", [6])
def test_synchronised_start_ups_on_a_fresh_store(tmp_path, n_procs):
    ctx = mp.get_context("fork")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    barrier, errors = ctx.Barrier(n_procs), ctx.Queue()
    procs = [ctx.Process(target=_start_up, args=(url, barrier, errors, 8)) for _ in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [p.exitcode for p in procs] == [0] * n_procs
    store = ResultsStore(url)
    assert len(store.datasets_frame()) == len(store.metrics_frame()) == len(store.methods_frame()) == 8
    assert len(store.dataset_images_frame()) == 8 * 3 and len(store.runs_frame(latest=False)) == 8


def _bench(url: str, ds: str, home: str, barrier, errors) -> None:
    import os

    os.environ["SCREENSR_HOME"] = home
    try:
        import torch

        from benchmark.runner import evaluate

        torch.set_num_threads(1)
        barrier.wait(120)
        evaluate([ds], ["bicubic"], "psnr", store=url, progress=False, gt=False)
    except BaseException:  # noqa: BLE001 - reported to the parent
        errors.put(traceback.format_exc())
        raise


def test_parallel_bench_runs_on_one_fresh_store(tmp_path, make_pairs):
    """Four `bench run`s of the same dataset and method start at once on a new store: all succeed
    and every score is stored exactly once."""
    import pyiqa  # noqa: F401 - imported before forking (seconds of CPU per process otherwise)

    import benchmark.runner  # noqa: F401

    ds = make_pairs(tmp_path / "toy", n=3)
    ctx = mp.get_context("fork")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    barrier, errors = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_bench, args=(url, str(ds), str(tmp_path / "home"), barrier, errors)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [p.exitcode for p in procs] == [0] * 4
    store = ResultsStore(url)
    scores = store.scores_frame(latest=False)
    assert len(scores) == 3 and scores["image"].is_unique
    runs = store.runs_frame(latest=False)
    assert len(runs) == 4 and set(runs["status"]) == {"complete"}
