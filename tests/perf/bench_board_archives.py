"""Bounded work for untrusted submissions: what rejecting a hostile upload costs, before and after.

Run: ``python tests/perf/bench_board_archives.py [--members 400000] [--bomb-gib 5] [--quick]``

Each case runs in a fresh Python process (``--case NAME PATH``) so its peak memory is its own:
``VmHWM`` (peak resident memory of that process image, interpreter and imports included) and the
``tracemalloc`` peak of the rejection itself (Python allocations: TarInfo / ZipInfo lists), with
the wall time of the rejection. Cases, each against the baseline in the same run:

* tar.gz member flood (``--members`` empty members): baseline = what the submission code did
  before (``tarfile.open`` + ``getmembers()``, then count); now = ``leaderboard.board.archives``
  (stream mode, rejected at member 20 001).
* zip member flood (the same count): baseline = ``zipfile.ZipFile(...).infolist()`` then count;
  now = the central directory scan.
* tar.gz bomb (one member of ``--bomb-gib`` GiB of zeros, declared honestly): baseline =
  ``getmembers()`` (decompresses everything to find the end), then sums the sizes; now =
  refused at the first header.
* zip bomb (five members declaring 1 GiB each, data not even present): both refuse from the
  declared sizes; the baseline builds the member list first.
* pixel bomb (a valid 13000 x 13000 PNG, ~0.5 MB: 169 MP, over the 100 MP limit but under
  Pillow's own 179 MP guard): baseline = the full decode the validation did
  (``benchmark.images.read_image``); now = ``core.imagelimits`` on the header.

Prints one table: case, archive size, baseline and new time, peak memory, and the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_MEMBERS, MAX_BYTES = 20_000, 4 << 30  # the defaults of leaderboard.board.archives.ArchiveLimits


def _kit():
    """tests/reliability/board/conftest.py (the hostile-input builders), loaded by path."""
    spec = importlib.util.spec_from_file_location("board_attack_kit", REPO / "tests" / "reliability" / "board" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# --------------------------------------------------------------------------- baselines (the old code)


def old_tar(path: Path) -> str:
    import tarfile

    with tarfile.open(path) as tf:
        members = tf.getmembers()
        if len(members) > MAX_MEMBERS:
            return f"{len(members)} members"
        total = sum(m.size for m in members)
        if total > MAX_BYTES:
            return f"unpacks to {total} bytes"
    return "accepted"


def old_zip(path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            return f"{len(infos)} members"
        total = sum(i.file_size for i in infos)
        if total > MAX_BYTES:
            return f"unpacks to {total} bytes"
    return "accepted"


def old_pixels(path: Path) -> str:
    from benchmark.images import read_image

    read_image(path)
    return "decoded"


# --------------------------------------------------------------------------- the new code


def new_archive(path: Path) -> str:
    from leaderboard.board.archives import UnsafeArchiveError, unpack_archive

    with tempfile.TemporaryDirectory() as into:
        try:
            unpack_archive(path, Path(into))
        except UnsafeArchiveError as exc:
            return str(exc).split(":", 1)[1].strip()[:60]
    return "accepted"


def new_pixels(path: Path) -> str:
    from core.imagelimits import ImageTooLargeError, check_image_pixels

    try:
        check_image_pixels(path)
    except ImageTooLargeError:
        return "over the pixel limit"
    return "accepted"


CASES = {"old_tar": old_tar, "old_zip": old_zip, "old_pixels": old_pixels, "new_archive": new_archive,
         "new_pixels": new_pixels}  # fmt: skip


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith("VmHWM")))


def run_case(name: str, path: Path, traced: bool) -> dict:
    """One measurement in this (fresh) process."""
    fn = CASES[name]
    # the imports each side needs, before measuring
    import zipfile  # noqa: F401

    import benchmark.images  # noqa: F401
    import core.imagelimits  # noqa: F401
    import leaderboard.board.archives  # noqa: F401

    base = _vm_hwm_kib()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    outcome = fn(path)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    return {"outcome": outcome, "s": elapsed, "traced_mib": peak / 2**20, "hwm_mib": _vm_hwm_kib() / 1024,
            "base_mib": base / 1024}  # fmt: skip


def measure(name: str, path: Path) -> dict:
    """Time (untraced run) and memory (traced run), each in its own process."""
    results = {}
    for traced in (False, True):
        res = subprocess.run(
            [sys.executable, __file__, "--case", name, str(path)] + (["--traced"] if traced else []),
            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"{name} on {path.name} failed:\n{res.stderr[-2000:]}")
        results[traced] = json.loads(res.stdout.strip().splitlines()[-1])
    return {**results[False], "traced_mib": results[True]["traced_mib"]}


def build(args, base: Path) -> dict[str, Path]:
    import gzip
    import tarfile

    kit = _kit()
    files = {}
    t = time.perf_counter()
    files["tar.gz member flood"] = kit.tar_flood_gz(args.members, base / "flood.tar.gz")
    (base / "flood.zip").write_bytes(kit.zip_flood(args.members))
    files["zip member flood"] = base / "flood.zip"
    bomb = base / "bomb.tar.gz"
    size = args.bomb_gib << 30
    with gzip.open(bomb, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as tf:
        info = tarfile.TarInfo("img0.png")
        info.size = size

        class Zeros:
            left = size

            def read(self, n):
                n = min(n, self.left, 1 << 20)
                self.left -= n
                return b"\0" * n

        tf.addfile(info, Zeros())
    files[f"tar.gz bomb ({args.bomb_gib} GiB member)"] = bomb
    zbomb = base / "bomb.zip"
    zbomb.write_bytes(kit.patch_zip_sizes(kit.zip_bytes({f"img{i}.png": b"\0" * 1000 for i in range(5)}), 1 << 30))
    files["zip bomb (5 x 1 GiB declared)"] = zbomb
    # 13000 x 13000 = 169 MP: over the 100 MP limit, under Pillow's own hard guard (179 MP), so
    # the old validation decoded it in full
    files["pixel bomb (13000x13000 PNG)"] = kit.png_bomb(base / "bomb.png", 13_000, 13_000)
    print(f"built the inputs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=400_000, help="members of the floods (default 400000)")
    parser.add_argument("--bomb-gib", type=int, default=5, help="GiB of zeros in the tar.gz bomb (default 5)")
    parser.add_argument("--quick", action="store_true", help="smaller floods (100000 members)")
    parser.add_argument("--case", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], Path(args.case[1]), args.traced)))
        return
    if args.quick:
        args.members = 100_000
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-archives-") as tmp:
        files = build(args, Path(tmp))
        rows = []
        for label, path in files.items():
            old_case = "old_pixels" if path.suffix == ".png" else ("old_zip" if path.suffix == ".zip" else "old_tar")
            new_case = "new_pixels" if path.suffix == ".png" else "new_archive"
            old, new = measure(old_case, path), measure(new_case, path)
            rows.append((label, path.stat().st_size, old, new))
    print(f"\nload average at start: {load:.1f} on {os.cpu_count()} cores; limits {MAX_MEMBERS} members, 4 GiB\n")
    head = f"{'case':34} {'file':>9} | {'before s':>8} {'after s':>8} {'x faster':>8} | {'before MiB':>10} {'after MiB':>9} | {'py peak before':>14} {'after':>7}"
    print(head)
    print("-" * len(head))
    for label, size, old, new in rows:
        rss_old, rss_new = old["hwm_mib"] - old["base_mib"], new["hwm_mib"] - new["base_mib"]
        print(
            f"{label:34} {size / 2**20:8.1f}M | {old['s']:8.2f} {new['s']:8.2f} {old['s'] / max(new['s'], 1e-6):8.1f} | "
            f"{rss_old:10.1f} {rss_new:9.1f} | {old['traced_mib']:14.1f} {new['traced_mib']:7.1f}"
        )
        print(f"{'':34}            before: {old['outcome'][:48]!r}; after: {new['outcome'][:48]!r}")
    print("\nMiB columns: growth of the process's peak RSS (VmHWM) during the rejection; py peak: tracemalloc.")


if __name__ == "__main__":
    main()
