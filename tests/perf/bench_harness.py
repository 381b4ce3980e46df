"""Harness overhead: ``benchmark.runner.evaluate`` vs pyiqa's own CLI and vs bare forward passes.

Run: ``python tests/perf/bench_harness.py [--images N] [--metrics psnr,ssim,niqe,lpips]``

Side by side in one run, on the same images (DRealSR crops from tests/data, OSEDiff outputs vs
HR, 512x512), single-threaded (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``):

1. ``pyiqa`` CLI, one process per metric (``pyiqa METRIC -t SR -r HR``): what a user without the
   harness runs. Its PSNR/SSIM use pyiqa's defaults (the CLI cannot pass ``color_space``), the
   same cost.
2. bare forward passes: the metric models built once, images decoded once, only the
   ``metric(sr, hr)`` calls timed (summed). The limit on this hardware.
3. the harness, from an empty store (decoding, hashing, GT no-reference scores switched off to
   match, store writes, model building).
4. the harness again on the finished store (resume: nothing to compute).

Goals (issue 3): 3 <= 0.7 x 1, 3 <= 1.15 x 2, 4 < 0.05 x 3. LPIPS runs with random weights
written to a temporary TORCH_HOME on purpose (timing only; the values are not reported).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DREALSR = REPO / "tests" / "data" / "drealsr_osediff"


def _setup_env(root: Path) -> None:
    os.environ.update(
        TORCH_HOME=str(root / "torch"), HF_HOME=str(root / "hf"), SCREENSR_HOME=str(root / "home"),
        HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )  # fmt: skip


def _random_lpips_weights() -> None:
    import torch
    import torchvision
    from pyiqa.archs.lpips_arch import LPIPS

    from benchmark.weights import metric_weight_files

    files = {f.name: f.path for f in metric_weight_files("lpips")}
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), files["alexnet-owt-7be5be79.pth"])
    torch.save(LPIPS(pretrained=False).state_dict(), files["LPIPS_v0.1_alex-df73285e.pth"])


def _subset(root: Path, n: int) -> Path:
    stems = sorted(p.stem for p in (DREALSR / "test_HR").glob("*.png"))[:n]
    out = root / "data"
    for sub in ("test_HR", "test_LR", "osediff"):
        (out / sub).mkdir(parents=True)
        for s in stems:
            shutil.copy(DREALSR / sub / f"{s}.png", out / sub / f"{s}.png")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--metrics", default="psnr,ssim,niqe,lpips")
    ap.add_argument("--repeat", type=int, default=2, help="alternating repeats of 2 and 3 (fastest counts)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    _setup_env(root)
    import torch

    torch.set_num_threads(1)
    from benchmark.images import read_image
    from benchmark.metrics import MetricModel, check_weights, resolve_metrics
    from benchmark.runner import evaluate
    from benchmark.store import ResultsStore

    metrics = [m.strip() for m in args.metrics.split(",")]
    if "lpips" in metrics:
        _random_lpips_weights()
    data = _subset(root, args.images)
    specs = resolve_metrics(metrics)
    for s in specs:
        if (msg := check_weights(s)) is not None:
            sys.exit(msg)

    # 1. pyiqa CLI, one process per metric
    pyiqa_cli = shutil.which("pyiqa") or sys.exit("the `pyiqa` command is not on PATH")
    t = time.perf_counter()
    for s in specs:
        cmd = [pyiqa_cli, s.pyiqa_name, "-t", str(data / "osediff"), "--device", "cpu"]
        if s.kind == "FR":
            cmd += ["-r", str(data / "test_HR")]
        subprocess.run(cmd, check=True, capture_output=True)
    t_cli = time.perf_counter() - t

    # 2. bare forward passes, 3. the harness from an empty store, 4. again (resume).
    # 2 and 3 alternate --repeat times and the fastest of each counts: on a shared machine the
    # load changes by the minute. Library imports (pandas, SQLAlchemy) are done first, as pyiqa's
    # and torch's are for the bare forward passes.
    import pandas  # noqa: F401
    import sqlalchemy  # noqa: F401

    pairs = [(read_image(p), read_image(data / "test_HR" / p.name)) for p in sorted((data / "osediff").glob("*.png"))]
    method = f"folder:{data / 'osediff'}"
    t_fwd = t_run = t_rerun = float("inf")
    for rep in range(args.repeat):
        fwd = 0.0
        for s in specs:
            model = MetricModel(s).load()
            for sr, hr in pairs:
                x, y = sr.tensor(), hr.tensor()
                t = time.perf_counter()
                model(x, y if s.kind == "FR" else None)
                fwd += time.perf_counter() - t
        t_fwd = min(t_fwd, fwd)
        store = ResultsStore(f"sqlite:///{root / f'r{rep}.db'}")
        t = time.perf_counter()
        first = evaluate([str(data)], [method], specs, store=store, progress=False, gt=False)
        t_run = min(t_run, time.perf_counter() - t)
        t = time.perf_counter()
        again = evaluate([str(data)], [method], specs, store=store, progress=False, gt=False)
        t_rerun = min(t_rerun, time.perf_counter() - t)
        assert again.attrs["stats"]["computed"] == 0 and len(first) == len(pairs) * len(specs)

    print(f"\n{args.images} images 512x512, metrics {', '.join(metrics)}, 1 thread, torch {torch.__version__}, "
          f"fastest of {args.repeat} for the in-process rows")
    print(f"{'run':<42} {'seconds':>9} {'ratio':>9}  goal")
    print(f"{'pyiqa CLI, one process per metric':<42} {t_cli:9.2f} {'':>9}")
    print(f"{'bare forward passes (sum)':<42} {t_fwd:9.2f} {'':>9}")
    print(f"{'harness, empty store':<42} {t_run:9.2f} {t_run / t_cli:9.3f}  <= 0.70 x pyiqa CLI")
    print(f"{'':<42} {'':>9} {t_run / t_fwd:9.3f}  <= 1.15 x bare forwards")
    print(f"{'harness rerun (all stored)':<42} {t_rerun:9.2f} {t_rerun / t_run:9.3f}  < 0.05 x first run")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
