"""Registration of a canvas photo onto the source image plane.

Three stages, each correcting what the previous one cannot:

1. **Markers**: a homography (photo -> canvas px) from all 16 detected marker corners (ids give
   the correspondences). USAC/RANSAC only rejects a bad corner; the inliers are refitted by
   least squares and every corner's residual is reported.
2. **Content (ECC)**: ``cv2.findTransformECC`` with a homography motion model refines the marker
   estimate on the image content (the source image is the template, so the markers, outside the
   image rectangle, never enter it). Both images are low-passed against moire, and the work runs
   on a reduced grid (about ``ecc_pixels`` template pixels) for speed.
3. **Residual field** (lens distortion a homography cannot model): tile translations between the
   warped photo and the source (one normalised Lucas-Kanade step per tile, all tiles vectorised;
   ill-conditioned tiles dropped) are fitted by a smooth 2-D
   polynomial displacement field ``f(q)`` over source coordinates (degree 3 by default; IRLS with
   Huber weights so a bad tile cannot drag it). Two passes: the second measures what the first
   left, where the tile estimator is least biased (near zero shift).

The final map from a source point ``q`` (source px, pixel centres at integers) to the photo is
``P(q) = H^-1 S (q + f(q))`` with ``S`` the layout's source -> canvas affine and ``H`` the
``photo_to_canvas`` homography. ``warp_to_source`` samples the photo through ``P`` at source
resolution (the photo is first box-downscaled by the largest integer factor that keeps it at least
as fine as the source, so the cubic interpolation never aliases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ConfigError, UserError
from data_capture.canvas import Layout
from data_capture.detect import Detection
from data_capture.geometry import apply_h


class RegistrationError(UserError, ValueError):
    """A photo cannot be registered; the message is the rejection reason stored in the manifest."""


@dataclass
class RegisterConfig:
    """Registration settings."""

    ransac_px: float = 4.0  # corner outlier threshold, canvas px (pre-blurred corners are ~1 px off)
    min_markers: int = 2  # fewer detected markers -> rejected (each gives 4 corners)
    ecc: bool = True
    ecc_pixels: int = 600_000  # template size for ECC (source plane, downscaled)
    ecc_sigma: float = 1.5  # low-pass of both images on the ECC grid, px (moire, noise, JPEG)
    ecc_iterations: int = 100
    ecc_eps: float = 1e-6
    residual: bool = True  # fit the smooth residual field (lens distortion)
    residual_degree: int = 3
    residual_tile: int = 32  # tile side on the ECC grid, px
    channel: str = "green"  # image plane used for ECC and tiles: green | luma (see registration_plane)
    residual_passes: int = 3
    residual_min_corr: float = 0.7  # tiles whose ECC correlation is lower are ignored
    residual_min_tiles: int = 12  # fewer usable tiles (and never fewer than 4 per coefficient): no field, noted
    interpolation: str = "cubic"  # final warp: linear | cubic | lanczos

    def validate(self) -> None:
        if self.interpolation not in ("linear", "cubic", "lanczos"):
            raise ConfigError(f"interpolation '{self.interpolation}' unknown; use linear, cubic or lanczos")
        if not 1 <= self.min_markers <= 4:
            raise ConfigError(f"min_markers {self.min_markers} must be 1..4")
        if not 0 <= self.residual_degree <= 5:
            raise ConfigError(f"residual_degree {self.residual_degree} must be 0..5")
        if self.channel not in ("green", "luma"):
            raise ConfigError(f"channel '{self.channel}' unknown; use green or luma")
        if self.ecc_pixels < 10_000:
            raise ConfigError(f"ecc_pixels {self.ecc_pixels} too small; use >= 10000 (600000 is the default)")


# ---------------------------------------------------------------------------- geometry helpers


def scale_matrix(f: float) -> np.ndarray:
    """Map coordinates of an image to those of it resized by factor ``f`` (half-pixel-centre convention)."""
    return np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1.0]])


def _normalise(H: np.ndarray) -> np.ndarray:
    return H / H[2, 2]


@dataclass
class PolyField:
    """Smooth displacement ``f(q)`` over source coordinates: ``(..., 2)`` source px -> ``(..., 2)`` px.

    Monomials ``u^i v^j`` (``i + j <= degree``) of ``u = 2 q_x / (W-1) - 1``, ``v`` likewise.
    """

    degree: int
    size: tuple[int, int]  # (W, H) of the source
    coef: np.ndarray  # (n_terms, 2)

    def basis(self, q: np.ndarray) -> np.ndarray:
        W, H = self.size
        u = 2 * q[..., 0] / max(W - 1, 1) - 1
        v = 2 * q[..., 1] / max(H - 1, 1) - 1
        return np.stack([u**i * v**j for i in range(self.degree + 1) for j in range(self.degree + 1 - i)], -1)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        return self.basis(q) @ self.coef

    def to_json(self) -> dict[str, Any]:
        return {"model": "polynomial", "degree": self.degree, "size": list(self.size),
                "units": "source px", "coef": np.round(self.coef, 6).tolist()}

    @classmethod
    def fit(cls, q: np.ndarray, d: np.ndarray, w: np.ndarray, degree: int, size: tuple[int, int]) -> PolyField:
        """Weighted IRLS (Huber, 0.1 px) fit of displacements ``d (N, 2)`` at points ``q (N, 2)``."""
        f = cls(degree, size, np.zeros((0, 2)))
        B = f.basis(q)
        wt = w.copy()
        coef = np.zeros((B.shape[1], 2))
        for _ in range(5):
            sw = np.sqrt(wt)[:, None]
            coef = np.linalg.lstsq(B * sw, d * sw, rcond=None)[0]
            r = np.linalg.norm(B @ coef - d, axis=1)
            wt = w * np.minimum(1.0, 0.1 / np.maximum(r, 1e-9))
        f.coef = coef
        return f


@dataclass
class Registration:
    """The photo -> source geometry of one pair and how it was found (JSON via ``to_json``)."""

    photo_to_canvas: np.ndarray  # 3x3, photo px -> canvas px
    source_to_canvas: np.ndarray  # 3x3 affine from the layout
    source_size: tuple[int, int]
    residual: PolyField | None = None
    marker_residuals: dict[int, list[float]] = field(default_factory=dict)  # id -> 4 corner residuals, canvas px
    marker_inliers: int = 0
    marker_homography: np.ndarray | None = None  # before ECC
    ecc_correlation: float | None = None
    ecc_note: str = ""
    residual_homography_px: float | None = None  # max displacement marker-H vs final H over the image, source px
    residual_tiles: int = 0
    residual_rms_px: float | None = None  # RMS of the fitted field over the image, source px
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)  # markers / ecc / residual

    def source_to_photo(self, q: np.ndarray) -> np.ndarray:
        """Photo px of source points ``q (..., 2)``."""
        if self.residual is not None:
            q = q + self.residual(q)
        return apply_h(np.linalg.inv(self.photo_to_canvas) @ self.source_to_canvas, q)

    def photo_per_source(self) -> tuple[float, float]:
        """(min, max) over the image of the photo's linear sampling density, photo px per source px."""
        W, H = self.source_size
        gx, gy = np.meshgrid(np.linspace(0, W - 1, 9), np.linspace(0, H - 1, 9))
        q = np.stack([gx, gy], -1)
        p = self.source_to_photo(q)
        px = self.source_to_photo(q + [1.0, 0.0]) - p
        py = self.source_to_photo(q + [0.0, 1.0]) - p
        s = np.minimum(np.linalg.norm(px, axis=-1), np.linalg.norm(py, axis=-1))
        return float(s.min()), float(np.maximum(np.linalg.norm(px, axis=-1), np.linalg.norm(py, axis=-1)).max())

    def to_json(self) -> dict[str, Any]:
        return {
            "photo_to_canvas": np.round(_normalise(self.photo_to_canvas), 10).tolist(),
            "source_to_canvas": self.source_to_canvas.tolist(),
            "residual_correction": self.residual.to_json() if self.residual is not None else None,
            "marker_homography": None if self.marker_homography is None
            else np.round(_normalise(self.marker_homography), 10).tolist(),
        }


