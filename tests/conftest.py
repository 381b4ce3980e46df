"""Test-wide setup: offline, hermetic caches, no GPU.

The environment is set in ``pytest_configure`` (before any test module imports pyiqa, torch.hub or
huggingface_hub, which read these variables) so no test touches the user's caches or the network.
Tests that need weights write them (random, at the exact cache paths the loaders expect) into the
temporary cache; the official NIQE parameters ship with the package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


@pytest.fixture(scope="session")
def test_cache_root() -> Path:
    """The temporary cache root that TORCH_HOME, HF_HOME and SCREENSR_HOME live under."""
    return Path(os.environ["SCREENSR_HOME"]).parent


def pytest_unconfigure(config: pytest.Config) -> None:
    # the caches hold random stand-in weights written by tests: never leave them behind
    if _ROOT is not None:
        shutil.rmtree(_ROOT, ignore_errors=True)
