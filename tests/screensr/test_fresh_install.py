"""A plain ``pip install`` into a new virtual environment keeps ``cv2.aruco`` (slow: ~3 min, ~8 GB)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_plain_install_in_a_new_venv_has_aruco_and_the_cli(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(ROOT)], check=True)
    probe = "import cv2; assert hasattr(cv2.aruco, 'ArucoDetector'); import pkg_resources; print('ok')"
    assert subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "ok"
    out = subprocess.run([str(venv / "bin" / "screensr"), "--help"], capture_output=True, text=True, check=True)
    assert "doctor" in out.stdout
