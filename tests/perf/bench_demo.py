"""Wall time and peak memory of ``screensr demo`` from a cold cache, and of its rerun.

Run: ``python tests/perf/bench_demo.py [demo options, e.g. --images 2]``

The demo runs as a user runs it (``python -m screensr.cli demo``, the console script's module) in a
fresh temporary folder that holds its ``SCREENSR_HOME``, ``TORCH_HOME``, ``HF_HOME`` and output
folder: no method-output cache, no weights and no dataset from an earlier run can hide a cost
(a shared Real-ESRGAN output cache once made the first run look 20 s faster than it is). Then it
runs again on the same folder (the rerun a user sees: the store and caches reused).

For each run: wall time, the peak resident set size of the demo process (``ru_maxrss`` from
``os.wait4`` of that child: the largest process of its tree, in MiB), and the machine's load
average (``os.getloadavg``) before it starts, because on a shared machine the times scale with
it. Then the rerun / first-run time ratio and the demo's printed table (the README shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(root: Path, extra: list[str]) -> tuple[float, float, str]:
    """Run the demo once in ``root``; returns (wall seconds, peak RSS MiB, stdout)."""
    env = {
        **os.environ,
        "SCREENSR_HOME": str(root / "screensr"),
        "TORCH_HOME": str(root / "torch"),
        "HF_HOME": str(root / "hf"),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "HF_HUB_OFFLINE": "1",
        # the checkout being measured, not whatever copy is installed
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    cmd = [sys.executable, "-m", "screensr.cli", "demo", "--out", str(root / "out"), "--no-progress", *extra]
    log = root / "demo.log"
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"demo failed (exit {proc.returncode}):\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text  # ru_maxrss is in KiB on Linux


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), {os.cpu_count() or 0} CPUs"


def main() -> None:
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="screensr-bench-demo-") as tmp:
        root = Path(tmp)
        print(f"first run (cold cache) at {load()}")
        first, first_rss, text = run_demo(root, extra)
        print(f"  wall time {first:.1f} s, peak memory {first_rss / 1024:.2f} GiB ({first_rss:.0f} MiB)")
        print(f"rerun (same store and caches) at {load()}")
        rerun, rerun_rss, _ = run_demo(root, extra)
        print(f"  wall time {rerun:.1f} s, peak memory {rerun_rss / 1024:.2f} GiB ({rerun_rss:.0f} MiB)")
        print(f"rerun / first run: {rerun / first:.2f}x")
        print(f"after both at {load()}")
        print("\nthe demo's output (first run):")
        print(text)


if __name__ == "__main__":
    main()