def registration_plane(rgb: np.ndarray, channel: str = "green") -> np.ndarray:
    """The single plane ``(H, W) uint8`` that content registration compares.

    Green by default: on RGB- and BGR-stripe panels the green sub-pixel sits at the pixel centre,
    while red and blue sit 1/3 px either side, so luma would shift with the content's hue (a red
    region's luma centroid moves by up to ~0.2 display px). Green is also the densest Bayer channel.
    """
    import cv2

    if channel == "green":
        return np.ascontiguousarray(rgb[..., 1])
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


# ---------------------------------------------------------------------------- stage 1: markers


def marker_homography(layout: Layout, det: Detection, cfg: RegisterConfig) -> Registration:
    """Least-squares homography from all detected marker corners, with RANSAC outlier rejection."""
    import cv2

    if len(det.corners) < cfg.min_markers:
        why = f"only {len(det.corners)} of {len(layout.markers)} markers detected (need {cfg.min_markers})"
        if det.foreign:
            why += f"; found marker ids {det.foreign} that belong to another canvas (wrong photo?)"
        raise RegistrationError(why)
    ids = sorted(det.corners)
    photo = np.concatenate([det.corners[i] for i in ids])
    canvas = np.concatenate([np.asarray(layout.markers[i], np.float64) for i in ids])
    if len(ids) >= 2:
        H, mask = cv2.findHomography(photo, canvas, cv2.RANSAC, cfg.ransac_px, maxIters=2000, confidence=0.999)
    else:
        H, mask = cv2.findHomography(photo, canvas, 0)
        mask = np.ones((4, 1), np.uint8)
    if H is None:
        raise RegistrationError("marker corners are degenerate (collinear or coincident); retake the photo")
    inl = mask.ravel().astype(bool)
    if inl.sum() >= 4:
        H, _ = cv2.findHomography(photo[inl], canvas[inl], 0)  # plain least squares on the inliers
    res = np.linalg.norm(apply_h(H, photo) - canvas, axis=1)
    reg = Registration(
        photo_to_canvas=_normalise(H),
        source_to_canvas=layout.S,
        source_size=tuple(layout.source_size),  # type: ignore[arg-type]
        marker_residuals={i: np.round(res[4 * k : 4 * k + 4], 4).tolist() for k, i in enumerate(ids)},
        marker_inliers=int(inl.sum()),
        marker_homography=_normalise(H),
    )
    return reg


