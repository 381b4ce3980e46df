"""The results store on PostgreSQL (any SQLAlchemy URL), each test in an empty database of its own.

The server: ``$SCREENSR_TEST_POSTGRES_URL`` when set (``.ci/run`` starts a throwaway cluster on a
Unix socket and exports it), else a private cluster started once for the session with the
PostgreSQL binaries on PATH (``initdb``/``pg_ctl``, run as the ``postgres`` user when the tests run
as root, as ``.ci/run`` does), else the tests skip and say why. Each test gets a database with a
random name, dropped afterwards, so tests never see each other's rows (the ``pg_server`` and
``pg_url`` fixtures of ``tests/conftest.py``).
"""

from __future__ import annotations

from benchmark.runner import evaluate
from benchmark.store import ResultsStore, ScoreRecord


def test_each_test_gets_an_empty_database_of_its_own(pg_url):
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    store = ResultsStore(pg_url)
    with store.engine.connect() as conn:
        here = conn.execute(text("select current_database()")).scalar()
    assert here == make_url(pg_url).database and str(here).startswith("screensr_test_")
    assert store.scores_frame().empty and store.datasets_frame().empty
    store.close()


def test_postgres_store_idempotent_and_runner(pg_url, tmp_path, monkeypatch, make_generic):
    store = ResultsStore(pg_url)
    recs = [ScoreRecord("d", i, "m", "psnr", 1.0, "s", "mh", "c", {"pyiqa": "0.1.16"}) for i in "ab"]
    assert store.add_scores(recs) == 2 and store.add_scores(recs) == 0
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=3)
    first = evaluate([str(ds)], ["bicubic"], "psnr,ssim", store=pg_url, progress=False)
    again = evaluate([str(ds)], ["bicubic"], "psnr,ssim", store=pg_url, progress=False)
    assert first.attrs["stats"]["computed"] == 6 and again.attrs["stats"]["computed"] == 0
    two = evaluate([str(ds)], ["lanczos"], "psnr", store=pg_url, workers=2, progress=False)
    assert len(two) == 3
    assert set(ResultsStore(pg_url).scores_frame()["method"]) == {"m", "bicubic", "lanczos"}


def test_postgres_concurrent_first_registration_and_run_records(pg_url):
    """Synchronised first registrations on PostgreSQL (INSERT ... ON CONFLICT), the dataset image
    list and the method runs behave as on SQLite."""
    import threading

    from benchmark.store import DatasetRecord, MetricRecord

    errors: list[BaseException] = []
    for k in range(6):
        barrier = threading.Barrier(6)

        def one(name: str = f"pg{k}", barrier: threading.Barrier = barrier) -> None:
            store = ResultsStore(pg_url)
            barrier.wait()
            try:
                store.upsert_dataset(DatasetRecord(name, "/d", "generic", 4, 3))
                store.upsert_metric(MetricRecord(f"metric-{name}", "NR", True, {}, "s", "0.1.16"))
                store.set_dataset_images(name, {"a": True, "b": True})
                store.start_runs(f"run-{name}", name, [("m", "h")], n_pairs=2, metrics=["niqe"])
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)
            finally:
                store.close()

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    store = ResultsStore(pg_url)
    assert {f"pg{k}" for k in range(6)} <= set(store.datasets_frame()["name"])
    assert len(store.dataset_images_frame([f"pg{k}" for k in range(6)])) == 12
    assert store.finish_runs("run-pg0", "pg0", ["m"], "failed", error="boom") == 1
    assert store.finish_runs("run-pg0", "pg0", ["m"], "aborted") == 0
    runs = store.runs_frame().set_index("dataset")
    assert runs.loc["pg0", "status"] == "failed" and runs.loc["pg1", "status"] == "running"
