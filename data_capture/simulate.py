"""Simulated phone photographs of a canvas shown on a screen, with the ground-truth geometry.

Image formation, in order (after Liu, Shu & Wu, arXiv 1804.03809, "demoireing" data synthesis):

1. display: each canvas pixel lights an RGB vertical-stripe triplet (R, G, B thirds of the cell,
   centred on the pixel so the luminance centroid stays on the pixel centre; the per-channel
   offsets of -1/3 and +1/3 px remain as on a real stripe panel) with a vertical fill factor
   (black matrix between rows); sRGB values are linearised (gamma 2.2) to light.
2. geometry: a projective map from canvas to the ideal (pinhole) photo plane followed by radial
   lens distortion. Rendering inverts it per photo sample: for a photo point ``p_d`` the ideal
   point is ``p_u = c + (p_d - c) (1 + k1 r^2 + k2 r^4)``, ``r = |p_d - c| / r0`` with ``c`` the
   photo centre and ``r0`` its half diagonal; the canvas point is ``H^-1 p_u``.
3. optics and sensor: ``ss x ss`` supersampling per photo pixel (so the stripe pattern is
   resolved before the sensor aliases it), Gaussian lens blur, pixel-area integration, vignetting
   ``1 - v r^2``, a 3x3 colour matrix with white-balance gains, RGGB Bayer sampling,
   Poisson-Gaussian noise, demosaicing (OpenCV edge-aware), gamma, JPEG.

The truth file ``<stem>.truth.json`` stores ``canvas_to_ideal`` (H), the distortion, and the
preset; ``truth_photo_to_canvas`` evaluates the exact photo -> canvas map from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import from_dict, to_dict
from core.errors import ConfigError, MissingFileError, did_you_mean
from data_capture.geometry import apply_h
from data_capture.imageio import read_image, read_json, write_image, write_json


@dataclass
class SimConfig:
    """Simulator parameters; ranges are sampled uniformly per photo from the seed."""

    photo_width: int = 4032
    photo_height: int = 3024
    fill: float = 0.8  # fraction of the photo width the canvas spans (before tilt)
    tilt: float = 0.04  # max corner displacement of the projected canvas, fraction of its size
    rotation_deg: float = 2.0  # max in-plane rotation
    k1: float = 0.002  # max |radial distortion| coefficient (sign random); 0.002 ~ 1 % at the corner
    k2: float = 0.0
    # lens blur range, photo px: phone lenses focused on a screen are sharp; with sigma <= 0.5 the
    # stripe pattern (0.75 cycles/px at 1.34 photo px per display px) survives to the Bayer
    # sampling and aliases into visible colour moire
    blur_sigma: tuple[float, float] = (0.3, 0.5)
    vignetting: float = 0.2  # light fall-off at the frame corner (fraction)
    colour_jitter: float = 0.05  # off-diagonal / gain jitter of the colour matrix
    noise_read: float = 0.002  # read noise sigma, linear light in [0, 1]
    noise_shot: float = 0.004  # shot noise scale: variance = shot * signal
    jpeg_quality: int = 92
    subpixels: bool = True  # RGB stripe display mosaic (the moire source)
    row_fill: float = 0.8  # vertical fill factor of a display pixel
    supersample: int = 2
    exposure: float = 0.9  # scene brightness on the sensor (white canvas -> 0.9)

    def validate(self) -> None:
        if self.photo_width < 64 or self.photo_height < 64:
            raise ConfigError(f"photo size {self.photo_width}x{self.photo_height} too small; use >= 64 px")
        if not 0.1 <= self.fill <= 1.0:
            raise ConfigError(f"fill {self.fill} outside [0.1, 1]")
        if not 1 <= self.supersample <= 4:
            raise ConfigError(f"supersample {self.supersample} outside 1..4")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality {self.jpeg_quality} outside 1..100")


PRESETS: dict[str, dict[str, Any]] = {
    "clean": dict(tilt=0.0, rotation_deg=0.0, k1=0.0, blur_sigma=(0.5, 0.5), vignetting=0.0, colour_jitter=0.0,
                  noise_read=0.0, noise_shot=0.0, jpeg_quality=100, subpixels=False, row_fill=1.0),
    "mild": dict(tilt=0.02, rotation_deg=1.0, k1=0.001, blur_sigma=(0.5, 0.7), vignetting=0.1,
                 colour_jitter=0.03, noise_read=0.001, noise_shot=0.002, jpeg_quality=95),
    "typical": {},
    "hard": dict(fill=0.75, tilt=0.12, rotation_deg=6.0, k1=0.005, k2=0.002, blur_sigma=(0.25, 0.6),
                 vignetting=0.35, colour_jitter=0.1, noise_read=0.004, noise_shot=0.01, jpeg_quality=80),
}


def preset_config(preset: str, **overrides: Any) -> SimConfig:
    """The ``SimConfig`` of a named preset (clean, mild, typical, hard) with overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown simulator preset '{preset}'{did_you_mean(preset, PRESETS)}; choose one of {', '.join(PRESETS)}")
    return from_dict(SimConfig, {**PRESETS[preset], **overrides}, where=f"preset {preset}")


