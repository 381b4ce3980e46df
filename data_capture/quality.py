"""Quality control of registered pairs: figures, rejection thresholds, and the dataset report.

Why each figure (``docs/capture-reference.md``, "Judging a pipeline"): the marker reprojection residual is
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

from core.atomic import atomic_path
from core.errors import ConfigError
from data_capture.geometry import apply_h
from data_capture.imageio import read_image, write_image, write_text
from data_capture.simulate import truth_photo_to_canvas


@dataclass
class QAConfig:
    """Rejection thresholds; a pair failing any of them is written as ``rejected`` with the reason."""

    max_marker_residual_px: float = 6.0  # largest inlier corner residual, canvas px
    min_ecc_correlation: float = 0.85
    max_marker_content_px: float = 20.0  # marker-only vs final homography over the image, source px
    max_residual_rms_px: float = 3.0  # RMS of the fitted lens-distortion field, source px
    max_shift_p50_px: float = 0.5  # median of the final tiled shift map, source px
    min_psnr_y: float = 14.0  # dB, LR vs downscaled source, before the colour fix
    min_photo_px_per_lr_px: float = 1.0  # sampling density: below it the LR would be upsampled
    max_anisotropy: float = 2.5  # max/min local photo sampling density over the image (oblique views)
    shift_tiles: tuple[int, int] = (8, 6)  # shift-map grid (columns, rows), on the source grid
    shift_sigma: float = 1.0  # low-pass of both planes before the tile shifts, source px
    shift_max_se: float = 0.1  # a tile counts when the standard error of its shift is at most this, source px
    shift_max_photometric: float = 0.1  # ... and gamma- and linear-light measurements agree this well, source px

    def validate(self) -> None:
        if self.min_ecc_correlation > 1:
            raise ConfigError(f"min_ecc_correlation {self.min_ecc_correlation} > 1 can never pass; use e.g. 0.85")
        if self.shift_tiles[0] < 1 or self.shift_tiles[1] < 1:
            raise ConfigError(f"shift_tiles {self.shift_tiles} must be positive")
        if self.shift_sigma <= 0 or self.shift_max_se <= 0 or self.shift_max_photometric <= 0:
            raise ConfigError(
                f"shift_sigma {self.shift_sigma}, shift_max_se {self.shift_max_se} and shift_max_photometric "
                f"{self.shift_max_photometric} must be > 0"
            )


#: Why a tile of the shift map does or does not count (``shift_map(...)["status"]``).
TILE_STATUS = {
    "ok": "counted",
    "flat": "no two strong gradient directions (flat, or one edge direction: the aperture problem)",
    "diverged": "ECC did not converge",
    "uncorrelated": "ECC correlation below min_corr",
    "uncertain": "standard error of the shift above max_se",
    "far": "shift beyond a quarter tile",
    "photometric": "the shift changes with the intensity encoding (gamma vs linear light): not geometric",
}


def _ecc_tile(ta: np.ndarray, win: np.ndarray, M0: np.ndarray, crit: tuple) -> tuple[float, np.ndarray | None]:
    """ECC translation of template tile ``ta`` in window ``win`` from the warp ``M0``: (rho, warp)."""
    import cv2

    try:  # (OpenCV updates the warp it is given in place: pass a copy)
        # inputMask None means "every pixel" (OpenCV's documented default); the stubs only allow arrays
        return cv2.findTransformECC(ta, win, M0.copy(), cv2.MOTION_TRANSLATION, crit, None, 1)  # type: ignore[call-overload]
    except cv2.error:  # "iterations do not converge"
        return 0.0, None


def shift_map(source_plane: np.ndarray, aligned_plane: np.ndarray, tiles: tuple[int, int] = (8, 6),
              sigma: float = 1.0, border: int = 6, max_se: float = 0.1, min_corr: float = 0.9,
              min_tile: int = 32, max_photometric: float = 0.1) -> dict[str, Any]:
    """Tiled residual shift map of an aligned photo against its source, on the source grid.

    What it measures: for each tile, the translation ``t`` (source px) of the aligned photo's
    content relative to the source (``aligned(x + t) ~ gain * source(x) + offset`` over the tile),
    i.e. the local residual misalignment left by the registration, averaged over the tile.

    How: both planes are low-passed (Gaussian ``sigma``, against moire, noise and the sharpness
    difference of a clean source and a photo); each tile of the source is matched against the
    aligned photo around the same place by ECC with a translation model (``cv2.findTransformECC``,
    gain and offset invariant, sub-pixel). The aligned photo is given a margin around the tile, so
    content that a shift moves across the tile edge is still compared. A ``border`` strip along the
    image edges is left out: there the photo's white canvas, blurred into the first pixels, would
    be compared with the source's reflected border. A tile counts only when it can tell its shift
    (``status`` per tile, see ``TILE_STATUS``):

    * its structure tensor has two strong directions (``lambda_min >= 0.1 lambda_max``: flat tiles
      and tiles with one edge direction, the aperture problem, let ECC slide freely);
    * ECC converged, correlates at least ``min_corr``, and moved less than a quarter tile;
    * the standard error of the estimate is at most ``max_se`` px. For the least-squares shift of a
      tile of ``N`` px with residual variance ``s^2`` (after the gain/offset fit), gain ``g`` and
      smallest structure-tensor eigenvalue ``lambda_min`` (per-pixel mean of grad grad^T), the
      error is ``sqrt(s^2 / (N_eff g^2 lambda_min))``, with ``N_eff = N / (4 pi sigma^2)``
      independent samples after the Gaussian low-pass (its equivalent noise area);
    * the shift is geometric: measured again on both planes decoded to linear light
      (``(v / 255)^2.2``), it moves by at most ``max_photometric`` px. A displacement of the
      content does not depend on how intensities are encoded; the apparent displacement of a
      high-contrast edge that the lens blurred in linear light does (it leans towards the dark
      side in gamma space), as do demosaicing and moire artefacts. On simulated 12 MP captures such
      tiles were off by 0.2-0.4 px while their standard error said 0.02. The shift reported is the
      mean of the two measurements.

    Tiles are at least ``min_tile`` px a side (small images get fewer tiles, not noisier ones).
    Measured against the simulator's true residual at the same tiles, the p50 / p95 of the shift
    magnitude over the counted tiles agree within 0.05 / 0.08 px on the demo's captures (six 512 px
    sources, presets mild and typical) and 0.02 / 0.04 px on 12 MP captures (typical and hard,
    tests/perf/bench_capture.py); the tests hold them to 0.1 px.

    Args:
        source_plane, aligned_plane: ``(H, W)`` planes on the same grid, values in 0..255
            (uint8 or float).

    Returns:
        ``{"x", "y"}`` tile centres (px of that grid), ``"dx", "dy"`` shifts (px; NaN where the tile
        does not count), ``"status"`` per tile, ``"corr"`` ECC correlations, ``"se"`` standard
        errors (px), ``p50 / p95 / max`` of the shift magnitude over the counted tiles (None when
        no tile counts), ``tiles`` the number counted, ``tiles_total`` and ``tile_size`` ``[w, h]``.
    """
    import cv2

    H, W = source_plane.shape
    iw, ih = W - 2 * border, H - 2 * border
    nx, ny = min(tiles[0], iw // min_tile), min(tiles[1], ih // min_tile)
    out: dict[str, Any] = {"x": [], "y": [], "dx": [], "dy": [], "status": [], "corr": [], "se": []}
    if nx < 1 or ny < 1:
        return {**out, "p50": None, "p95": None, "max": None, "tiles": 0, "tiles_total": 0, "tile_size": None}
    tw, th = iw // nx, ih // ny

    def low(plane: np.ndarray, linear: bool) -> np.ndarray:
        v = plane.astype(np.float32)
        if linear:
            v = np.power(np.clip(v, 0, 255) / 255.0, 2.2, dtype=np.float32) * 255.0
        return cv2.GaussianBlur(v, (0, 0), sigma)

    a, b = low(source_plane, False), low(aligned_plane, False)
    a_lin, b_lin = low(source_plane, True), low(aligned_plane, True)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    n_eff_area = 4 * np.pi * sigma**2  # px per independent sample after the low-pass
    margin = max(4, min(tw, th) // 4)
    for j in range(ny):
        for i in range(nx):
            x0, y0 = border + i * tw, border + j * th
            ta = a[y0 : y0 + th, x0 : x0 + tw]
            dx = dy = se = float("nan")
            rho = 0.0
            gy, gx = np.gradient(ta)
            st = np.array([[(gx * gx).mean(), (gx * gy).mean()], [(gx * gy).mean(), (gy * gy).mean()]])
            lam_min, lam_max = np.linalg.eigvalsh(st)
            status = "flat"
            if lam_min > 1e-6 and lam_min >= 0.1 * lam_max:
                xa, ya = max(0, x0 - margin), max(0, y0 - margin)
                xb, yb = min(W, x0 + tw + margin), min(H, y0 + th + margin)
                M0 = np.array([[1, 0, x0 - xa], [0, 1, y0 - ya]], np.float32)
                win = b[ya:yb, xa:xb]
                rho, M = _ecc_tile(ta, win, M0, crit)
                status = "diverged"
                if M is not None:
                    t = np.array([M[0, 2] - M0[0, 2], M[1, 2] - M0[1, 2]], np.float64)
                    warped = cv2.warpAffine(win, M, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                    X = np.stack([ta.ravel(), np.ones(ta.size, np.float32)], 1)
                    coef, *_ = np.linalg.lstsq(X, warped.ravel(), rcond=None)
                    var = float((warped.ravel() - X @ coef).var())
                    se = float(np.sqrt(var * n_eff_area / max(ta.size * coef[0] ** 2 * lam_min, 1e-12)))
                    if rho < min_corr:
                        status = "uncorrelated"
                    elif np.abs(t).max() >= min(tw, th) / 4:
                        status = "far"
                    elif se > max_se:
                        status = "uncertain"
                    else:
                        # the same tile in linear light, started from the first answer
                        _, M_lin = _ecc_tile(a_lin[y0 : y0 + th, x0 : x0 + tw], b_lin[ya:yb, xa:xb], M, crit)
                        t_lin = None if M_lin is None else np.array([M_lin[0, 2] - M0[0, 2], M_lin[1, 2] - M0[1, 2]])
                        if t_lin is None or np.hypot(*(t - t_lin)) > max_photometric:
                            status = "photometric"
                        else:
                            status = "ok"
                            dx, dy = (t + t_lin) / 2
            out["x"].append(x0 + (tw - 1) / 2)
            out["y"].append(y0 + (th - 1) / 2)
            out["dx"].append(round(float(dx), 4))
            out["dy"].append(round(float(dy), 4))
            out["status"].append(status)
            out["corr"].append(round(float(rho), 4))
            out["se"].append(round(se, 4))
    mag = np.hypot(out["dx"], out["dy"])
    ok = np.isfinite(mag)
    stats: dict[str, float | None] = {"p50": None, "p95": None, "max": None}
    if ok.any():
        stats = {"p50": float(np.median(mag[ok])), "p95": float(np.percentile(mag[ok], 95)), "max": float(mag[ok].max())}
    return {**out, **{k: (round(v, 4) if v is not None else None) for k, v in stats.items()},
            "tiles": int(ok.sum()), "tiles_total": int(nx * ny), "tile_size": [int(tw), int(th)]}


def truth_shift_map(reg: Any, truth: dict[str, Any], layout: Any, sm: dict[str, Any], *, step: int = 5) -> dict[str, Any]:
    """The true residual shift at the tiles of a shift map ``sm`` (source px), from simulator truth.

    The aligned photo at source point ``q`` shows the source point ``S^-1 T(P(q))`` (``P`` the
    estimated source -> photo map, ``T`` the exact photo -> canvas map), so its content is
    displaced by ``-(S^-1 T(P(q)) - q)``; this is averaged over a ``step x step`` grid of each tile.

    Returns ``{"dx", "dy"}`` per tile and ``p50 / p95`` of the magnitude over the tiles that ``sm``
    counts.
    """
    xs, ys = np.asarray(sm["x"], float), np.asarray(sm["y"], float)
    if not len(xs):
        return {"dx": [], "dy": [], "p50": None, "p95": None}
    hw, hh = (sm["tile_size"][0] - 1) / 2, (sm["tile_size"][1] - 1) / 2
    u = np.linspace(-1, 1, step)
    gx, gy = np.meshgrid(u, u)
    q = np.stack([xs[:, None, None] + gx * hw, ys[:, None, None] + gy * hh], -1)  # (tiles, step, step, 2)
    back = apply_h(np.linalg.inv(layout.S), truth_photo_to_canvas(truth, reg.source_to_photo(q)))
    d = -(back - q).reshape(len(xs), -1, 2).mean(1)
    ok = np.isfinite(np.asarray(sm["dx"], float))
    mag = np.hypot(d[ok, 0], d[ok, 1])
    return {"dx": np.round(d[:, 0], 4).tolist(), "dy": np.round(d[:, 1], 4).tolist(),
            "p50": round(float(np.median(mag)), 4) if ok.any() else None,
            "p95": round(float(np.percentile(mag, 95)), 4) if ok.any() else None}


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
    """Save a matplotlib figure atomically (umask permissions; a reader never sees half a PNG)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def summary_figure(records: list[dict[str, Any]]) -> Any:
    """The dataset-level figure: histograms of the shift-map p95 and the ECC correlation of ok pairs.

    ECC correlations of good pairs crowd into 0.99..1.0, where default ticks (0.9950, 0.9955, ...)
    overlap: at most four ticks are drawn, formatted to the decimals that tell them apart.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ok = [r for r in records if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    shifts = [r["qa"]["shift_p95_px"] for r in ok if r.get("qa", {}).get("shift_p95_px") is not None]
    eccs = [r["qa"]["ecc_correlation"] for r in ok if r.get("qa", {}).get("ecc_correlation") is not None]
    for ax, values, label in ((axes[0], shifts, "shift-map p95 (source px)"), (axes[1], eccs, "ECC correlation")):
        ax.hist(values, bins=20)
        ax.set_xlabel(label)
        ax.set_ylabel("pairs")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.tick_params(axis="x", labelsize=8)
        if not values:
            ax.text(0.5, 0.5, "no ok pairs", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def pair_figure(rec: dict[str, Any]) -> Any | None:
    """The per-pair figure: marker corner residuals and the shift map (arrows x50); None if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qa = rec.get("qa", {})
    res = qa.get("marker_residuals") or {}
    sm = qa.get("shift_map")
    if not res and not sm:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    if res:
        labels = [f"{m}.{k}" for m in res for k in range(4)]
        axes[0].bar(range(len(labels)), [v for m in res for v in res[m]])
        axes[0].set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        axes[0].set_ylabel("corner residual (canvas px)")
        axes[0].set_xlabel("marker.corner")
    if sm and sm.get("x"):
        dx = np.asarray(sm["dx"], float)
        dy = np.asarray(sm["dy"], float)
        ok = np.isfinite(dx) & np.isfinite(dy)
        x, y = np.asarray(sm["x"], float), np.asarray(sm["y"], float)
        axes[1].quiver(x[ok], y[ok], dx[ok], -dy[ok], angles="xy", scale_units="xy", scale=1 / 50)
        if (~ok).any():
            axes[1].plot(x[~ok], y[~ok], "x", color="0.6", ms=4, label="tile not counted")
            axes[1].legend(loc="upper right", fontsize=6)
        axes[1].invert_yaxis()
        axes[1].set_title("shift map (arrows x50, source px)", fontsize=8)
        axes[1].set_aspect("equal")
    fig.tight_layout()
    return fig


