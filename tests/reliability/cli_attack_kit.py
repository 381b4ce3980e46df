"""Helpers of the command-line reliability tests: run the real console script, build bad inputs.

Every test runs ``python -m screensr.cli ...`` in a fresh process (the checkout first on
``PYTHONPATH``, the hermetic caches of ``tests/conftest.py`` inherited) and checks the exact first
line of its stderr: one ``error: ...`` line naming the file or value and the fix, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DREALSR = ROOT / "tests" / "data" / "drealsr_osediff"


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
    """A smooth uint8 RGB image (so every metric has something to measure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    img = 0.5 + 0.35 * base + 0.05 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(path)
    return path


def pairs(root: Path, n: int = 2, lr_size: int = 16, scale: int = 4) -> Path:
    """``root/hr`` + ``root/lr`` with ``n`` pairs ``img_k`` (HR = ``scale`` x LR)."""
    for k in range(n):
        hr = rgb(lr_size * scale, lr_size * scale, seed=k)
        save(root / "hr" / f"img_{k}.png", hr)
        save(root / "lr" / f"img_{k}.png", hr[::scale, ::scale].copy())
    return root
