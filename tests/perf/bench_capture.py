"""Capture pipeline benchmark: alignment accuracy against the simulator's truth, and time per 12 MP pair.

Run: ``python tests/perf/bench_capture.py [--seeds 3] [--presets typical hard]`` (with the checkout
importable: an editable install, or ``PYTHONPATH=.``)

Setup (as in capture-reference.md): a 1920x1440 source (four skimage images tiled) on a 2400x1800
canvas, photographed by the simulator at 4032x3024 (12 MP) with moire (RGB-stripe display, Bayer,
JPEG) and radial distortion. For each photo, the dense error against the true map is computed over
the source image for four estimators in the same run:

* ``4-corner``: homography from the four outer marker corners only (the baseline),
* ``16-corner``: least squares over all 16 marker corners,
* ``+ECC``: then ECC on the content,
* ``full``: then the smooth residual field (the pipeline's default).

Times are measured with OpenCV limited to one thread (the goal is per pair on one core), for
detection + registration + warp + colour alignment; decoding and QA are listed apart.

The QA shift map is checked against the truth too: its p50 / p95 beside those of the true residual
at the same tiles (the QA must measure what it claims; goal: within 0.1 px).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_source() -> np.ndarray:
    import cv2
    from skimage import data

    tiles = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = [cv2.resize(t[..., :3], (960, 720), interpolation=cv2.INTER_CUBIC) for t in tiles]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--presets", nargs="+", default=["typical", "hard"])
    ap.add_argument("--photo-size", default="4032x3024")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    from data_capture.canvas import CanvasConfig, plan_layout, render_canvas
    from data_capture.detect import detect_markers, to_gray
    from data_capture.imageio import read_image, write_image
    from data_capture.pair import PairConfig, process_pair
    from data_capture.quality import dense_error
    from data_capture.register import (
        RegisterConfig,
        Registration,
        marker_homography,
        register,
        registration_plane,
    )
    from data_capture.simulate import preset_config, simulate_photo

    pw, ph = (int(v) for v in args.photo_size.split("x"))
    src = make_source()
    layout = plan_layout((src.shape[1], src.shape[0]), CanvasConfig(width=2400, height=1800), source="bench")
    canvas = render_canvas(src, layout)
    cfg = PairConfig(scale=4)
    rows = []
    times = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    for preset in args.presets:
        sim = preset_config(preset, photo_width=pw, photo_height=ph)
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            photo, truth = simulate_photo(canvas, sim, seed, jpeg=False)
            jpg = tmp / f"{preset}_{seed}.jpg"
            write_image(jpg, photo, jpeg_quality=sim.jpeg_quality)
            t_sim = time.perf_counter() - t0
            cv2.setNumThreads(1)
            t0 = time.perf_counter()
            photo = read_image(jpg, role="photo").rgb
            t_dec = time.perf_counter() - t0
            res = process_pair(photo, src, layout, cfg, truth)
            cv2.setNumThreads(0)
            tm = res.record["timings_ms"]
            times.append({"preset": preset, "decode": t_dec * 1000, **tm, **{
                f"reg.{k}": v for k, v in res.record.get("register_ms", {}).items()}})
            # estimators for the accuracy table (same detection as the pipeline)
            det = detect_markers(to_gray(photo), layout, cfg.detect)
            errs = {}
            if len(det.corners) == 4:
                ids = sorted(det.corners)
                outer = np.array([det.corners[ids[0]][0], det.corners[ids[1]][1], det.corners[ids[2]][2], det.corners[ids[3]][3]])
                canv = np.array([layout.markers[ids[0]][0], layout.markers[ids[1]][1], layout.markers[ids[2]][2], layout.markers[ids[3]][3]])
                H4 = cv2.getPerspectiveTransform(outer.astype(np.float32), canv.astype(np.float32)).astype(np.float64)
                errs["4-corner"] = dense_error(Registration(H4, layout.S, layout.source_size), truth, layout)
            else:
                errs["4-corner"] = None
            try:
                errs["16-corner"] = dense_error(marker_homography(layout, det, cfg.register), truth, layout)
            except ValueError:
                errs["16-corner"] = None
            sp, pp = registration_plane(src), registration_plane(photo)
            try:
                errs["+ECC"] = dense_error(register(sp, pp, layout, det, RegisterConfig(residual=False)), truth, layout)
            except ValueError:
                errs["+ECC"] = None
            errs["full"] = dense_error(res.registration, truth, layout) if res.registration else None
            qa = res.record.get("qa", {})
            rows.append((preset, seed, errs, res.record["status"], res.record.get("reason"), t_sim,
                         len(det.corners), {k: qa.get(k) for k in ("shift_p50_px", "shift_p95_px",
                                                                    "truth_shift_p50_px", "truth_shift_p95_px")},
                         (qa.get("shift_map") or {}).get("tiles"), (qa.get("shift_map") or {}).get("tiles_total")))
            print(f"  {preset} seed {seed}: markers {len(det.corners)}/4, status {res.record['status']}, "
                  f"full median {errs['full']['median'] if errs['full'] else float('nan'):.4f} px "
                  f"(simulated in {t_sim:.1f} s)", flush=True)

    print("\nAlignment accuracy vs the true map (dense, over the source image, source px)")
    print(f"{'preset':8s} {'estimator':10s} {'median':>8s} {'p95':>8s} {'max':>8s}  {'vs 4-corner (median)':>20s}")
    for preset in args.presets:
        sel = [r for r in rows if r[0] == preset]
        base = [r[2]["4-corner"]["median"] for r in sel if r[2]["4-corner"]]
        for est in ("4-corner", "16-corner", "+ECC", "full"):
            vals = [r[2][est] for r in sel if r[2][est]]
            if not vals:
                print(f"{preset:8s} {est:10s} {'n/a':>8s}")
                continue
            med = float(np.mean([v["median"] for v in vals]))
            p95 = float(np.mean([v["p95"] for v in vals]))
            mx = float(np.max([v["max"] for v in vals]))
            ratio = f"{med / np.mean(base):.2f}x" if base else "n/a"
            print(f"{preset:8s} {est:10s} {med:8.4f} {p95:8.4f} {mx:8.4f}  {ratio:>20s}   (n={len(vals)})")
    print("goal (typical): median <= 0.05 px, p95 <= 0.2 px")

    print("\nQA shift map vs the true residual at the same tiles (source px): QA p50 / truth p50, QA p95 / truth p95")
    for r in rows:
        q = r[7]
        if q["shift_p50_px"] is None or q["truth_shift_p50_px"] is None:
            print(f"{r[0]:8s} seed {r[1]}: no QA figures ({r[3]})")
            continue
        print(f"{r[0]:8s} seed {r[1]}: p50 {q['shift_p50_px']:.3f} / {q['truth_shift_p50_px']:.3f}  "
              f"p95 {q['shift_p95_px']:.3f} / {q['truth_shift_p95_px']:.3f}  "
              f"(|diff| {abs(q['shift_p50_px'] - q['truth_shift_p50_px']):.3f}, "
              f"{abs(q['shift_p95_px'] - q['truth_shift_p95_px']):.3f}; tiles {r[8]}/{r[9]})")
    print("goal: |QA - truth| <= 0.1 px at p50 and p95")

    print("\nTime per 12 MP pair, one OpenCV thread (ms, mean over photos)")
    keys = ["detect", "register", "warp", "colour"]
    print(f"{'preset':8s} " + " ".join(f"{k:>9s}" for k in keys) + f" {'total':>9s} {'(decode)':>9s} {'(QA)':>9s}")
    for preset in args.presets:
        sel = [t for t in times if t["preset"] == preset]
        m = {k: float(np.mean([t.get(k, 0.0) for t in sel])) for k in keys + ["decode", "qa"]}
        total = sum(m[k] for k in keys)
        print(f"{preset:8s} " + " ".join(f"{m[k]:9.0f}" for k in keys) + f" {total:9.0f} {m['decode']:9.0f} {m['qa']:9.0f}")
    print("goal: total (detect + register + warp + colour) <= 1500 ms")
    print("\nregister, split (ms): " + "; ".join(
        f"{preset}: " + ", ".join(f"{k} {np.mean([t.get(f'reg.{k}', 0.0) for t in times if t['preset'] == preset]):.0f}"
                                  for k in ("markers", "ecc", "residual"))
        for preset in args.presets))
    for r in rows:
        if r[3] != "ok":
            print(f"note: {r[0]} seed {r[1]} rejected: {r[4]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
