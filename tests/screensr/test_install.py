"""The install traps the package handles, and the README/CI agreement."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cv2_has_aruco_after_install():
    # pyiqa pulls opencv-python(-headless); all opencv wheels write cv2/. The pins in
    # pyproject.toml keep the three on one release so the ArUco API survives any install order.
    import cv2

    assert hasattr(cv2, "aruco") and hasattr(cv2.aruco, "ArucoDetector")
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    marker = cv2.aruco.generateImageMarker(dictionary, 7, 60)
    assert marker.shape == (60, 60)


def test_opencv_wheels_share_one_release():
    versions = {
        dist: importlib.metadata.version(dist)
        for dist in ("opencv-contrib-python", "opencv-python", "opencv-python-headless")
    }
    assert len(set(versions.values())) == 1, versions


def test_setuptools_keeps_pkg_resources_for_pyiqa():
    # pyiqa 0.1.16 imports pkg_resources for clipiqa/afine; setuptools 81 removed it
    import pkg_resources  # noqa: F401

    major = int(importlib.metadata.version("setuptools").split(".")[0])
    assert major < 81


def test_no_dev_tools_in_runtime_dependencies():
    requires = importlib.metadata.requires("screensr") or []
    runtime = [r for r in requires if "extra ==" not in r]
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in runtime}
    assert not names & {"pytest", "ruff", "playwright", "hypothesis", "pre-commit", "yapf"}


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^python -m pytest .*$", ci, re.M).group(0)
    assert "bash .ci/run" in readme
    assert command in readme, "README must show the exact pytest command .ci/run executes"