def write_report(out_dir: Path, records: list[dict[str, Any]], *, title: str = "ScreenSR capture report") -> Path:
    """Write ``report.md`` with a summary, a per-pair table, thumbnails and matplotlib plots.

    Plots (``report/``): per-pair marker residuals, per-pair shift maps (quiver, arrows x50), and
    the distribution of shift-map p95 / ECC correlation over the dataset.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = Path(out_dir) / "report"
    rep.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r.get("status") == "ok"]
    lines = [f"# {title}", "", f"{len(records)} pairs: {len(ok)} ok, {len(records) - len(ok)} rejected.", "",
             "Figures: markers found, ECC correlation of the content, marker-only vs final homography over the "
             "image (source px), median / p95 of the tiled shift map of the result (source px, measured on the "
             "source grid over the tiles whose shift is determined to 0.1 px; the count is given), and, when a "
             "`<stem>.truth.json` from the simulator sits beside the photo, the true residual shift at the same "
             "tiles and the dense error against the truth; PSNR / SSIM on Y of LR vs the area-downscaled HR "
             "before the colour fix.", ""]
    lines += ["| id | status | markers | ECC corr | marker-content px | shift p50 / p95 px (tiles) "
              "| truth shift p50 / p95 px | truth err median / p95 px | PSNR-Y dB | SSIM-Y | reason |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in records:
        qa = r.get("qa", {})
        det = r.get("detection", {})
        sm = qa.get("shift_map") or {}
        te = qa.get("truth_error_px") or {}
        tiles = f" ({sm['tiles']}/{sm.get('tiles_total', '?')})" if "tiles" in sm else ""
        lines.append(
            f"| {r['id']} | {r['status']} | {len(det.get('found', []))}/4 | {f(qa.get('ecc_correlation'), '.4f')} | "
            f"{f(qa.get('marker_content_px'), '.2f')} | {f(qa.get('shift_p50_px'), '.3f')} / {f(qa.get('shift_p95_px'), '.3f')}{tiles} | "
            f"{f(qa.get('truth_shift_p50_px'), '.3f')} / {f(qa.get('truth_shift_p95_px'), '.3f')} | "
            f"{f(te.get('median'), '.3f')} / {f(te.get('p95'), '.3f')} | "
            f"{f(qa.get('psnr_y'), '.2f')} | "
            f"{f(qa.get('ssim_y'), '.3f')} | {r.get('reason') or ''} |"
        )
    lines.append("")
    if ok:
        fig = summary_figure(records)
        _save(fig, rep / "summary.png", 80)
        plt.close(fig)
        lines += ["![summary](report/summary.png)", ""]
    for r in records:
        rid = r["id"]
        lines += [f"## {rid}: {r['status']}" + (f" ({r['reason']})" if r.get("reason") else ""), ""]
        fig = pair_figure(r)
        if fig is not None:
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
