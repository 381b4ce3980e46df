"""The ``screensr`` command line: every command and verb answers ``--help``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from screensr.cli import GROUPS, VERBS, build_parser, main


def _walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*prefix, name))


ALL_COMMANDS = [path for path, _ in _walk(build_parser())]


def test_console_script_help():
    out = subprocess.run(["screensr", "--help"], capture_output=True, text=True, check=True).stdout
    for name in [*GROUPS, *VERBS]:
        assert name in out


def test_module_entry_point_matches_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "screensr.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "doctor" in out and "bench" in out


def test_every_group_is_wired():
    assert {p[0] for p in ALL_COMMANDS if p} >= set(GROUPS) | set(VERBS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "screensr")
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: screensr")


def test_group_without_verb_prints_its_help(capsys):
    assert main(["bench"]) == 2
    assert "usage: screensr bench" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback():
    # a missing folder given to `weights --from` is the user's to fix: message, exit 2, no traceback
    proc = subprocess.run(
        ["screensr", "weights", "--from", "/nonexistent/weights-dir"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "error: --from /nonexistent/weights-dir: not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
