"""ArUco marker detection on a photo of a canvas: pre-blur, sub-pixel corners, recovery of missed markers.

A phone photo of a screen carries moire from the display's sub-pixel stripes beating against the
sensor's Bayer grid; the raw SUBPIX corner error grows to several pixels (``docs/capture-reference.md``,
"Registration: measured on 2 CPU cores").
A Gaussian pre-blur (sigma ~3 px on a 12 MP photo) before detection removes most of it. Corners
only need to land inside the basin of the content (ECC) refinement that follows, so detection
trades a little corner accuracy for robustness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError
from data_capture.canvas import Layout


@dataclass
class DetectConfig:
    """Marker detection settings."""

    preblur_sigma: float = -1.0  # Gaussian sigma in photo px before detection; -1 = 3 px per 4032 px of photo width
    max_side: int = 2048  # detect on the photo box-downscaled by an integer so its longer side fits (0 = full res)
    min_perimeter_rate: float = 0.03  # minimum marker perimeter as a fraction of the photo's longer side
    subpix_window: int = 7  # cornerRefinementWinSize (OpenCV also caps it at 0.3 x module size)
    adaptive_win_max: int = 53  # adaptiveThreshWinSizeMax: raised for large markers (>= 400 px)
    recover_missing: bool = True  # refineDetectedMarkers against the layout's board

    def validate(self) -> None:
        if not 0 < self.min_perimeter_rate < 1:
            raise ConfigError(f"min_perimeter_rate {self.min_perimeter_rate} must lie in (0, 1); 0.03 is typical")
        if self.subpix_window < 1:
            raise ConfigError(f"subpix_window {self.subpix_window} must be >= 1")


@dataclass
class Detection:
    """Markers found in a photo.

    ``corners`` maps marker id -> ``(4, 2) float64`` photo px (clockwise from top-left). ``foreign``
    lists ids found that the layout does not contain; ``recovered`` the ids found only by the
    board-based recovery; ``missing`` the layout ids not found.
    """

    corners: dict[int, np.ndarray]
    foreign: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    preblur_sigma: float = 0.0


def _detector(dictionary: str, cfg: DetectConfig):
    import cv2

    dic = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary))
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    params.cornerRefinementWinSize = int(cfg.subpix_window)
    params.minMarkerPerimeterRate = float(cfg.min_perimeter_rate)
    params.adaptiveThreshWinSizeMax = int(cfg.adaptive_win_max)
    refine = cv2.aruco.RefineParameters()
    return dic, cv2.aruco.ArucoDetector(dic, params, refine)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H, W) uint8`` luma (BT.601, OpenCV's weights)."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def detect_markers(gray: np.ndarray, layout: Layout, cfg: DetectConfig | None = None, *,
                   dictionary: str | None = None) -> Detection:
    """Find the layout's markers in a photo.

    Args:
        gray: ``(H, W) uint8`` photo luma.
        layout: the canvas layout (dictionary, marker ids, corner coordinates).
        cfg: detection settings.
        dictionary: decode with this dictionary instead of the layout's (a larger one of the same
            marker size, to name the canvas whose ids lie beyond the layout's dictionary).
    """

    cfg = cfg or DetectConfig()
    sigma = cfg.preblur_sigma if cfg.preblur_sigma >= 0 else 3.0 * max(gray.shape) / 4032.0
    f = 1
    if cfg.max_side > 0 and max(gray.shape) > cfg.max_side:
        f = int(np.ceil(max(gray.shape) / cfg.max_side))
    dic_name = dictionary or layout.dictionary
    det = _detect_at(gray, layout, cfg, sigma, f, dic_name)
    if f > 1 and det.missing:
        # the reduced image lost a marker (small or oblique): retry at full resolution
        full = _detect_at(gray, layout, cfg, sigma, 1, dic_name)
        if len(full.corners) > len(det.corners):
            det = full
    return det


def _detect_at(gray: np.ndarray, layout: Layout, cfg: DetectConfig, sigma: float, f: int,
               dictionary: str) -> Detection:
    """Detection on ``gray`` box-downscaled by ``f``; corners returned in full-resolution px.

    The box downscale is itself a low-pass (it averages the moire), so the remaining pre-blur is
    ``sigma / f`` on the reduced image: the same physical blur at 1/f^2 of the cost.
    """
    import cv2

    img = gray
    if f > 1:
        img = cv2.resize(gray, (gray.shape[1] // f, gray.shape[0] // f), interpolation=cv2.INTER_AREA)
    sig = sigma / f
    if sig > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sig)
    dic, det = _detector(dictionary, cfg)
    corners, ids, rejected = det.detectMarkers(img)
    found: dict[int, np.ndarray] = {}
    foreign: list[int] = []
    wanted = set(layout.markers)
    if ids is not None:
        for c, i in zip(corners, ids.ravel(), strict=True):
            i = int(i)
            if i in wanted:
                if i in found:  # the same id twice: ambiguous, keep neither
                    found[i] = None  # type: ignore[assignment]
                else:
                    found[i] = np.asarray(c, np.float64).reshape(4, 2)
            else:
                foreign.append(i)
    found = {i: c for i, c in found.items() if c is not None}
    recovered: list[int] = []
    if cfg.recover_missing and 1 <= len(found) < len(wanted) and len(rejected):
        obj_ids, obj = layout.object_points()
        board = cv2.aruco.Board(
            [np.hstack([o, np.zeros((4, 1))]).astype(np.float32) for o in obj], dic, obj_ids.reshape(-1, 1)
        )
        det_c = [found[i].reshape(1, 4, 2).astype(np.float32) for i in found]
        det_i = np.array(list(found), np.int32).reshape(-1, 1)
        new_c, new_i, _, _ = det.refineDetectedMarkers(img, board, det_c, det_i, rejected)
        if new_i is not None:
            for c, i in zip(new_c, np.asarray(new_i).ravel(), strict=True):
                i = int(i)
                if i in wanted and i not in found:
                    # recovered candidates are the raw contour corners: refine them like the others
                    pts = np.asarray(c, np.float32).reshape(-1, 1, 2)
                    win = int(cfg.subpix_window)
                    cv2.cornerSubPix(
                        img, pts, (win, win), (-1, -1),
                        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 0.01),
                    )
                    found[i] = pts.reshape(4, 2).astype(np.float64)
                    recovered.append(i)
    if f > 1:  # reduced px -> full px (half-pixel-centre convention of INTER_AREA)
        found = {i: (c + 0.5) * f - 0.5 for i, c in found.items()}
    missing = sorted(wanted - set(found))
    return Detection(corners=found, foreign=sorted(set(foreign)), recovered=recovered, missing=missing,
                     preblur_sigma=sigma)
