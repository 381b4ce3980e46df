"""A closed stdout and a missing network, through the real console script.

- ``screensr weights | head -1`` and the other listing commands stop quietly when their reader
  goes away: no traceback, no "Exception ignored", exit status 0 or 141 (128 + SIGPIPE).
- ``--dataset hf:REPO`` without a network fails at once with how to get the data, both in
  offline mode (``HF_HUB_OFFLINE=1``) and when the hub cannot be reached (a closed local port
  stands in for a machine without network; ``datasets`` alone retries for ~30-40 s there).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest


def _with_closed_stdout(cli_env, repo_root, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the command with a stdout pipe whose reader is closed before anything is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "screensr.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or cli_env(), cwd=repo_root,
    )  # fmt: skip
    proc.stdout.close()  # the reader goes away (as `head` does after its line)
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    "args",
    [("weights",), ("bench", "metrics"), ("bench", "datasets"), ("doctor",)],
    ids=" ".join,
)
def test_listing_into_a_closed_pipe_exits_quietly(args, cli_env, repo_root):
    rc, err = _with_closed_stdout(cli_env, repo_root, *args)
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored in ... stdout"
    assert rc in (0, 141)


def test_report_into_a_closed_pipe_exits_quietly(tmp_path, pairs, cli_env, repo_root):
    from benchmark.runner import evaluate

    store = f"sqlite:///{tmp_path / 'r.db'}"
    evaluate([str(pairs(tmp_path / "d", n=2))], ["bicubic"], "psnr", store=store, progress=False)
    rc, err = _with_closed_stdout(cli_env, repo_root, "bench", "report", "--store", store)
    assert err == "" and rc in (0, 141)


def test_head_in_a_shell_pipeline(cli_env, repo_root):
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m screensr.cli weights | head -1"],
        capture_output=True, text=True, env=cli_env(), cwd=repo_root, timeout=180,
    )  # fmt: skip
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("[")


def _hf_message(home, reason: str) -> str:
    copy = home / "datasets" / "ScreenSR"
    return (
        f"error: hf:CSWRY/ScreenSR: {reason}, and there is no local copy at {copy}. Where there is network, run "
        "`hf download --repo-type dataset CSWRY/ScreenSR --local-dir DIR`, copy DIR to this machine and pass "
        f"--dataset hf:DIR (or a folder with HR/ and LR/ as --dataset DIR); or run once online to make the "
        f"copy at {copy}"
    )


def test_hf_dataset_in_offline_mode_fails_at_once(tmp_path, assert_user_error, cli_env, screensr):
    home = tmp_path / "home"
    start = time.perf_counter()
    res = screensr("bench", "run", "--dataset", "hf:CSWRY/ScreenSR", "--methods", "bicubic",
                   env=cli_env(SCREENSR_HOME=str(home), HF_HUB_OFFLINE="1"))  # fmt: skip
    elapsed = time.perf_counter() - start
    assert_user_error(res, _hf_message(home, "offline mode is on (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)"))
    assert elapsed < 10, f"took {elapsed:.1f} s"


def test_hf_dataset_with_the_hub_unreachable_fails_at_once(tmp_path, assert_user_error, cli_env, screensr):
    home = tmp_path / "home"
    # offline mode off, and a hub endpoint on a closed local port (9, "discard"): every connection
    # is refused at once, as on a machine without network
    env = cli_env(SCREENSR_HOME=str(home), HF_HUB_OFFLINE=None, HF_DATASETS_OFFLINE=None,
                  TRANSFORMERS_OFFLINE=None, HF_ENDPOINT="http://127.0.0.1:9")  # fmt: skip
    start = time.perf_counter()
    res = screensr("bench", "run", "--dataset", "hf:CSWRY/ScreenSR", "--methods", "bicubic", env=env)
    elapsed = time.perf_counter() - start
    assert res.first.startswith("error: hf:CSWRY/ScreenSR: cannot reach the Hugging Face hub at http://127.0.0.1:9 (")
    reason = res.first.removeprefix("error: hf:CSWRY/ScreenSR: ").split(", and there is no local copy")[0]
    assert_user_error(res, _hf_message(home, reason))
    assert elapsed < 10, f"took {elapsed:.1f} s (the datasets library alone retries for ~30 s)"


def test_hf_dataset_offline_uses_the_local_copy(tmp_path, cli_env, pairs, screensr):
    home = tmp_path / "home"
    copy = pairs(home / "datasets" / "ScreenSR", n=1)
    (copy / ".complete").write_text("fingerprint")
    res = screensr("bench", "datasets", "--dataset", "hf:CSWRY/ScreenSR", env=cli_env(SCREENSR_HOME=str(home)))
    assert res.returncode == 0
    assert f"  hf:CSWRY/ScreenSR: 1 pairs, x4, generic layout ({copy})" in res.stdout
    assert "ScreenSR  [screensr layout, x4]" in res.stdout
