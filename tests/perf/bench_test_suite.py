"""Wall time of the default test run in one process against the parallel run (pytest-xdist).

Run: ``python tests/perf/bench_test_suite.py [extra pytest arguments, e.g. tests/benchmark]``

Both runs use the README's test command (``.ci/run``'s line, read from that file, so the two
cannot drift) in the same session, one after the other: once with the ``-n/--maxprocesses/--dist``
options removed (one process) and once as written. Each prints its pytest summary line; then the
parallel / serial time ratio and the load average before each run (on a shared machine the times
scale with it). Set ``SCREENSR_TEST_POSTGRES_URL`` as ``.ci/run`` does, or the PostgreSQL tests
start a private cluster (per worker in the parallel run) or skip.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARALLEL_OPTIONS = {"-n": 1, "--maxprocesses": 1, "--dist": 1}  # option -> number of values


def readme_test_command() -> list[str]:
    """The pytest arguments of ``.ci/run``'s test line (after ``python -m pytest``)."""
    line = re.search(r"^python -m pytest (.*)$", (ROOT / ".ci" / "run").read_text(), re.M)
    if line is None:
        raise SystemExit(".ci/run has no 'python -m pytest ...' line")
    return shlex.split(line.group(1))


def without_parallel(args: list[str]) -> list[str]:
    """``args`` less the pytest-xdist options (and their values)."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        if arg in PARALLEL_OPTIONS:
            skip = PARALLEL_OPTIONS[arg]
            continue
        out.append(arg)
    return out


def timed(args: list[str]) -> tuple[float, str, float]:
    """Run pytest with ``args``; returns (wall seconds, its summary line, load average before)."""
    load = os.getloadavg()[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr[-500:]
    for line in lines:  # the failures by name (pytest's short summary), so a red run can be rerun
        if line.startswith(("FAILED ", "ERROR ")):
            print(f"  {line}")
    if proc.returncode not in (0, 1):  # 1: some test failed (reported, still timed)
        raise SystemExit(f"pytest exited {proc.returncode}: {summary}")
    return wall, summary, load


def main() -> None:
    extra = sys.argv[1:]
    parallel = readme_test_command() + extra
    serial = without_parallel(parallel)
    t_serial, s_serial, l_serial = timed(serial)
    print(f"one process  : {t_serial:7.1f} s  (load before {l_serial:.1f})  {s_serial}")
    t_par, s_par, l_par = timed(parallel)
    print(f"parallel     : {t_par:7.1f} s  (load before {l_par:.1f})  {s_par}")
    print(f"ratio parallel / one process: {t_par / t_serial:.2f}x  ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
