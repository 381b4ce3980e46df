"""Quality control of registered pairs: figures, rejection thresholds, and the dataset report.

Why each figure (capture-reference.md, "Judging a pipeline"): the marker reprojection residual is
a fit residual and stays small even when corners are biased, so the held-out measures decide:
the marker-vs-content homography disagreement, the ECC correlation, the tiled shift
map of the final result (it shows uncorrected lens distortion as a smooth vector field),
and PSNR/SSIM on Y *before* the colour fix (the fix makes the low band identical by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_capture.config import ConfigError


@dataclass
class QAConfig:
    """Rejection thresholds; a pair failing any of them is written as ``rejected`` with the reason."""

    max_marker_residual_px: float = 6.0  # largest inlier corner residual, canvas px
    min_ecc_correlation: float = 0.85
    max_marker_content_px: float = 20.0  # marker-only vs final homography over the image, source px
    max_residual_rms_px: float = 3.0  # RMS of the fitted lens-distortion field, source px
    max_shift_p50_px: float = 0.5  # median of the final tiled shift map, source px (robust to aperture outliers)
    min_psnr_y: float = 14.0  # dB, LR vs downscaled source, before the colour fix
    min_photo_px_per_lr_px: float = 1.0  # sampling density: below it the LR would be upsampled
    max_anisotropy: float = 2.5  # max/min local photo sampling density over the image (oblique views)
    shift_tiles: tuple[int, int] = (8, 6)  # phase-correlation grid (columns, rows)

    def validate(self) -> None:
        if self.min_ecc_correlation > 1:
            raise ConfigError(f"min_ecc_correlation {self.min_ecc_correlation} > 1 can never pass; use e.g. 0.85")
        if self.shift_tiles[0] < 1 or self.shift_tiles[1] < 1:
            raise ConfigError(f"shift_tiles {self.shift_tiles} must be positive")


def shift_map(source_plane: np.ndarray, aligned_plane: np.ndarray, tiles: tuple[int, int] = (8, 6),
              sigma: float = 1.0, min_corr: float = 0.9) -> dict[str, Any]:
    """Tiled shift map between the source and the aligned photo (one plane each, ``(H, W)``).

    Each tile's translation is estimated by ECC (translation model) on low-passed planes. Phase
    correlation was tried first: ``cv2.phaseCorrelate`` returned spurious half-pixel shifts on
    tiles whose sides are not powers of two and ``skimage``'s upsampled version was biased toward
    zero on these smooth tiles, while ECC recovered known sub-pixel shifts (see the tests).

    Returns ``{"x", "y"}`` tile centres (source px), ``"dx", "dy"`` shifts of the aligned content
    relative to the source (source px; positive = right/down; NaN for flat or uncorrelated tiles),
    ``"corr"`` the tile correlation, and ``p50 / p95 / max`` of the shift magnitude over usable tiles.
    """
    import cv2

    from data_capture.register import well_conditioned

    H, W = source_plane.shape
    # small images (the LR of a small source) get fewer tiles rather than none: >= 24 px a side
    nx, ny = max(1, min(tiles[0], W // 24)), max(1, min(tiles[1], H // 24))
    tw, th = W // nx, H // ny
    out: dict[str, Any] = {"x": [], "y": [], "dx": [], "dy": [], "corr": []}
    if tw < 16 or th < 16:
        return {**out, "p50": None, "p95": None, "max": None, "tiles": 0}
    a = cv2.GaussianBlur(source_plane.astype(np.float32), (0, 0), sigma)
    b = cv2.GaussianBlur(aligned_plane.astype(np.float32), (0, 0), sigma)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    for j in range(ny):
        for i in range(nx):
            ta = a[j * th : (j + 1) * th, i * tw : (i + 1) * tw]
            tb = b[j * th : (j + 1) * th, i * tw : (i + 1) * tw]
            dx = dy = float("nan")
            rho = 0.0
            if well_conditioned(ta):
                try:
                    rho, M = cv2.findTransformECC(ta, tb, np.eye(2, 3, dtype=np.float32), cv2.MOTION_TRANSLATION, crit, None, 1)
                    if rho >= min_corr and max(abs(M[0, 2]), abs(M[1, 2])) < min(tw, th) / 4:
                        dx, dy = float(M[0, 2]), float(M[1, 2])
                except cv2.error:
                    rho = 0.0
            out["x"].append(i * tw + (tw - 1) / 2)
            out["y"].append(j * th + (th - 1) / 2)
            out["dx"].append(round(dx, 4))
            out["dy"].append(round(dy, 4))
            out["corr"].append(round(float(rho), 4))
    mag = np.hypot(out["dx"], out["dy"])
    ok = np.isfinite(mag)
    stats = {"p50": None, "p95": None, "max": None}
    if ok.any():
        stats = {"p50": float(np.median(mag[ok])), "p95": float(np.percentile(mag[ok], 95)), "max": float(mag[ok].max())}
    return {**out, **{k: (round(v, 4) if v is not None else None) for k, v in stats.items()}, "tiles": int(ok.sum())}


def y_psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM on BT.601 luma of two ``(H, W, 3) uint8`` images (skimage's SSIM, 7x7 window)."""
    import cv2
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ya = cv2.cvtColor(a, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    psnr = float(peak_signal_noise_ratio(ya, yb, data_range=255)) if not np.array_equal(ya, yb) else float("inf")
    ssim = float(structural_similarity(ya, yb, data_range=255, win_size=7 if min(ya.shape) >= 7 else 3))
    return psnr, ssim


def dense_error(reg: Any, truth: dict[str, Any], layout: Any, step: float = 4.0, border: float = 4.0) -> dict[str, float]:
    """Alignment error of ``reg`` against a simulator truth, in source px, over the whole image.

    For source points ``q`` on a grid, the estimated photo point ``P(q)`` is mapped back with the
    exact truth map; the error is ``|S^-1 T(P(q)) - q|``.
    """
    from data_capture.register import apply_h
    from data_capture.simulate import truth_photo_to_canvas

    W, H = layout.source_size
    gx, gy = np.meshgrid(np.arange(border, W - border, step), np.arange(border, H - border, step))
    q = np.stack([gx, gy], -1)
    back = apply_h(np.linalg.inv(layout.S), truth_photo_to_canvas(truth, reg.source_to_photo(q)))
    e = np.linalg.norm(back - q, axis=-1)
    return {"median": float(np.median(e)), "p95": float(np.percentile(e, 95)), "max": float(e.max()),
            "mean": float(e.mean())}


def judge(qa: dict[str, Any], cfg: QAConfig) -> str | None:
    """The first failed threshold as a human-readable reason, or None when the pair passes."""
    checks = [
        ("marker_max_px", lambda v: v > cfg.max_marker_residual_px,
         f"marker corner residual {{v:.2f}} canvas px > {cfg.max_marker_residual_px} (a corner is off: occluded or reflected marker?)"),
        ("photo_px_per_lr_px_min", lambda v: v < cfg.min_photo_px_per_lr_px,
         f"photo too coarse: {{v:.2f}} photo px per LR px < {cfg.min_photo_px_per_lr_px} (move closer or use a lower scale)"),
        ("anisotropy", lambda v: v > cfg.max_anisotropy,
         f"extreme viewing angle: sampling density varies {{v:.2f}}x over the image > {cfg.max_anisotropy}"),
        ("ecc_correlation", lambda v: v < cfg.min_ecc_correlation,
         f"content correlation {{v:.3f}} < {cfg.min_ecc_correlation} (photo of a different image, glare, or failed alignment)"),
        ("marker_content_px", lambda v: v > cfg.max_marker_content_px,
         f"markers and content disagree by {{v:.1f}} source px > {cfg.max_marker_content_px}"),
        ("residual_rms_px", lambda v: v > cfg.max_residual_rms_px,
         f"lens-distortion field RMS {{v:.2f}} source px > {cfg.max_residual_rms_px}"),
        ("shift_p50_px", lambda v: v > cfg.max_shift_p50_px,
         f"residual misalignment: shift-map median {{v:.3f}} source px > {cfg.max_shift_p50_px}"),
        ("psnr_y", lambda v: v < cfg.min_psnr_y,
         f"PSNR(Y) before colour fix {{v:.1f}} dB < {cfg.min_psnr_y} (wrong canvas or unusable photo)"),
    ]
    for key, bad, msg in checks:
        v = qa.get(key)
        if v is None:
            continue
        if bad(v):
            return msg.format(v=v)
    if qa.get("ecc_correlation") is None and qa.get("ecc_note"):
        return str(qa["ecc_note"])
    return None


# ---------------------------------------------------------------------------- report


def _save(fig: Any, path: Path, dpi: int) -> None:
    """Save a matplotlib figure atomically (temporary file in the same folder, then replace)."""
    import os

    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)


