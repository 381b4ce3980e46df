"""Issue 12.10: after SIGKILL of rank 0 of ``--workers 2`` the worker kept running and writing.

Workers must exit when their parent dies: ``prctl(PR_SET_PDEATHSIG)`` on Linux, a parent-pid
watchdog elsewhere. Both are exercised with a real SIGKILL of the parent process.
"""

from __future__ import annotations

import sys
import time


def test_worker_exits_when_rank0_is_killed(tmp_path, count_scores, kill, make_pairs, process_gone, slow_method_env, start_run, wait_for):
    ds = make_pairs(tmp_path / "toy", n=24)  # 12 pairs per rank at 0.4 s: ~5 s of work each
    db = tmp_path / "r.db"
    env = slow_method_env(tmp_path, delay=0.4)
    proc = start_run(f"""
        from benchmark.runner import evaluate
        evaluate([{str(ds)!r}], ["slow=py:slow_sr_mod:slow_nearest"], "psnr", store={f"sqlite:///{db}"!r},
                 workers=2, progress=False, gt=False)
    """, env)
    pids = tmp_path / "pids"
    # both ranks are scoring: a pid file from the parent and one from its worker
    wait_for(lambda: len(list(pids.iterdir())) >= 2 and count_scores(db) >= 1, what="both ranks scoring", proc=proc)
    workers = [int(p.name) for p in pids.iterdir() if int(p.name) != proc.pid]
    assert len(workers) == 1, (proc.pid, workers)
    kill(proc)
    wait_for(lambda: process_gone(workers[0]), timeout=3.0, what=f"worker {workers[0]} to exit after its parent died")
    settled = count_scores(db)
    time.sleep(1.5)
    assert count_scores(db) == settled < 24  # nobody writes any more, and the run did not finish


_WATCHDOG = """
import os, sys, time
from pathlib import Path

out = Path(sys.argv[1])
child = os.fork()
if child == 0:
    sys.platform = "darwin"  # take the portable path: the parent-pid watchdog thread
    from core.distributed import exit_with_parent

    exit_with_parent(os.getppid())
    (out / "child").write_text(str(os.getpid()))
    time.sleep(60)
    (out / "survived").write_text("the orphan outlived its parent")
    os._exit(0)
while not (out / "child").exists():
    time.sleep(0.02)
time.sleep(60)
"""


def test_watchdog_path_also_ends_an_orphan(tmp_path, kill, process_gone, slow_method_env, wait_for):
    """The non-Linux fallback (a thread polling the parent pid) ends the worker too."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(tmp_path)], env=slow_method_env(tmp_path),
                            stderr=subprocess.PIPE)  # fmt: skip
    wait_for(lambda: (tmp_path / "child").exists(), what="the forked child", proc=proc)
    child = int((tmp_path / "child").read_text())
    kill(proc)
    wait_for(lambda: process_gone(child), timeout=5.0, what="the orphan to exit (watchdog polls every second)")
    assert not (tmp_path / "survived").exists()
