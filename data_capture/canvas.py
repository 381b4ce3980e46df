"""Capture canvases: a source image on a white canvas with four ArUco markers near the border.

Geometry convention used throughout ``data_capture``: pixel centres sit at integer coordinates
(OpenCV's convention), so pixel ``(0, 0)`` covers ``[-0.5, 0.5]^2``. A marker drawn over canvas
pixels ``x0 .. x0+S-1`` has its outer corners at ``x0 - 0.5`` and ``x0 + S - 0.5``.

The source is resized by ``cv2.resize`` (which uses the same half-pixel-centre convention) to an
integer size ``(Wd, Hd)`` and pasted at canvas pixel ``(x0, y0)``; source coordinate ``q`` then
shows at canvas coordinate ``c = (q + 0.5) * Wd / W - 0.5 + x0`` (same for y). This affine map is
stored in the layout as ``source_to_canvas`` so registration needs nothing but the layout JSON.

Marker ids: canvas ``k`` (in sorted source order) uses ids ``4k .. 4k+3`` modulo the dictionary
size, so a photo of the wrong canvas is recognised by its marker ids (unique within one set of
up to 12 canvases with DICT_4X4_50).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_capture.config import ConfigError, to_dict

# (name, number of markers) of the ArUco dictionaries offered; smaller is more robust.
DICTIONARIES = {
    "DICT_4X4_50": 50,
    "DICT_4X4_100": 100,
    "DICT_5X5_50": 50,
    "DICT_5X5_100": 100,
    "DICT_6X6_50": 50,
}
_MODULES = {"4X4": 4, "5X5": 5, "6X6": 6}
SCREEN_SIZES = {"4k": (3840, 2160), "qhd": (2560, 1440), "fhd": (1920, 1080), "ipad": (2732, 2048)}


@dataclass
class CanvasConfig:
    """How a canvas is laid out. Sizes in canvas pixels unless a field says "fraction".

    Defaults target a 3840x2160 screen photographed by a 12 MP phone filling most of the frame:
    markers 0.06 x 2160 = 130 px with a 1-module border give 6 modules of ~22 canvas px, within the
    15-30 photo px per module that detect reliably; the quiet zone is 2 modules of white.
    """

    width: int = 3840
    height: int = 2160
    dictionary: str = "DICT_4X4_50"
    marker_fraction: float = 0.06  # marker side as a fraction of the canvas's shorter side
    quiet_modules: float = 2.0  # white quiet zone around each marker, in marker modules
    margin_fraction: float = 0.02  # gap to the canvas edge (bezel, overscan), fraction of shorter side
    display_scale: float = 0.0  # source px -> canvas px; 0 = largest that fits inside the markers
    background: int = 255  # canvas grey level (white)

    def validate(self) -> None:
        if self.dictionary not in DICTIONARIES:
            raise ConfigError(f"dictionary '{self.dictionary}' unknown; choose one of {sorted(DICTIONARIES)}")
        if self.width < 64 or self.height < 64:
            raise ConfigError(f"canvas {self.width}x{self.height} too small; use at least 64x64 (e.g. 3840x2160)")
        if not 0.01 <= self.marker_fraction <= 0.3:
            raise ConfigError(f"marker_fraction {self.marker_fraction} outside [0.01, 0.3]; 0.06 is a good default")
        if self.quiet_modules < 1:
            raise ConfigError(f"quiet_modules {self.quiet_modules} < 1; markers need >= 1 module of white around them")
        if self.margin_fraction < 0 or self.display_scale < 0:
            raise ConfigError("margin_fraction and display_scale must be >= 0")

    @property
    def marker_side(self) -> int:
        modules = _MODULES[self.dictionary.split("_")[1]] + 2  # data bits + 1-bit black border each side
        side = round(self.marker_fraction * min(self.width, self.height) / modules) * modules
        return max(side, modules * 3)

    @property
    def quiet_px(self) -> int:
        modules = _MODULES[self.dictionary.split("_")[1]] + 2
        return int(np.ceil(self.quiet_modules * self.marker_side / modules))

    @property
    def margin_px(self) -> int:
        return round(self.margin_fraction * min(self.width, self.height))


@dataclass
class Layout:
    """Everything registration needs to know about one canvas (saved as ``<stem>.layout.json``).

    ``markers`` maps marker id -> 4 corners ``[[x, y], ...]`` in canvas pixels, clockwise from
    top-left (ArUco's order). ``image_rect`` is ``[x0, y0, Wd, Hd]``: the canvas pixels covered by
    the displayed source. ``source_to_canvas`` is the 3x3 affine map from source to canvas pixels.
    """

    source: str
    source_size: tuple[int, int]  # (W, H) of the source image, px
    canvas_size: tuple[int, int]  # (W, H) of the canvas, px
    image_rect: tuple[int, int, int, int]
    dictionary: str
    markers: dict[int, list[list[float]]]
    source_to_canvas: list[list[float]]
    config: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["markers"] = [{"id": int(i), "corners": c} for i, c in self.markers.items()]
        d["kind"] = "screensr-capture-layout"
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], *, path: Path | None = None) -> Layout:
        where = f"layout {path}" if path else "layout"
        try:
            markers = {int(m["id"]): [[float(x), float(y)] for x, y in m["corners"]] for m in d["markers"]}
            return cls(
                source=str(d["source"]),
                source_size=tuple(d["source_size"]),  # type: ignore[arg-type]
                canvas_size=tuple(d["canvas_size"]),  # type: ignore[arg-type]
                image_rect=tuple(d["image_rect"]),  # type: ignore[arg-type]
                dictionary=str(d["dictionary"]),
                markers=markers,
                source_to_canvas=[list(map(float, r)) for r in d["source_to_canvas"]],
                config=dict(d.get("config", {})),
                version=int(d.get("version", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{where} is missing or has a malformed field ({exc!r}); regenerate it with `screensr capture canvas`"
            ) from exc

    @property
    def S(self) -> np.ndarray:
        """``source_to_canvas`` as a float64 3x3 array."""
        return np.asarray(self.source_to_canvas, dtype=np.float64)

    def object_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), corners (N, 4, 2)) in canvas px, sorted by id."""
        ids = np.array(sorted(self.markers), dtype=np.int32)
        return ids, np.array([self.markers[i] for i in ids], dtype=np.float64)


def marker_ids_for(index: int, dictionary: str) -> list[int]:
    """The four marker ids of canvas number ``index``: ``4k .. 4k+3`` modulo the dictionary size."""
    n = DICTIONARIES[dictionary]
    block = (index * 4) % (n - n % 4)
    return [block + j for j in range(4)]


def plan_layout(source_size: tuple[int, int], cfg: CanvasConfig, *, index: int = 0, source: str = "") -> Layout:
    """Compute marker positions and the image rectangle for a source of ``(W, H)`` px."""
    cfg.validate()
    W, H = source_size
    m, q, s = cfg.margin_px, cfg.quiet_px, cfg.marker_side
    # markers sit in the four corners; the image lives in the band inside them (so ECC can use the
    # whole image without masking marker pixels)
    inset = m + 2 * q + s
    avail_w, avail_h = cfg.width - 2 * inset, cfg.height - 2 * inset
    if avail_w < 16 or avail_h < 16:
        raise ConfigError(
            f"canvas {cfg.width}x{cfg.height} leaves no room for the image inside markers of {s} px; "
            "lower marker_fraction or margin_fraction, or use a larger canvas"
        )
    d = cfg.display_scale or min(avail_w / W, avail_h / H)
    Wd, Hd = round(W * d), round(H * d)
    if Wd > avail_w or Hd > avail_h:
        raise ConfigError(
            f"source {W}x{H} at display_scale {d} needs {Wd}x{Hd} px but only {avail_w}x{avail_h} "
            "fit inside the markers; lower display_scale (0 = fit) or use a larger canvas"
        )
    x0, y0 = (cfg.width - Wd) // 2, (cfg.height - Hd) // 2
    ids = marker_ids_for(index, cfg.dictionary)
    a, b = m + q, cfg.width - m - q - s  # left / right marker column (first pixel)
    c, e = m + q, cfg.height - m - q - s  # top / bottom marker row
    origins = [(a, c), (b, c), (b, e), (a, e)]  # TL, TR, BR, BL
    markers = {}
    for mid, (ox, oy) in zip(ids, origins, strict=True):
        lo_x, lo_y, hi_x, hi_y = ox - 0.5, oy - 0.5, ox + s - 0.5, oy + s - 0.5
        markers[mid] = [[lo_x, lo_y], [hi_x, lo_y], [hi_x, hi_y], [lo_x, hi_y]]
    sx, sy = Wd / W, Hd / H
    S = [[sx, 0.0, 0.5 * sx - 0.5 + x0], [0.0, sy, 0.5 * sy - 0.5 + y0], [0.0, 0.0, 1.0]]
    return Layout(
        source=source,
        source_size=(W, H),
        canvas_size=(cfg.width, cfg.height),
        image_rect=(x0, y0, Wd, Hd),
        dictionary=cfg.dictionary,
        markers=markers,
        source_to_canvas=S,
        config=to_dict(cfg),
    )


def render_canvas(src_rgb: np.ndarray, layout: Layout) -> np.ndarray:
    """Draw the canvas ``(Hc, Wc, 3) uint8`` for ``src_rgb`` ``(H, W, 3) uint8`` and its layout."""
    import cv2

    Wc, Hc = layout.canvas_size
    bg = int(layout.config.get("background", 255))
    canvas = np.full((Hc, Wc, 3), bg, dtype=np.uint8)
    x0, y0, Wd, Hd = layout.image_rect
    if (Wd, Hd) == tuple(layout.source_size):
        shown = src_rgb
    else:
        # INTER_AREA when shrinking (no aliasing), INTER_CUBIC when enlarging
        interp = cv2.INTER_AREA if Wd < layout.source_size[0] else cv2.INTER_CUBIC
        shown = cv2.resize(src_rgb, (Wd, Hd), interpolation=interp)
    canvas[y0 : y0 + Hd, x0 : x0 + Wd] = shown
    dic = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, layout.dictionary))
    for mid, corners in layout.markers.items():
        ox, oy = int(corners[0][0] + 0.5), int(corners[0][1] + 0.5)
        side = int(round(corners[1][0] - corners[0][0]))
        img = cv2.aruco.generateImageMarker(dic, int(mid), side, borderBits=1)
        canvas[oy : oy + side, ox : ox + side] = img[..., None]
    return canvas