def write_report(out_dir: Path, records: list[dict[str, Any]], *, title: str = "ScreenSR capture report") -> Path:
    """Write ``report.md`` with a summary, a per-pair table, thumbnails and matplotlib plots.

    Plots (``report/``): per-pair marker residuals, per-pair shift maps (quiver, arrows x50), and
    the distribution of shift-map p95 / ECC correlation over the dataset.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_capture.imageio import read_image, write_image, write_text

    rep = Path(out_dir) / "report"
    rep.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r.get("status") == "ok"]
    lines = [f"# {title}", "", f"{len(records)} pairs: {len(ok)} ok, {len(records) - len(ok)} rejected.", "",
             "Figures: markers found, ECC correlation of the content, marker-only vs final homography over the "
             "image (source px), median / p95 of the tiled shift map of the result (source px, measured on the LR "
             "grid), dense error against the simulator's truth when a `<stem>.truth.json` sits beside the photo, "
             "PSNR / SSIM on Y of LR vs the area-downscaled HR before the colour fix.", ""]
    lines += ["| id | status | markers | ECC corr | marker-content px | shift p50 / p95 px | truth err median / p95 px "
              "| PSNR-Y dB | SSIM-Y | reason |",
              "|---|---|---|---|---|---|---|---|---|---|"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in records:
        qa = r.get("qa", {})
        det = r.get("detection", {})
        lines.append(
            f"| {r['id']} | {r['status']} | {len(det.get('found', []))}/4 | {f(qa.get('ecc_correlation'), '.4f')} | "
            f"{f(qa.get('marker_content_px'), '.2f')} | {f(qa.get('shift_p50_px'), '.3f')} / {f(qa.get('shift_p95_px'), '.3f')} | "
            f"{f((qa.get('truth_error_px') or {}).get('median'), '.3f')} / {f((qa.get('truth_error_px') or {}).get('p95'), '.3f')} | "
            f"{f(qa.get('psnr_y'), '.2f')} | "
            f"{f(qa.get('ssim_y'), '.3f')} | {r.get('reason') or ''} |"
        )
    lines.append("")
    # dataset-level plot
    if ok:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        axes[0].hist([r["qa"].get("shift_p95_px") or 0 for r in ok], bins=20)
        axes[0].set_xlabel("shift-map p95 (source px)")
        axes[1].hist([r["qa"].get("ecc_correlation") or 0 for r in ok], bins=20)
        axes[1].set_xlabel("ECC correlation")
        fig.tight_layout()
        _save(fig, rep / "summary.png", 80)
        plt.close(fig)
        lines += ["![summary](report/summary.png)", ""]
    for r in records:
        rid = r["id"]
        lines += [f"## {rid}: {r['status']}" + (f" ({r['reason']})" if r.get("reason") else ""), ""]
        qa = r.get("qa", {})
        res = qa.get("marker_residuals") or {}
        sm = qa.get("shift_map")
        if res or sm:
            fig, axes = plt.subplots(1, 2, figsize=(8, 3))
            if res:
                labels = [f"{m}.{k}" for m in res for k in range(4)]
                axes[0].bar(range(len(labels)), [v for m in res for v in res[m]])
                axes[0].set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
                axes[0].set_ylabel("corner residual (canvas px)")
            if sm and sm.get("x"):
                dx = np.nan_to_num(np.asarray(sm["dx"], float))
                dy = np.nan_to_num(np.asarray(sm["dy"], float))
                axes[1].quiver(sm["x"], sm["y"], dx, -dy, angles="xy", scale_units="xy", scale=1 / 50)
                axes[1].invert_yaxis()
                axes[1].set_title("shift map (arrows x50)", fontsize=8)
                axes[1].set_aspect("equal")
            fig.tight_layout()
            _save(fig, rep / f"{rid}_qa.png", 70)
            plt.close(fig)
            lines += [f"![qa](report/{rid}_qa.png)", ""]
        thumbs = []
        for key in ("hr", "lr"):
            p = r.get(key)
            if p and (Path(out_dir) / p).is_file():
                import cv2

                img = read_image(Path(out_dir) / p).rgb
                s = 192 / max(img.shape[:2])
                img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                                 interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
                write_image(rep / f"{rid}_{key}.jpg", img, jpeg_quality=85)
                thumbs.append(f"![{key}](report/{rid}_{key}.jpg)")
        if thumbs:
            lines += [" ".join(thumbs), ""]
    path = Path(out_dir) / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