# ---------------------------------------------------------------------------- stage 2: ECC


@dataclass
class _Work:
    """Images on the reduced grids used by ECC and the residual fit."""

    tmpl: np.ndarray  # (h, w) float32 source plane (green) on the ECC grid, low-passed
    photo: np.ndarray  # (h', w') float32 photo plane, box-downscaled by k, low-passed
    E: np.ndarray  # source px -> ECC grid px
    K: np.ndarray  # photo px -> reduced photo px


def _prepare(src_gray: np.ndarray, photo_gray: np.ndarray, reg: Registration, cfg: RegisterConfig) -> _Work:
    import cv2

    H, W = src_gray.shape
    e = min(1.0, float(np.sqrt(cfg.ecc_pixels / (W * H))))
    tw, th = max(16, round(W * e)), max(16, round(H * e))
    tmpl = cv2.resize(src_gray, (tw, th), interpolation=cv2.INTER_AREA) if (tw, th) != (W, H) else src_gray
    E = np.diag([tw / W, th / H, 1.0])
    E[0, 2], E[1, 2] = 0.5 * tw / W - 0.5, 0.5 * th / H - 0.5
    # photo px per ECC-grid px at the image centre decides the integer box-downscale of the photo
    centre = np.array([[W / 2, H / 2]])
    a = reg.source_to_photo(centre)
    b = reg.source_to_photo(centre + [1.0 / e, 0])
    ratio = float(np.linalg.norm(b - a))
    k = max(1, int(ratio))
    ph = photo_gray
    if k > 1:
        ph = cv2.resize(photo_gray, (photo_gray.shape[1] // k, photo_gray.shape[0] // k), interpolation=cv2.INTER_AREA)
    K = np.diag([ph.shape[1] / photo_gray.shape[1], ph.shape[0] / photo_gray.shape[0], 1.0])
    K[0, 2], K[1, 2] = 0.5 * K[0, 0] - 0.5, 0.5 * K[1, 1] - 0.5
    s = cfg.ecc_sigma
    tmpl = cv2.GaussianBlur(tmpl.astype(np.float32), (0, 0), s)
    # the photo is finer than the grid by ratio / k: blur it proportionally so both carry the same band
    ph = cv2.GaussianBlur(ph.astype(np.float32), (0, 0), s * max(ratio / k, 1.0))
    return _Work(tmpl, ph, E, K)


def _grid_to_photo(reg: Registration, w: _Work) -> np.ndarray:
    """3x3: ECC grid px -> reduced photo px, for the current homography."""
    return _normalise(w.K @ np.linalg.inv(reg.photo_to_canvas) @ reg.source_to_canvas @ np.linalg.inv(w.E))


def refine_ecc(reg: Registration, w: _Work, cfg: RegisterConfig) -> None:
    """Refine ``reg.photo_to_canvas`` in place by ECC on the content."""
    import cv2

    G: np.ndarray = _grid_to_photo(reg, w).astype(np.float32)
    mask = np.zeros(w.tmpl.shape, np.uint8)
    b = 4  # the template's own border: reflection effects of the low-pass
    mask[b:-b, b:-b] = 255
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.ecc_iterations, cfg.ecc_eps)
    try:
        rho, G = cv2.findTransformECCWithMask(
            w.tmpl, w.photo, mask, np.full(w.photo.shape, 255, np.uint8), G, cv2.MOTION_HOMOGRAPHY, crit, 1
        )
    except cv2.error as exc:
        reg.ecc_note = f"ECC did not converge ({str(exc).strip().splitlines()[-1][:120]}); kept the marker homography"
        return
    G = G.astype(np.float64)
    # grid->photo' = K P^-1 S E^-1  =>  P = S E^-1 G^-1 K
    P = reg.source_to_canvas @ np.linalg.inv(w.E) @ np.linalg.inv(G) @ w.K
    reg.photo_to_canvas = _normalise(P)
    reg.ecc_correlation = float(rho)


# ---------------------------------------------------------------------------- stage 3: residual field


def source_maps(reg: Registration, size: tuple[int, int], to_grid: np.ndarray, from_src: np.ndarray,
                step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps ``(h, w) float32`` for an output grid of ``size = (w, h)``.

    Output pixel ``g`` samples the image at ``from_src @ P(to_grid^-1 g)``: ``to_grid`` maps source
    px to output px, ``from_src`` photo px to the sampled image's px. The map is evaluated exactly
    every ``step`` px and bilinearly interpolated between (the map is smooth: the interpolation
    error of a homography plus a cubic field over 8 px is far below 0.001 px), which makes this
    ~50x cheaper than evaluating it per pixel.
    """
    import cv2

    w, h = size
    nx, ny = (w - 1) // step + 2, (h - 1) // step + 2
    gx, gy = np.meshgrid(np.arange(nx) * float(step), np.arange(ny) * float(step))
    q = apply_h(np.linalg.inv(to_grid), np.stack([gx, gy], -1))
    p = apply_h(from_src, reg.source_to_photo(q)).astype(np.float32)
    # coarse node i sits at output px i * step: interpolate it with remap at fractional node indices
    xs = np.arange(w, dtype=np.float32) / step
    ys = np.arange(h, dtype=np.float32) / step
    mapx = cv2.remap(p[..., 0], *np.meshgrid(xs, ys), cv2.INTER_LINEAR)
    mapy = cv2.remap(p[..., 1], *np.meshgrid(xs, ys), cv2.INTER_LINEAR)
    return mapx, mapy


def _warp_reduced(reg: Registration, w: _Work) -> np.ndarray:
    """The reduced photo resampled onto the ECC grid through the current map (incl. residual field)."""
    import cv2

    th, tw = w.tmpl.shape
    mx, my = source_maps(reg, (tw, th), w.E, w.K)
    return cv2.remap(w.photo, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def well_conditioned(tile: np.ndarray, min_ratio: float = 0.1, min_grad: float = 1.0) -> bool:
    """Whether a tile constrains a 2-D shift: its gradient structure tensor has two strong eigenvalues.

    Tiles with a single edge direction (the aperture problem) let a translation estimate slide
    along the edge; flat tiles have no gradient at all. Both give confident but wrong shifts.
    """
    gy, gx = np.gradient(tile.astype(np.float32))
    a, b, c = float((gx * gx).mean()), float((gx * gy).mean()), float((gy * gy).mean())
    tr, det = a + c, a * c - b * b
    disc = max(tr * tr / 4 - det, 0.0) ** 0.5
    lo, hi = tr / 2 - disc, tr / 2 + disc
    return hi > min_grad**2 and lo > min_ratio * hi


def tile_shifts(tmpl: np.ndarray, warped: np.ndarray, tile: int, min_corr: float,
                min_ratio: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tile translation ``t`` with ``warped(x + t) ~ tmpl(x)``, all tiles at once.

    One Lucas-Kanade (Gauss-Newton) step per tile on zero-mean, unit-variance tiles (so, like ECC,
    it ignores per-tile gain and offset): ``t = A^-1 b`` with ``A`` the tile's gradient structure
    tensor and ``b = sum(grad * (tmpl - warped))``. The shifts left after ECC are a fraction of a
    pixel on low-passed images, where one step is accurate; the passes of ``fit_residual`` iterate.
    Tiles whose structure tensor is ill-conditioned (flat, or one edge direction: the aperture
    problem) or whose correlation is below ``min_corr`` are dropped.

    Returns (centres (N, 2) grid px, shifts (N, 2) grid px, correlations (N,)).
    """
    th, tw = tmpl.shape
    pad = 4
    ny, nx = (th - 2 * pad) // tile, (tw - 2 * pad) // tile
    if ny < 1 or nx < 1:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    sl = (slice(pad, pad + ny * tile), slice(pad, pad + nx * tile))
    grad = np.gradient(warped.astype(np.float32))  # (d/dy, d/dx)
    gy, gx = np.asarray(grad[0]), np.asarray(grad[1])

    def tiles(a: np.ndarray) -> np.ndarray:  # (ny, nx, tile*tile)
        return a[sl].reshape(ny, tile, nx, tile).transpose(0, 2, 1, 3).reshape(ny, nx, -1)

    T, Iw, X, Y = tiles(tmpl.astype(np.float32)), tiles(warped.astype(np.float32)), tiles(gx), tiles(gy)
    T = T - T.mean(-1, keepdims=True)
    Iw = Iw - Iw.mean(-1, keepdims=True)
    st, si = T.std(-1, keepdims=True) + 1e-6, Iw.std(-1, keepdims=True) + 1e-6
    T, Iw, X, Y = T / st, Iw / si, X / si, Y / si
    corr = (T * Iw).mean(-1)
    # scale the template to the warped tile's contrast (the ECC projection) before differencing
    e = T * corr[..., None] - Iw
    a, b, c = (X * X).mean(-1), (X * Y).mean(-1), (Y * Y).mean(-1)
    bx, by = (X * e).mean(-1), (Y * e).mean(-1)
    det = a * c - b * b
    tr = a + c
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    lo, hi = tr / 2 - disc, tr / 2 + disc
    raw_std = tiles(tmpl.astype(np.float32)).std(-1)
    ok = (lo > min_ratio * hi) & (corr >= min_corr) & (raw_std > 1.0) & (det > 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = (c * bx - b * by) / det
        ty = (a * by - b * bx) / det
    ok &= (np.abs(tx) < tile / 4) & (np.abs(ty) < tile / 4)
    jj, ii = np.nonzero(ok)
    centres = np.stack([pad + ii * tile + (tile - 1) / 2, pad + jj * tile + (tile - 1) / 2], -1).astype(np.float64)
    shifts = np.stack([tx[ok], ty[ok]], -1).astype(np.float64)
    return centres.reshape(-1, 2), shifts.reshape(-1, 2), corr[ok].astype(np.float64)


def fit_residual(reg: Registration, w: _Work, cfg: RegisterConfig) -> None:
    """Fit the smooth residual displacement field in place (``reg.residual``)."""
    Einv = np.linalg.inv(w.E)
    scale = 1.0 / w.E[0, 0]  # source px per grid px
    for _ in range(cfg.residual_passes):
        warped = _warp_reduced(reg, w)
        c, t, rho = tile_shifts(w.tmpl, warped, cfg.residual_tile, cfg.residual_min_corr)
        reg.residual_tiles = len(c)
        # >= 4 tiles per coefficient: with fewer, tile noise leaks into the field (measured: a
        # degree-3 field from ~20 tiles made 128 px sources worse than the homography alone)
        if len(c) < max(cfg.residual_min_tiles, 4 * (cfg.residual_degree + 1) * (cfg.residual_degree + 2) // 2):
            reg.notes.append(f"residual field skipped: only {len(c)} textured tiles")
            return
        q = apply_h(Einv, c)
        # a tile shift t (grid px) at q means the content sits at q + t: add it to the field
        d = t * scale
        if reg.residual is not None:
            d = d + reg.residual(q)
        reg.residual = PolyField.fit(q, d, rho, cfg.residual_degree, reg.source_size)
    if reg.residual is None:  # residual_passes = 0: no field was fitted, nothing to measure
        return
    W, H = reg.source_size
    gx, gy = np.meshgrid(np.linspace(0, W - 1, 16), np.linspace(0, H - 1, 16))
    reg.residual_rms_px = float(np.sqrt((reg.residual(np.stack([gx, gy], -1)) ** 2).sum(-1).mean()))


# ---------------------------------------------------------------------------- driver and warp


def register(src_gray: np.ndarray, photo_gray: np.ndarray, layout: Layout, det: Detection,
             cfg: RegisterConfig | None = None) -> Registration:
    """Markers -> ECC -> residual field.

    Args:
        src_gray: ``(H, W) uint8`` registration plane of the source (``registration_plane``).
        photo_gray: ``(Hp, Wp) uint8`` the same plane of the photo.
        layout: the canvas layout; det: its detected markers; cfg: settings.

    Raises:
        RegistrationError: too few markers or degenerate corners (the message is the reason).
    """
    import time

    cfg = cfg or RegisterConfig()
    t0 = time.perf_counter()
    reg = marker_homography(layout, det, cfg)
    reg.timings_ms["markers"] = round((time.perf_counter() - t0) * 1000, 1)
    if not (cfg.ecc or cfg.residual):
        return reg
    t0 = time.perf_counter()
    w = _prepare(src_gray, photo_gray, reg, cfg)
    if cfg.ecc:
        refine_ecc(reg, w, cfg)
    reg.timings_ms["ecc"] = round((time.perf_counter() - t0) * 1000, 1)  # incl. preparing the grids
    t0 = time.perf_counter()
    if cfg.residual:
        fit_residual(reg, w, cfg)
    reg.timings_ms["residual"] = round((time.perf_counter() - t0) * 1000, 1)
    # how far the content moved the marker estimate, over the image (a held-out consistency check)
    W, H = reg.source_size
    q = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1], [(W - 1) / 2, (H - 1) / 2]], np.float64)
    Sq = apply_h(reg.source_to_canvas, q)
    a = apply_h(reg.marker_homography @ np.linalg.inv(reg.photo_to_canvas), Sq)  # final photo pt -> marker canvas
    reg.residual_homography_px = float(np.linalg.norm(a - Sq, axis=1).max() / reg.source_to_canvas[0, 0])
    return reg


_INTERP = {"linear": 1, "cubic": 2, "lanczos": 4}  # cv2.INTER_* values


def warp_to_grid(photo: np.ndarray, reg: Registration, size: tuple[int, int], to_grid: np.ndarray,
                 interpolation: str = "cubic") -> np.ndarray:
    """Resample the photo ``(Hp, Wp, C)`` onto an output grid ``size = (w, h)`` of the source plane.

    ``to_grid`` maps source px to output px (identity for the source grid, ``scale_matrix(1/s)``
    for the LR grid, whose pixel ``j`` is centred on source px ``s*j + (s-1)/2``). Anti-aliasing:
    the photo is first box-averaged by the largest integer ``k`` that keeps it at least as fine as
    the output grid (``cv2.INTER_AREA``), so the interpolating kernel never skips photo pixels.
    """
    import cv2

    w, h = size
    lo, _ = reg.photo_per_source()
    k = max(1, int(lo / to_grid[0, 0]))
    img = photo
    Kp = np.eye(3)
    if k > 1:
        img = cv2.resize(photo, (photo.shape[1] // k, photo.shape[0] // k), interpolation=cv2.INTER_AREA)
        Kp = np.diag([img.shape[1] / photo.shape[1], img.shape[0] / photo.shape[0], 1.0])
        Kp[0, 2], Kp[1, 2] = 0.5 * Kp[0, 0] - 0.5, 0.5 * Kp[1, 1] - 0.5
    if reg.residual is None:
        M = Kp @ np.linalg.inv(reg.photo_to_canvas) @ reg.source_to_canvas @ np.linalg.inv(to_grid)
        return cv2.warpPerspective(img, M, (w, h), flags=_INTERP[interpolation] | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REPLICATE)
    mx, my = source_maps(reg, (w, h), to_grid, Kp)
    return cv2.remap(img, mx, my, _INTERP[interpolation], borderMode=cv2.BORDER_REPLICATE)


def warp_to_source(photo: np.ndarray, reg: Registration, interpolation: str = "cubic") -> np.ndarray:
    """The photo resampled onto the source grid ``(H, W, C)`` (``reg.source_size``)."""
    return warp_to_grid(photo, reg, reg.source_size, np.eye(3), interpolation)
