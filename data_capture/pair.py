"""One capture pair: photo + canvas layout + source -> aligned, colour-fixed HR/LR pair with QA.

Output geometry (the dataset contract): HR is the clean source, cropped at the bottom/right to a
multiple of ``scale``. LR is the photo registered onto the source plane at ``source_size / scale``:
the photo is resampled directly on the LR grid, whose pixel ``j`` is centred on source coordinate ``s*j + (s-1)/2`` (the alignment of an area or bicubic downscale
of HR), after box-averaging the photo by the largest integer factor that keeps it at least as fine
as that grid (``register.warp_to_grid``). This costs a fraction of warping at source resolution and
area-averaging (12 MP photos), with the same geometry. The colour fix then runs at LR resolution
against the area-downscaled source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, UserError
from data_capture.canvas import CanvasSet, Layout
from data_capture.colorfix import ColorFixConfig, color_fix
from data_capture.detect import DetectConfig, detect_markers, to_gray
from data_capture.imageio import read_json
from data_capture.quality import QAConfig, dense_error, judge, shift_map, truth_shift_map, y_psnr_ssim
from data_capture.register import (
    RegisterConfig,
    Registration,
    RegistrationError,
    register,
    registration_plane,
    scale_matrix,
    warp_to_grid,
)


class PairInputError(UserError, ValueError):
    """A pair whose inputs cannot make an HR/LR pair (source size, scale, a changed source, a
    grayscale photo); the message is the rejection reason and names the fix."""


@dataclass
class PairConfig:
    """Everything that decides a pair's output (hashed for resume)."""

    scale: int = 4
    detect: DetectConfig = field(default_factory=DetectConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    colour: ColorFixConfig = field(default_factory=ColorFixConfig)
    qa: QAConfig = field(default_factory=QAConfig)

    def validate(self) -> None:
        if self.scale not in (1, 2, 3, 4, 8):
            raise ConfigError(f"scale {self.scale} unsupported; use 1, 2, 3, 4 or 8")
        for sub in (self.detect, self.register, self.colour, self.qa):
            sub.validate()


@dataclass
class PairResult:
    """The outputs of ``process_pair``: images (None when rejected) and the manifest record."""

    record: dict[str, Any]
    hr: np.ndarray | None = None  # (H, W, 3) uint8 clean source crop
    lr: np.ndarray | None = None  # (H/s, W/s, 3) uint8 aligned, colour-fixed photo
    aligned: np.ndarray | None = None  # (H, W, 3) uint8 photo at source resolution, before the fix (on request)
    registration: Registration | None = None


def process_pair(photo: np.ndarray, source: np.ndarray, layout: Layout, cfg: PairConfig,
                 truth: dict[str, Any] | None = None, *, want_aligned: bool = False,
                 canvases: CanvasSet | None = None, stem: str | None = None) -> PairResult:
    """Detect, register, warp, colour-fix and judge one photo.

    Args:
        photo: ``(Hp, Wp, 3) uint8`` RGB photo in its upright frame.
        source: ``(H, W, 3) uint8`` RGB source image (size must match the layout).
        layout: the canvas layout shown in the photo.
        cfg: pipeline settings.
        truth: simulator ground truth; when given the dense error is added to the QA figures.
        want_aligned: also return the photo warped at source resolution (before the colour fix).
        canvases, stem: the photo's canvas folder and the canvas stem its name gives; with them a
            photo whose markers belong to another canvas of the folder is rejected, naming it.

    Returns a ``PairResult``; registration failures give ``status = "rejected"`` with the reason
    instead of raising, so a dataset build continues with the other pairs.
    """
    import cv2

    s = cfg.scale
    H, W = source.shape[:2]
    if (W, H) != tuple(layout.source_size):
        raise PairInputError(
            f"source is {W}x{H} but layout '{layout.source}' was made for {layout.source_size[0]}x{layout.source_size[1]}; "
            "regenerate the canvas from this source"
        )
    Wc, Hc = (W // s) * s, (H // s) * s
    if Wc < 8 * s or Hc < 8 * s:
        raise PairInputError(f"source {W}x{H} too small for scale {s}: the LR image would be under 8 px a side")
    t: dict[str, float] = {}
    rec: dict[str, Any] = {"status": "rejected", "reason": None, "scale": s,
                           "hr_size": [Wc, Hc], "lr_size": [Wc // s, Hc // s],
                           "photo_size": [photo.shape[1], photo.shape[0]]}
    t0 = time.perf_counter()
    gray = to_gray(photo)
    det = detect_markers(gray, layout, cfg.detect)
    foreign = list(det.foreign)
    if canvases is not None and len(det.corners) < cfg.register.min_markers and canvases.dictionary != layout.dictionary:
        # ids beyond the layout's dictionary (a folder grown with a larger one) need the larger decoder
        foreign = sorted(set(foreign) | set(detect_markers(gray, layout, cfg.detect, dictionary=canvases.dictionary).foreign))
    t["detect"] = time.perf_counter() - t0
    rec["detection"] = {"found": sorted(det.corners), "recovered": det.recovered, "missing": det.missing,
                        "foreign": foreign, "preblur_sigma": round(det.preblur_sigma, 3),
                        "corners": {int(i): np.round(c, 3).tolist() for i, c in det.corners.items()}}
    qa: dict[str, Any] = {}
    rec["qa"] = qa
    rec["timings_ms"] = t
    why = canvases.misattribution(stem, sorted(det.corners), foreign) if canvases is not None and stem else None
    if why:
        rec["reason"] = why
        _ms(t)
        return PairResult(record=rec)
    t0 = time.perf_counter()
    photo_plane = registration_plane(photo, cfg.register.channel)
    try:
        reg = register(registration_plane(source, cfg.register.channel), photo_plane, layout, det, cfg.register)
    except RegistrationError as exc:
        rec["reason"] = str(exc)
        t["register"] = time.perf_counter() - t0
        _ms(t)
        return PairResult(record=rec)
    t["register"] = time.perf_counter() - t0
    rec["register_ms"] = reg.timings_ms
    rec.update(reg.to_json())
    res_all = [v for r in reg.marker_residuals.values() for v in r]
    lo, hi = reg.photo_per_source()
    qa.update({
        "marker_rms_px": round(float(np.sqrt(np.mean(np.square(res_all)))), 4),
        "marker_max_px": round(float(np.sort(res_all)[reg.marker_inliers - 1]), 4),  # largest inlier
        "marker_inliers": reg.marker_inliers,
        "marker_residuals": reg.marker_residuals,
        "ecc_correlation": None if reg.ecc_correlation is None else round(reg.ecc_correlation, 5),
        "ecc_note": reg.ecc_note or None,
        "marker_content_px": None if reg.residual_homography_px is None else round(reg.residual_homography_px, 4),
        "residual_rms_px": None if reg.residual_rms_px is None else round(reg.residual_rms_px, 4),
        "residual_tiles": reg.residual_tiles,
        "photo_px_per_lr_px_min": round(lo * s, 3),
        "photo_px_per_lr_px_max": round(hi * s, 3),
        "anisotropy": round(hi / max(lo, 1e-9), 3),
    })
    if reg.notes:
        qa["notes"] = reg.notes
    if truth is not None:
        qa["truth_error_px"] = {k: round(v, 4) for k, v in dense_error(reg, truth, layout).items()}
    t0 = time.perf_counter()
    hr = np.ascontiguousarray(source[:Hc, :Wc])
    interp = cfg.register.interpolation
    lr0 = warp_to_grid(photo, reg, (Wc // s, Hc // s), scale_matrix(1.0 / s), interp)
    hr_small = cv2.resize(hr, (Wc // s, Hc // s), interpolation=cv2.INTER_AREA) if s > 1 else hr
    t["warp"] = time.perf_counter() - t0
    aligned = None
    if want_aligned:
        aligned = lr0 if s == 1 else warp_to_grid(photo, reg, (Wc, Hc), np.eye(3), interp)
    t0 = time.perf_counter()
    lr, colour = color_fix(lr0, hr_small, cfg.colour)
    t["colour"] = time.perf_counter() - t0
    rec["colour_fix"] = colour
    t0 = time.perf_counter()
    # The shift map runs on the source grid: the LR and the aligned image are samples of the photo
    # through the same map P, so their misalignment (in source px) is the same, and the source grid
    # resolves it s times finer than the LR grid would (at x4, 0.025 LR px is 0.1 source px).
    if aligned is not None:
        aligned_plane = registration_plane(aligned, cfg.register.channel)
    elif s == 1:
        aligned_plane = registration_plane(lr0, cfg.register.channel)
    else:
        aligned_plane = warp_to_grid(photo_plane, reg, (Wc, Hc), np.eye(3), interp)
    q = cfg.qa
    sm = shift_map(registration_plane(hr, cfg.register.channel), aligned_plane, (q.shift_tiles[0], q.shift_tiles[1]),
                   sigma=q.shift_sigma, max_se=q.shift_max_se, max_photometric=q.shift_max_photometric)
    sm["units"] = "source px, measured on the source grid (positive = the photo's content lies right/down)"
    qa["shift_map"] = sm
    qa["shift_p50_px"], qa["shift_p95_px"] = sm["p50"], sm["p95"]
    if truth is not None:
        ts = truth_shift_map(reg, truth, layout, sm)
        sm["truth_dx"], sm["truth_dy"] = ts["dx"], ts["dy"]
        qa["truth_shift_p50_px"], qa["truth_shift_p95_px"] = ts["p50"], ts["p95"]
    psnr, ssim = y_psnr_ssim(lr0, hr_small)
    qa["psnr_y"], qa["ssim_y"] = round(psnr, 3), round(ssim, 4)
    t["qa"] = time.perf_counter() - t0
    _ms(t)
    reason = judge(qa, cfg.qa)
    rec["status"] = "ok" if reason is None else "rejected"
    rec["reason"] = reason
    return PairResult(record=rec, hr=hr if reason is None else None, lr=lr if reason is None else None,
                      aligned=aligned, registration=reg)


def _ms(t: dict[str, float]) -> None:
    for k in list(t):
        t[k] = round(t[k] * 1000, 1)


def load_truth(photo_path: Path) -> dict[str, Any] | None:
    """The simulator truth beside a photo (``<stem>.truth.json``), if any."""
    p = Path(photo_path).with_name(Path(photo_path).stem + ".truth.json")
    return read_json(p, role="truth") if p.is_file() else None
