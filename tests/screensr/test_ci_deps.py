"""``.ci/deps_ok.py``: `.ci/run` reuses an environment only when it has every test dependency.

The check runs in this interpreter (the test environment) against edited copies of the project's
own ``pyproject.toml``: the real file is accepted (this environment was accepted or built from
it), and each copy that asks for something this environment lacks is refused, naming it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPS_OK = ROOT / ".ci" / "deps_ok.py"
# deps_ok.py reads pyproject.toml with tomllib; on Python 3.10 it refuses every environment (so
# .ci/run builds its own)
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="deps_ok.py needs tomllib (Python 3.11+)")


def check(pyproject: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DEPS_OK), str(pyproject)], capture_output=True, text=True)


def edited(tmp_path: Path, extra: str, requirement: str, **more: list[str]) -> Path:
    """A copy of pyproject.toml with ``requirement`` added to ``extra`` (and extras ``more``)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert f"\n{extra} = [" in text, extra
    lines = []
    for line in text.splitlines():
        if extra == "dependencies" and line.startswith("dependencies = ["):
            line = line.replace("dependencies = [", f"dependencies = [{requirement!r}, ", 1)
        elif line.startswith(f"{extra} = ["):
            line = line.replace(f"{extra} = [", f"{extra} = [{requirement!r}, ", 1)
        lines.append(line)
        if line.strip() == "[project.optional-dependencies]":
            lines.extend(f"{name} = {value!r}" for name, value in more.items())
    path = tmp_path / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n")
    assert requirement in path.read_text()
    return path


def test_the_projects_own_dependencies_are_accepted():
    proc = check(ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "requirement", "message"),
    [
        ("dependencies", "screensr-no-such-package>=1", "missing screensr-no-such-package"),
        ("dev", "screensr-no-such-tool", "missing screensr-no-such-tool"),
        ("postgres", "screensr-no-such-driver", "missing screensr-no-such-driver"),
        ("dependencies", "numpy<1", "does not satisfy <1"),
    ],
)
def test_an_environment_lacking_a_dependency_is_refused(tmp_path, extra, requirement, message):
    proc = check(edited(tmp_path, extra, requirement))
    assert proc.returncode == 1 and message in proc.stdout, proc.stdout + proc.stderr


def test_extras_named_through_the_project_itself_are_expanded(tmp_path):
    # dev = ["screensr[all,postgres]", ...]: a requirement of an extra reached that way counts
    path = edited(tmp_path, "dev", "screensr[readmecheck]", readmecheck=["screensr-nested-missing"])
    proc = check(path)
    assert proc.returncode == 1 and "missing screensr-nested-missing" in proc.stdout, proc.stdout


def test_requirements_for_another_platform_are_ignored(tmp_path):
    proc = check(edited(tmp_path, "dev", "screensr-no-such-tool; sys_platform == 'no-such-os'"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