def make_canvases(
    sources_dir: Path, out_dir: Path, cfg: CanvasConfig | None = None, *, progress: bool = True
) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.layout.json`` in ``out_dir`` for every image in ``sources_dir``.

    Idempotent: a canvas whose layout JSON already matches is not redrawn. Returns the layout paths.
    """
    from tqdm import tqdm

    from data_capture.imageio import list_images, read_image, read_json, write_image, write_json

    cfg = cfg or CanvasConfig()
    cfg.validate()
    sources = list_images(sources_dir)
    if not sources:
        raise FileNotFoundError(f"no images (.png/.jpg/...) in {sources_dir}; pass the folder of source images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, src in enumerate(tqdm(sources, desc="canvases", unit="img", disable=not progress)):
        img = read_image(src, role="source")
        H, W = img.rgb.shape[:2]
        layout = plan_layout((W, H), cfg, index=k, source=src.name)
        lpath = out_dir / f"{src.stem}.layout.json"
        cpath = out_dir / f"{src.stem}.png"
        if lpath.is_file() and cpath.is_file():
            try:
                if read_json(lpath) == json.loads(json.dumps(layout.to_json())):
                    written.append(lpath)
                    continue
            except ValueError:
                pass
        write_image(cpath, render_canvas(img.rgb, layout))
        write_json(lpath, layout.to_json())  # written last: its presence marks a complete canvas
        written.append(lpath)
    return written


def load_layout(path: Path) -> Layout:
    """Read a ``<stem>.layout.json`` file."""
    from data_capture.imageio import read_json

    return Layout.from_json(read_json(path, role="layout"), path=Path(path))
