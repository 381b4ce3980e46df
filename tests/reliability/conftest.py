"""Fixtures of the reliability tests of ``screensr bench`` and the command line: hostile inputs
built on the spot, and the real CLI run in a fresh interpreter.

Each helper is a fixture with its own name (a test asks for ``make_pairs`` or ``screensr`` and
calls it); the functions themselves are plain, so a forked worker can run them too. Everything is
small and fast to build unless a function says otherwise (the simulated capture inputs take a
few seconds, so their fixtures are module-scoped); the big pixel bomb (a real 20000 x 20000
PNG, about 1.2 MB) is for the ``slow`` tests.

The CLI runs as ``python -m screensr.cli ...`` in a fresh process (the checkout first on
``PYTHONPATH``, the hermetic caches of ``tests/conftest.py`` inherited); its checks read the exact
first line of stderr: one ``error: ...`` line naming the file or value and the fix, no traceback.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- bench: hostile inputs, runs
def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish uint8 RGB image (smooth + texture), so metrics have something to measure."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    img = 0.5 + 0.35 * base + 0.08 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_pairs(root: Path, n: int = 4, lr_size: int = 16, scale: int = 4, seed: int = 0) -> Path:
    """``root/hr`` + ``root/lr`` (stems ``img_k``): HR smooth-random, LR its box downsample."""
    rng = np.random.default_rng(seed)
    for sub in ("hr", "lr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        hr = smooth_image(rng, lr_size * scale, lr_size * scale)
        lr = hr.reshape(lr_size, scale, lr_size, scale, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        Image.fromarray(hr).save(root / "hr" / f"img_{k}.png")
        Image.fromarray(lr).save(root / "lr" / f"img_{k}.png")
    return root


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_file(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes that declare a ``width x height`` RGB PNG: the header of a pixel bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))  # fmt: skip
    return path


def real_pixel_bomb(path: Path, side: int = 20000) -> Path:
    """A complete, valid ``side x side`` black RGB PNG (about 1.2 MB at 20000 px), written by
    streaming the compressor one row at a time, so building it costs little memory (slow-ish)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)  # filter byte + RGB
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
                     + png_chunk(b"IEND", b""))  # fmt: skip
    return path


SLOW_METHOD = """
import os
import time
from pathlib import Path

import numpy as np

def slow_nearest(img, scale):
    # the process id of whoever scores, so a test can find the worker processes
    mark = Path(os.environ["SCREENSR_TEST_PIDS"]) / str(os.getpid())
    mark.touch()
    time.sleep(float(os.environ.get("SCREENSR_TEST_DELAY", "0.3")))
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
"""


