"""Bad input to ``screensr board``: each is one ``error:`` line naming the value and the fix
(never a traceback), and an unsalted admin hash never keeps working silently."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.secrets import check_secret, hash_secret
from screensr.cli import main

REPO = Path(__file__).resolve().parents[3]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("SCREENSR_BOARD_ADMIN_HASH", "SCREENSR_BOARD_ADMIN_SHA256"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- the results store


@pytest.mark.parametrize("kind", ["text file", "folder"])
def test_a_store_that_is_not_a_database_is_one_error_line(tmp_path, kind, capsys, monkeypatch):
    """The real command line, as a user runs it (one process per kind), and the export verb in-process."""
    target = tmp_path / "results.db"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("these are my notes, not a database\n")
    res = subprocess.run(
        [sys.executable, "-m", "screensr.cli", "board", "--store", str(target), "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCREENSR_DEBUG": ""},
    )
    assert res.returncode == 2, res.stderr
    line = _one_error_line(res.stderr)
    assert "results.db" in line and "--store" in line, line
    monkeypatch.setenv("SCREENSR_DEBUG", "")
    code, _, err = _run(capsys, "board", "export", "--store", str(target), "--out", str(tmp_path / "site"))
    line = _one_error_line(err)
    assert code == 2 and "results.db" in line and "--store" in line, line
    if kind == "text file":
        assert target.read_text() == "these are my notes, not a database\n"  # untouched


# --------------------------------------------------------------------------- the admin secret


def test_an_unsalted_sha256_option_is_refused_with_the_fix(capsys, clean_env, tmp_path):
    digest = hashlib.sha256(b"correct horse").hexdigest()
    code, _, err = _run(
        capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run", "--admin-secret-sha256", digest
    )
    line = _one_error_line(err)
    assert code == 2 and "unsalted sha256" in line and "screensr board hash-secret" in line


def test_an_unsalted_sha256_in_the_environment_is_refused_too(capsys, clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SCREENSR_BOARD_ADMIN_SHA256", hashlib.sha256(b"correct horse").hexdigest())
    code, _, err = _run(capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run")
    assert code == 2 and "SCREENSR_BOARD_ADMIN_SHA256 holds an unsalted sha256" in _one_error_line(err)


def test_a_malformed_hash_is_refused(capsys, clean_env, tmp_path):
    code, _, err = _run(
        capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run", "--admin-secret-hash", "scrypt$00$11"
    )
    assert code == 2 and "is not an admin-secret hash" in _one_error_line(err)


def test_an_scrypt_hash_is_accepted_and_the_old_spelling_warns(capsys, clean_env, tmp_path):
    stored = hash_secret("correct horse battery")
    code, out, err = _run(
        capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run", "--admin-secret-hash", stored
    )
    assert code == 0 and "error" not in err
    code, out, err = _run(
        capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run", "--admin-secret-sha256", stored
    )
    assert code == 0 and "--admin-secret-sha256 is deprecated; use --admin-secret-hash" in err
    code, _, err = _run(
        capsys, "board", "--store", str(tmp_path / "r.db"), "--dry-run", "--admin-secret-hash", stored, "--admin-secret-sha256", stored
    )  # fmt: skip
    assert code == 2 and "give --admin-secret-hash only" in _one_error_line(err)


def test_hash_secret_reads_stdin_and_prints_a_salted_hash(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery\n"))
    code, out, _ = _run(capsys, "board", "hash-secret")
    stored = out.strip()
    assert code == 0 and stored.startswith("scrypt$") and check_secret("correct horse battery", stored)
    assert not check_secret("correct horse battery\n", stored)  # the line ending is not part of it
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery\n"))
    _, again, _ = _run(capsys, "board", "hash-secret")
    assert again.strip() != stored  # salted: the same secret hashes differently each time


@pytest.mark.parametrize("typed", ["", "short\n"])
def test_hash_secret_refuses_short_secrets(capsys, monkeypatch, typed):
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    code, out, err = _run(capsys, "board", "hash-secret")
    assert code == 2 and out == "" and "use at least 8" in _one_error_line(err)


def test_hash_secret_on_a_terminal_asks_twice(capsys, monkeypatch):
    answers = iter(["correct horse battery", "correct horse battery!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    code, out, err = _run(capsys, "board", "hash-secret")
    assert code == 2 and out == "" and "the two entries differ" in _one_error_line(err)


def test_hash_secret_output_reaches_the_app_and_unlocks_it(capsys, clean_env, monkeypatch, tmp_path):
    """The documented round trip: hash-secret's output, given to --admin-secret-hash, is what the
    server process gets (the legacy variable dropped) and what checks the secret there."""
    import leaderboard.cli as board_cli
    from leaderboard.board.submissions import ADMIN_ENV, LEGACY_ADMIN_ENV, admin_hash, check_admin

    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery\n"))
    _, out, _ = _run(capsys, "board", "hash-secret")
    started = {}

    class Exec(Exception):
        pass

    def fake_execve(path, argv, env):
        started.update(env)
        raise Exec

    monkeypatch.setattr(board_cli.os, "execve", fake_execve)
    monkeypatch.setenv(LEGACY_ADMIN_ENV, "0" * 64)  # a stale sha256 left in the environment
    with pytest.raises(Exec):
        main(["board", "--store", str(tmp_path / "r.db"), "--admin-secret-hash", out.strip()])
    assert started[ADMIN_ENV] == out.strip() and LEGACY_ADMIN_ENV not in started
    monkeypatch.delenv(LEGACY_ADMIN_ENV)
    monkeypatch.setenv(ADMIN_ENV, started[ADMIN_ENV])
    assert check_admin("correct horse battery", admin_hash()) and not check_admin(
        "correct horse", admin_hash()
    )


# --------------------------------------------------------------------------- Streamlit options


def test_visitors_get_the_viewer_toolbar_unless_asked(capsys, clean_env, tmp_path):
    store = str(tmp_path / "r.db")
    _, out, _ = _run(capsys, "board", "--store", store, "--dry-run")
    assert out.count("--client.toolbarMode") == 1 and "--client.toolbarMode viewer" in out
    _, out, _ = _run(capsys, "board", "--store", store, "--dry-run", "-S", "client.toolbarMode=developer")
    assert out.count("--client.toolbarMode") == 1 and "--client.toolbarMode developer" in out


def test_the_demo_output_folder_is_ignored_by_git():
    """``screensr demo`` writes ./screensr-demo by default: never committed by accident."""
    import shutil

    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "/screensr-demo/" in lines
    if shutil.which("git") and (REPO / ".git").exists():
        res = subprocess.run(["git", "check-ignore", "-q", "screensr-demo/results.db"], cwd=REPO)
        assert res.returncode == 0
