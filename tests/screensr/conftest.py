"""Fixtures of the command-line tests: run ``screensr`` in a fresh interpreter of this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checkout_env(**overrides: str) -> dict[str, str]:
    """The test environment (hermetic caches of tests/conftest.py) with this checkout first on PYTHONPATH."""
    env = {**os.environ, **overrides}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("SCREENSR_DEBUG", None)
    return env


@pytest.fixture(scope="session")
def checkout_env() -> Callable[..., dict[str, str]]:
    """``checkout_env(**overrides)``: the environment a ``screensr`` subprocess of these tests gets."""
    return _checkout_env


@pytest.fixture(scope="session")
def run_screensr() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_screensr(*args, env=None, check=False)``: ``python -m screensr.cli ARGS`` in a new process.

    ``sys.executable -m`` rather than the console script on PATH, so the interpreter and the code
    under test are this test run's (PATH may hold another installation's ``screensr``).
    """

    def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run([sys.executable, "-m", "screensr.cli", *map(str, args)], capture_output=True,
                              text=True, env=env or _checkout_env(), check=check)  # fmt: skip

    return run