def slow_method_env(tmp: Path, delay: float = 0.3) -> dict[str, str]:
    """Environment for a subprocess that can use ``slow=py:slow_sr_mod:slow_nearest``."""
    mods = tmp / "mods"
    mods.mkdir(exist_ok=True)
    (mods / "slow_sr_mod.py").write_text(SLOW_METHOD)
    pids = tmp / "pids"
    pids.mkdir(exist_ok=True)
    path = os.pathsep.join([str(mods), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "SCREENSR_TEST_PIDS": str(pids), "SCREENSR_TEST_DELAY": str(delay),
            "SCREENSR_HOME": str(tmp / "home"), "OMP_NUM_THREADS": "1"}  # fmt: skip


def start_run(script: str, env: dict[str, str]) -> subprocess.Popen:
    """Run ``script`` (Python source) in a new interpreter."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 120.0, what: str = "condition", proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode()[-3000:] if proc.stderr else ''}")  # fmt: skip
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def count_scores(db: Path) -> int:
    """Rows in the scores table (0 before the schema exists), read with the plain sqlite3 module."""
    import sqlite3

    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute("select count(*) from scores").fetchone()[0])
    except sqlite3.OperationalError:  # no such table yet: the run has not created its schema
        return 0
    finally:
        con.close()


# ---------------------------------------------------------------------------- the command line
@dataclass
class Result:
    """One finished command: exit status, both streams, and stderr's first line."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def first(self) -> str:
        return self.stderr.splitlines()[0] if self.stderr else ""


def cli_env(**overrides: str | None) -> dict[str, str]:
    """The test environment with this checkout first on PYTHONPATH; ``None`` removes a variable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("SCREENSR_DEBUG", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def screensr(*args: str | os.PathLike[str], env: dict[str, str] | None = None, timeout: float = 180,
             cwd: Path | None = None) -> Result:  # fmt: skip
    """Run the console script's module entry point and return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "screensr.cli", *map(str, args)],
        capture_output=True, text=True, env=env or cli_env(), timeout=timeout, cwd=cwd or ROOT,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(res: Result, first_line: str) -> None:
    """Exit status 2, exactly ``first_line`` first on stderr, no traceback, nothing quoted whole."""
    assert res.first == first_line, res.stderr
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert not res.first.startswith(('error: "', "error: '"))


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """:func:`smooth_image` of seed ``seed`` (for a test that needs one image of a given size)."""
    return smooth_image(np.random.default_rng(seed), h, w)


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(path)
    return path


def pairs(root: Path, n: int = 2, lr_size: int = 16, scale: int = 4) -> Path:
    """:func:`make_pairs` with two pairs by default (the command-line checks need no more)."""
    return make_pairs(root, n=n, lr_size=lr_size, scale=scale)


# ---------------------------------------------------------------------------- capture: simulated inputs
def simulated_capture(root: Path, names: Sequence[str]) -> dict[str, Path]:
    """``skimage.data`` images ``names`` as 160x120 sources, their 480x360 ArUco canvases and
    simulated 640x480 phone photos (preset ``mild``, seed 0), in ``root/{sources,canvases,photos}``.

    Returns:
        ``{"sources": ..., "canvases": ..., "photos": ...}`` (one photo per source, ``NAME.jpg``).
    """
    import cv2
    from skimage import data

    from data_capture.canvas import CanvasConfig, make_canvases
    from data_capture.simulate import simulate_folder

    (root / "sources").mkdir(parents=True)
    for name in names:
        small = cv2.resize(getattr(data, name)()[..., :3], (160, 120), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "sources" / f"{name}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    make_canvases(root / "sources", root / "canvases", CanvasConfig(width=480, height=360), progress=False)
    simulate_folder(root / "canvases", root / "photos", preset="mild", seed=0,
                    overrides={"photo_width": 640, "photo_height": 480}, progress=False)  # fmt: skip
    return {"sources": root / "sources", "canvases": root / "canvases", "photos": root / "photos"}


# ---------------------------------------------------------------------------- the helpers as fixtures
@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout under test."""
    return ROOT


@pytest.fixture(scope="session")
def drealsr_dir() -> Path:
    """The shipped DRealSR x OSEDiff pairs."""
    return ROOT / "tests" / "data" / "drealsr_osediff"


@pytest.fixture(scope="session", name="make_pairs")
def _make_pairs_fixture() -> Callable[..., Any]:
    return make_pairs


@pytest.fixture(scope="session", name="png_header_file")
def _png_header_file_fixture() -> Callable[..., Any]:
    return png_header_file


@pytest.fixture(scope="session", name="real_pixel_bomb")
def _real_pixel_bomb_fixture() -> Callable[..., Any]:
    return real_pixel_bomb


@pytest.fixture(scope="session", name="slow_method_env")
def _slow_method_env_fixture() -> Callable[..., Any]:
    return slow_method_env


@pytest.fixture(scope="session", name="start_run")
def _start_run_fixture() -> Callable[..., Any]:
    return start_run


@pytest.fixture(scope="session", name="wait_for")
def _wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session", name="kill")
def _kill_fixture() -> Callable[..., Any]:
    return kill


@pytest.fixture(scope="session", name="process_gone")
def _process_gone_fixture() -> Callable[..., Any]:
    return process_gone


@pytest.fixture(scope="session", name="count_scores")
def _count_scores_fixture() -> Callable[..., Any]:
    return count_scores


@pytest.fixture(scope="session", name="cli_env")
def _cli_env_fixture() -> Callable[..., Any]:
    return cli_env


@pytest.fixture(scope="session", name="screensr")
def _screensr_fixture() -> Callable[..., Any]:
    return screensr


@pytest.fixture(scope="session", name="assert_user_error")
def _assert_user_error_fixture() -> Callable[..., Any]:
    return assert_user_error


@pytest.fixture(scope="session", name="rgb")
def _rgb_fixture() -> Callable[..., Any]:
    return rgb


@pytest.fixture(scope="session", name="save_png")
def _save_png_fixture() -> Callable[..., Any]:
    return save_png


@pytest.fixture(scope="session", name="pairs")
def _pairs_fixture() -> Callable[..., Any]:
    return pairs


@pytest.fixture(scope="session", name="simulated_capture")
def _simulated_capture_fixture() -> Callable[..., Any]:
    return simulated_capture