def sample_truth(canvas_size: tuple[int, int], cfg: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Draw the photo geometry: canvas->ideal homography and radial distortion (JSON-ready)."""
    import cv2

    Wc, Hc = canvas_size
    Wp, Hp = cfg.photo_width, cfg.photo_height
    scale = min(cfg.fill * Wp / Wc, cfg.fill * Hp / Hc)
    w, h = Wc * scale, Hc * scale
    ang = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    quad = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    quad = quad + rng.uniform(-1, 1, (4, 2)) * cfg.tilt * np.array([w, h])
    quad = quad @ rot.T + np.array([(Wp - 1) / 2, (Hp - 1) / 2])
    src = np.array([[-0.5, -0.5], [Wc - 0.5, -0.5], [Wc - 0.5, Hc - 0.5], [-0.5, Hc - 0.5]])
    H = cv2.getPerspectiveTransform(src.astype(np.float32), quad.astype(np.float32)).astype(np.float64)
    sign = rng.choice([-1.0, 1.0])
    return {
        "canvas_to_ideal": H.tolist(),
        "distortion": {
            "model": "radial-inverse",  # p_u = c + (p_d - c)(1 + k1 r^2 + k2 r^4), r = |p_d - c| / r0
            "centre": [(Wp - 1) / 2, (Hp - 1) / 2],
            "r0": float(np.hypot(Wp, Hp) / 2),
            "k1": float(sign * rng.uniform(0.5, 1.0) * cfg.k1),
            "k2": float(sign * rng.uniform(0.5, 1.0) * cfg.k2),
        },
        "blur_sigma": float(rng.uniform(*cfg.blur_sigma)),
        "photo_size": [Wp, Hp],
        "canvas_size": [Wc, Hc],
    }


def undistort_points(pts: np.ndarray, dist: dict[str, Any]) -> np.ndarray:
    """Photo (distorted) points ``(..., 2)`` -> ideal pinhole points, exact (the model's direction)."""
    c = np.asarray(dist["centre"], np.float64)
    d = pts - c
    r2 = (d**2).sum(-1, keepdims=True) / float(dist["r0"]) ** 2
    return c + d * (1 + float(dist["k1"]) * r2 + float(dist["k2"]) * r2**2)


def truth_photo_to_canvas(truth: dict[str, Any], pts: np.ndarray) -> np.ndarray:
    """The exact photo -> canvas map of a simulated photo, for points ``(..., 2)`` in photo px."""
    Hinv = np.linalg.inv(np.asarray(truth["canvas_to_ideal"], np.float64))
    return apply_h(Hinv, undistort_points(np.asarray(pts, np.float64), truth["distortion"]))


def _box_overlap(f: np.ndarray, lo: float, hi: float, w: float) -> np.ndarray:
    """Fraction of the window ``[f - w/2, f + w/2]`` covered by the period-1 interval ``[lo, hi)``.

    This is the stripe indicator box-filtered over a sample's footprint ``w`` (canvas px): point
    sampling the hard-edged stripes would alias their harmonics into bands that a real lens never
    produces; the sensor's own aliasing (the real moire) is kept by the Bayer sampling later.
    """
    acc = np.zeros_like(f)
    for k in (-1.0, 0.0, 1.0):
        acc += np.clip(np.minimum(f + w / 2, hi + k) - np.maximum(f - w / 2, lo + k), 0, None)
    return acc / w


def _display_radiance(canvas: np.ndarray, cx: np.ndarray, cy: np.ndarray, cfg: SimConfig, footprint: float) -> np.ndarray:
    """Linear light of the screen at canvas points (cx, cy) ``(h, w)``: ``(h, w, 3) float32``.

    ``footprint`` is the spacing of the samples in canvas px (for the stripe prefilter).
    """
    import cv2

    lin = (canvas.astype(np.float32) / 255.0) ** 2.2
    # nearest canvas pixel: the display shows each pixel as a flat cell
    out = np.asarray(cv2.remap(lin, cx, cy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)),
                     np.float32)
    if cfg.subpixels:
        fx = cx - np.floor(cx + 0.5)  # in [-0.5, 0.5): position inside the cell
        fy = cy - np.floor(cy + 0.5)
        w = float(max(footprint, 1e-3))
        row = _box_overlap(fy, -cfg.row_fill / 2, cfg.row_fill / 2, w) / cfg.row_fill
        # three stripes of width 1/3 each; x3 keeps the cell's mean light equal to the pixel value
        for ch, (lo, hi) in enumerate([(-0.5, -1 / 6), (-1 / 6, 1 / 6), (1 / 6, 0.5)]):
            out[..., ch] *= _box_overlap(fx, lo, hi, w) * 3.0 * row
    return out


def render_photo(canvas: np.ndarray, truth: dict[str, Any], cfg: SimConfig, rng: np.random.Generator,
                 *, rows_per_band: int = 256) -> np.ndarray:
    """Render the photo ``(Hp, Wp, 3) uint8`` (before JPEG) of ``canvas`` under ``truth``.

    Processed in horizontal bands (with a blur margin) to bound memory at 12 MP.
    """
    import cv2

    Wp, Hp = truth["photo_size"]
    ss = cfg.supersample
    Hinv = np.linalg.inv(np.asarray(truth["canvas_to_ideal"], np.float64))
    sigma = truth["blur_sigma"] * ss
    pad = int(np.ceil(3 * sigma / ss)) + 1
    xs = (np.arange(Wp * ss) + 0.5) / ss - 0.5  # supersample centres in photo px
    # sample spacing in canvas px: 1 / (photo px per canvas px x ss), from the map's mean scale
    photo_per_canvas = np.sqrt(abs(np.linalg.det(np.asarray(truth["canvas_to_ideal"])[:2, :2])))
    footprint = 1.0 / (photo_per_canvas * ss)
    light = np.empty((Hp, Wp, 3), np.float32)
    for y0 in range(0, Hp, rows_per_band):
        y1 = min(Hp, y0 + rows_per_band)
        a, b = max(0, y0 - pad), min(Hp, y1 + pad)
        ys = (np.arange(a * ss, b * ss) + 0.5) / ss - 0.5
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx, gy], -1)
        cpts = apply_h(Hinv, undistort_points(pts, truth["distortion"])).astype(np.float32)
        band = _display_radiance(canvas, cpts[..., 0], cpts[..., 1], cfg, footprint)
        band = cv2.GaussianBlur(band, (0, 0), sigma)
        band = cv2.resize(band, (Wp, b - a), interpolation=cv2.INTER_AREA)  # pixel-area integration
        light[y0:y1] = band[y0 - a : y1 - a]
    # vignetting (radial fall-off from the optical centre) and exposure
    yy, xx = np.mgrid[0:Hp, 0:Wp].astype(np.float32)
    r2 = ((xx - (Wp - 1) / 2) ** 2 + (yy - (Hp - 1) / 2) ** 2) / ((Wp / 2) ** 2 + (Hp / 2) ** 2)
    light *= (cfg.exposure * (1 - cfg.vignetting * r2))[..., None]
    M = np.eye(3) + rng.uniform(-1, 1, (3, 3)) * cfg.colour_jitter
    M /= M.sum(1, keepdims=True)  # rows sum to 1: white stays white before the gains
    gains = 1 + rng.uniform(-1, 1, 3) * cfg.colour_jitter
    light = cv2.transform(light, (M * gains[:, None]).astype(np.float32))
    # RGGB Bayer sampling
    raw = np.empty((Hp, Wp), np.float32)
    raw[0::2, 0::2] = light[0::2, 0::2, 0]
    raw[0::2, 1::2] = light[0::2, 1::2, 1]
    raw[1::2, 0::2] = light[1::2, 0::2, 1]
    raw[1::2, 1::2] = light[1::2, 1::2, 2]
    if cfg.noise_shot > 0 or cfg.noise_read > 0:
        std = np.sqrt(np.clip(raw, 0, None) * cfg.noise_shot + cfg.noise_read**2)
        raw = raw + rng.standard_normal(raw.shape, dtype=np.float32) * std
    raw16 = (np.clip(raw, 0, 1) * 65535 + 0.5).astype(np.uint16)
    # OpenCV names Bayer patterns by the 2x2 block starting at (1, 1): an RGGB sensor is "BG"
    rgb = cv2.demosaicing(raw16, cv2.COLOR_BayerBG2RGB_EA).astype(np.float32) / 65535.0
    rgb = np.clip(rgb, 0, 1) ** (1 / 2.2)
    return (rgb * 255 + 0.5).astype(np.uint8)


