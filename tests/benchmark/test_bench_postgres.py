"""The results store on PostgreSQL (any SQLAlchemy URL): a throw-away server in a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchmark.runner import evaluate
from benchmark.store import ResultsStore, ScoreRecord

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url():
    """Start PostgreSQL (initdb + pg_ctl) on a Unix socket; yields its SQLAlchemy URL."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed here")
    pytest.importorskip("psycopg", reason="pip install 'screensr[postgres]'")
    # a short path directly under /tmp: the socket path is length-limited, and when the server
    # has to run as `nobody` (it refuses root) pytest's private tmp folders are not reachable
    root = Path(tempfile.mkdtemp(prefix="screensr-pg-"))
    sock = str(root)  # the Unix socket folder
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    if prefix:
        os.chmod(root, 0o777)
    data = root / "data"
    subprocess.run([*prefix, "initdb", "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    port = "55439"
    subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {sock} -h ''", "start"], check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


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
