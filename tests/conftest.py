"""Test-wide setup: offline, hermetic caches, no GPU.

The environment is set in ``pytest_configure`` (before any test module imports pyiqa, torch.hub or
huggingface_hub, which read these variables) so no test touches the user's caches or the network.
Tests that need weights write them (random, at the exact cache paths the loaders expect) into the
temporary cache; the official NIQE parameters ship with the package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _ROOT
    root = _ROOT = Path(tempfile.mkdtemp(prefix="screensr-tests-"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(root / "torch")
    os.environ["HF_HOME"] = str(root / "hf")
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
    os.environ["SCREENSR_HOME"] = str(root / "screensr")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("MPLBACKEND", "Agg")
    _share_cores_between_workers()


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (``-n N``), give each worker process its share of the cores.

    Every worker is a whole process whose torch, NumPy and OpenMP would each start one thread per
    core: N workers on N cores then run N-fold oversubscribed. The variables are read when those
    libraries load (after this hook) and are inherited by the CLI subprocesses the tests start; a
    count the user set is kept.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        share = str(max(1, cores // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, share)


@pytest.fixture(scope="session")
def test_cache_root() -> Path:
    """The temporary cache root that TORCH_HOME, HF_HOME and SCREENSR_HOME live under."""
    return Path(os.environ["SCREENSR_HOME"]).parent


@pytest.fixture
def private_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty ``SCREENSR_HOME``, ``TORCH_HOME`` and ``HF_HOME`` of this test's own, under the
    returned folder (``<root>/screensr_home``, ``<root>/torch_home``, ``<root>/hf_home``).

    For a test that needs caches without what other modules wrote (the session's tiny VAE and
    DINOv2 stand-ins, random LPIPS weights) or that writes and deletes cache files itself: under
    pytest-xdist any module may run before it in its worker. Paths are resolved at call time
    (``core.paths``), so code called after this fixture sees the empty caches.
    """
    root = tmp_path / "cache"
    for var in ("SCREENSR_HOME", "TORCH_HOME", "HF_HOME"):
        monkeypatch.setenv(var, str(root / var.lower()))
    return root


def pytest_unconfigure(config: pytest.Config) -> None:
    # the caches hold random stand-in weights written by tests: never leave them behind
    if _ROOT is not None:
        shutil.rmtree(_ROOT, ignore_errors=True)


# --- PostgreSQL: one server per test run, one empty database per test -------------------------
# The server: $SCREENSR_TEST_POSTGRES_URL when set (.ci/run starts a throwaway cluster on a Unix
# socket and exports it), else a private cluster started once per session with the initdb/pg_ctl
# on PATH (as the 'postgres' user when the tests run as root), else the tests skip, saying why.


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The SQLAlchemy URL of a PostgreSQL server's maintenance database ``postgres``."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'screensr[postgres]'")
    if os.environ.get("SCREENSR_TEST_POSTGRES_URL"):
        yield os.environ["SCREENSR_TEST_POSTGRES_URL"]
        return
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("no PostgreSQL: SCREENSR_TEST_POSTGRES_URL is not set and initdb/pg_ctl are not on PATH")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        pytest.skip("running as root without a 'postgres' user to run the server as (see .ci/run)")
    # a short path directly under /tmp: the socket path is length-limited
    root = Path(tempfile.mkdtemp(prefix="screensr-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(_as_postgres(["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    subprocess.run(_as_postgres(["pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                                 f"-p {port} -k {root} -c listen_addresses='' -c fsync=off", "start"]),
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(_as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """An empty database with a random name on the server (dropped after the test)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"screensr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # FORCE (PostgreSQL 13+) ends the test's pooled connections and workers still open
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