def simulate_photo(canvas: np.ndarray, cfg: SimConfig, seed: int, *, jpeg: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Photo ``(Hp, Wp, 3) uint8`` and its truth dict for one canvas.

    With ``jpeg`` the photo is returned after a JPEG round trip at ``cfg.jpeg_quality``; the folder
    writer instead stores the pre-JPEG photo once as a JPEG file of that quality (same result).
    """
    rng = np.random.default_rng(seed)
    truth = sample_truth((canvas.shape[1], canvas.shape[0]), cfg, rng)
    photo = render_photo(canvas, truth, cfg, rng)
    if jpeg and cfg.jpeg_quality < 100:
        photo = jpeg_roundtrip(photo, cfg.jpeg_quality)
    truth["seed"] = int(seed)
    truth["config"] = json_ready(to_dict(cfg))
    return photo, truth


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode ``rgb`` as JPEG (the phone's compression)."""
    import cv2

    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # OpenCV failed on its own output: a bug or a broken build, not the user's input
        raise RuntimeError(f"OpenCV could not round-trip a {rgb.shape[1]}x{rgb.shape[0]} image through JPEG")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def simulate_folder(canvases_dir: Path, out_dir: Path, *, preset: str = "typical", seed: int = 0,
                    overrides: dict[str, Any] | None = None, progress: bool = True) -> list[Path]:
    """Write ``<stem>.jpg`` + ``<stem>.truth.json`` for every ``<stem>.layout.json`` canvas.

    Photo ``k`` (sorted by stem) uses seed ``seed * 1000 + k``. Existing photos whose truth file
    records the same preset, seed and config are kept (idempotent). Returns the photo paths.
    """
    from tqdm import tqdm

    canvases_dir, out_dir = Path(canvases_dir), Path(out_dir)
    if not canvases_dir.is_dir():
        raise MissingFileError(f"canvas folder {canvases_dir} does not exist; run `screensr capture canvas` first")
    layouts = sorted(canvases_dir.glob("*.layout.json"))
    if not layouts:
        raise MissingFileError(f"no *.layout.json in {canvases_dir}; run `screensr capture canvas SOURCES --out {canvases_dir}`")
    cfg = preset_config(preset, **(overrides or {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for k, lp in enumerate(tqdm(layouts, desc=f"simulate ({preset})", unit="photo", disable=not progress)):
        stem = lp.name[: -len(".layout.json")]
        suffix = ".jpg" if cfg.jpeg_quality < 100 else ".png"
        ppath, tpath = out_dir / f"{stem}{suffix}", out_dir / f"{stem}.truth.json"
        s = seed * 1000 + k
        if ppath.is_file() and tpath.is_file():
            try:
                old = read_json(tpath)
                if old.get("seed") == s and old.get("preset") == preset and old.get("config") == json_ready(to_dict(cfg)):
                    photos.append(ppath)
                    continue
            except ValueError:
                pass
        canvas = read_image(canvases_dir / f"{stem}.png", role="canvas").rgb
        photo, truth = simulate_photo(canvas, cfg, s, jpeg=False)
        truth["preset"] = preset
        truth["canvas"] = f"{stem}.png"
        truth["photo"] = ppath.name
        write_image(ppath, photo, jpeg_quality=cfg.jpeg_quality)
        write_json(tpath, json_ready(truth))  # written last: marks a complete photo
        photos.append(ppath)
    return photos


def json_ready(d: Any) -> Any:
    """Tuples -> lists recursively, so a dict equals its JSON round trip."""
    if isinstance(d, dict):
        return {k: json_ready(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [json_ready(v) for v in d]
    return d


__all__ = [
    "SimConfig", "PRESETS", "preset_config", "simulate_photo", "simulate_folder", "truth_photo_to_canvas",
    "undistort_points", "apply_h", "jpeg_roundtrip",
]
