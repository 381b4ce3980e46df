"""Capture canvases: a source image on a white canvas with four ArUco markers near the border.

Geometry convention used throughout ``data_capture``: pixel centres sit at integer coordinates
(OpenCV's convention), so pixel ``(0, 0)`` covers ``[-0.5, 0.5]^2``. A marker drawn over canvas
pixels ``x0 .. x0+S-1`` has its outer corners at ``x0 - 0.5`` and ``x0 + S - 0.5``.

The source is resized by ``cv2.resize`` (which uses the same half-pixel-centre convention) to an
integer size ``(Wd, Hd)`` and pasted at canvas pixel ``(x0, y0)``; source coordinate ``q`` then
shows at canvas coordinate ``c = (q + 0.5) * Wd / W - 0.5 + x0`` (same for y). This affine map is
stored in the layout as ``source_to_canvas`` so registration needs nothing but the layout JSON.

Marker ids (a canvas's identity): each canvas owns one block of four ids ``4b .. 4b+3``, assigned
once, when the canvas is first made, and recorded in its layout JSON (``markers``). Ids are never
derived from the sort order of the sources: ``make_canvases`` reads the layouts already in the
output folder, keeps every existing canvas exactly as it is (its files are not rewritten), and
gives each new source the lowest block that no canvas of the folder uses. Adding a source that
sorts first therefore changes nothing for the photos already taken, and no two canvases of one
folder share an id, so a photo is attributed to its canvas by its markers (``marker_owners``).
When the dictionary is full the run stops with an error; the predefined OpenCV dictionaries of one
marker size are prefixes of each other (DICT_4X4_50 = the first 50 markers of DICT_4X4_1000), so a
folder grows by passing the larger dictionary of the same size, without touching its old canvases.

Layouts written before ids were assigned this way (``version`` 1) recorded their ids in the same
``markers`` list; they are read back from there and kept. Such a folder may contain canvases that
share ids (the old scheme wrapped around after 12 canvases): ``make_canvases`` warns, never hands
those ids to a new canvas, and the dataset build treats a shared id as ambiguous evidence.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import to_dict
from core.errors import ConfigError, MissingFileError, UserError, did_you_mean
from core.hashing import file_sha1
from data_capture.imageio import list_images, read_image, read_json, upright_size, write_image, write_json

# (name, number of markers) of the ArUco dictionaries offered; smaller is more robust.
DICTIONARIES = {
    "DICT_4X4_50": 50,
    "DICT_4X4_100": 100,
    "DICT_4X4_250": 250,
    "DICT_4X4_1000": 1000,
    "DICT_5X5_50": 50,
    "DICT_5X5_100": 100,
    "DICT_5X5_250": 250,
    "DICT_5X5_1000": 1000,
    "DICT_6X6_50": 50,
    "DICT_6X6_100": 100,
    "DICT_6X6_250": 250,
    "DICT_6X6_1000": 1000,
}
_MODULES = {"4X4": 4, "5X5": 5, "6X6": 6}
SCREEN_SIZES = {"4k": (3840, 2160), "qhd": (2560, 1440), "fhd": (1920, 1080), "ipad": (2732, 2048)}


class LayoutError(UserError, ValueError):
    """A ``<stem>.layout.json`` that is missing a field or holds a malformed one."""


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
            raise ConfigError(
                f"dictionary '{self.dictionary}' unknown{did_you_mean(self.dictionary, DICTIONARIES)}; "
                f"choose one of {', '.join(DICTIONARIES)}"
            )
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


LAYOUT_VERSION = 2  # 2: source_sha1 recorded, ids assigned once per source (1: ids from the sort order)


def family(dictionary: str) -> str:
    """The marker size of a dictionary name (``"DICT_4X4_50"`` -> ``"4X4"``): ids are shared within it."""
    return dictionary.split("_")[1]


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
    source_sha1: str = ""  # SHA-1 of the source file the canvas shows ("" in version-1 layouts)
    version: int = LAYOUT_VERSION

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
                source_sha1=str(d.get("source_sha1", "")),
                version=int(d.get("version", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutError(
                f"{where} is missing or has a malformed field ({exc!r}); restore the file, or delete it and rerun "
                "`screensr capture canvas` (that makes a new canvas: retake its photo)"
            ) from exc

    @property
    def S(self) -> np.ndarray:
        """``source_to_canvas`` as a float64 3x3 array."""
        return np.asarray(self.source_to_canvas, dtype=np.float64)

    def object_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), corners (N, 4, 2)) in canvas px, sorted by id."""
        ids = np.array(sorted(self.markers), dtype=np.int32)
        return ids, np.array([self.markers[i] for i in ids], dtype=np.float64)


def id_blocks(dictionary: str) -> int:
    """How many canvases (blocks of four ids) a dictionary holds: 12 for DICT_4X4_50."""
    return DICTIONARIES[dictionary] // 4


def marker_ids_for(block: int, dictionary: str) -> list[int]:
    """The four marker ids ``4b .. 4b+3`` of id block ``b``.

    Raises:
        ConfigError: the block does not fit in the dictionary (no wrap-around: that would collide).
    """
    if not 0 <= block < id_blocks(dictionary):
        raise ConfigError(
            f"id block {block} does not fit in {dictionary} ({id_blocks(dictionary)} canvases of 4 markers)"
        )
    return [4 * block + j for j in range(4)]


def plan_layout(source_size: tuple[int, int], cfg: CanvasConfig, *, ids: list[int] | None = None,
                source: str = "", source_sha1: str = "") -> Layout:
    """Compute marker positions and the image rectangle for a source of ``(W, H)`` px.

    ``ids`` are the canvas's four marker ids (TL, TR, BR, BL); default: block 0 (ids 0-3), for a
    canvas on its own. ``make_canvases`` assigns them for a folder.
    """
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
    ids = list(ids) if ids is not None else marker_ids_for(0, cfg.dictionary)
    if len(ids) != 4 or len(set(ids)) != 4 or not all(0 <= i < DICTIONARIES[cfg.dictionary] for i in ids):
        raise ConfigError(f"marker ids {ids} must be 4 distinct ids of {cfg.dictionary} (0..{DICTIONARIES[cfg.dictionary] - 1})")
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
        source_sha1=source_sha1,
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


class CanvasIdCollisionWarning(UserWarning):
    """Existing canvases of a folder share marker ids (made by the version-1 id scheme)."""


def read_layouts(canvases_dir: Path) -> dict[str, Layout]:
    """Every ``<stem>.layout.json`` of a canvases folder, by stem (empty when the folder is absent).

    Raises:
        ValueError: a layout file is malformed (the message names it).
    """
    folder = Path(canvases_dir)
    if not folder.is_dir():
        return {}
    return {p.name[: -len(".layout.json")]: load_layout(p) for p in sorted(folder.glob("*.layout.json"))}


def marker_owners(layouts: dict[str, Layout]) -> dict[int, list[str]]:
    """Marker id -> the stems of the canvases showing it (more than one only in version-1 folders)."""
    owners: dict[int, list[str]] = {}
    for stem, lay in sorted(layouts.items()):
        for i in lay.markers:
            owners.setdefault(int(i), []).append(stem)
    return owners


@dataclass
class CanvasSet:
    """The canvases of one folder, for attributing a photo to a canvas by its marker ids.

    ``owners`` maps marker id -> canvas stems (one stem, except in version-1 folders);
    ``dictionary`` is the largest dictionary the folder's layouts use (it decodes every id of the
    folder, since the dictionaries of one marker size are prefixes of each other).
    """

    layouts: dict[str, Layout]
    owners: dict[int, list[str]]
    dictionary: str
    unreadable: dict[str, str] = field(default_factory=dict)  # stem -> why its layout could not be read

    @classmethod
    def read(cls, canvases_dir: Path) -> CanvasSet:
        """Read a folder's layouts. A malformed layout is listed in ``unreadable`` (its pair is
        rejected with that reason by the build) instead of stopping the other pairs."""
        layouts: dict[str, Layout] = {}
        unreadable: dict[str, str] = {}
        for p in sorted(Path(canvases_dir).glob("*.layout.json")):
            stem = p.name[: -len(".layout.json")]
            try:
                layouts[stem] = load_layout(p)
            except (ValueError, OSError) as exc:
                unreadable[stem] = str(exc)
        widest = max((lay.dictionary for lay in layouts.values()), key=lambda d: DICTIONARIES.get(d, 0),
                     default="DICT_4X4_50")
        return cls(layouts, marker_owners(layouts), widest, unreadable)

    def misattribution(self, stem: str, found: list[int], foreign: list[int]) -> str | None:
        """Why a photo named ``stem`` shows another canvas, or None when nothing says so.

        ``found`` are the detected ids of ``stem``'s own layout, ``foreign`` the other detected ids.
        A photo is attributed to canvas ``C`` when at least two of its markers belong to ``C`` alone
        and ``C`` has at least as many markers in the photo as ``stem`` itself (a single foreign id
        can be a false detection in the image content, and is only recorded).
        """
        counts: dict[str, list[int]] = {}
        for i in foreign:
            own = self.owners.get(int(i), [])
            if len(own) == 1 and own[0] != stem:
                counts.setdefault(own[0], []).append(int(i))
        if not counts:
            return None
        other, ids = max(counts.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if len(ids) < 2 or len(ids) < len(found):
            return None
        mine = sorted(self.layouts[stem].markers) if stem in self.layouts else []
        return (
            f"photo named '{stem}' shows the markers of canvas '{other}' (ids {sorted(ids)}), not those of "
            f"'{stem}' (ids {mine}): the photo is misnamed (rename it to {other} with its extension) or shows "
            "the wrong canvas"
        )


def _config_difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings (other than the dictionary's size) in which two canvas configs differ.

    A key missing from ``recorded`` (a setting added after the canvas was made) counts as its default.
    """
    recorded = {**to_dict(CanvasConfig()), **recorded}
    out = []
    for key in sorted(set(recorded) | set(wanted)):
        a, b = recorded.get(key), wanted.get(key)
        if key == "dictionary" and isinstance(a, str) and isinstance(b, str) and family(a) == family(b):
            continue  # one id space: a larger dictionary of the same marker size extends the folder
        if a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(f"{key}: {a!r} (existing) vs {b!r} (this run)")
    return out


def make_canvases(
    sources_dir: Path, out_dir: Path, cfg: CanvasConfig | None = None, *, progress: bool = True
) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.layout.json`` in ``out_dir`` for every image in ``sources_dir``.

    Existing canvases are never changed: a source whose layout is already in ``out_dir`` keeps it
    (files untouched; a missing PNG is redrawn from the recorded layout), new sources get the
    lowest id blocks no canvas of the folder uses (see the module docstring). Every check (settings,
    ids, source names, hashes and image headers) runs before anything is written, so a refused run
    leaves the folder as it was.

    Returns:
        The layout paths, one per source, in source order.

    Raises:
        FileNotFoundError: no images in ``sources_dir``.
        ConfigError: the run would change an existing canvas (other settings, another marker size,
            a changed source file), two sources share a stem, or the dictionary has no free ids.
    """
    from tqdm import tqdm

    cfg = cfg or CanvasConfig()
    cfg.validate()
    sources = list_images(sources_dir)
    if not sources:
        raise MissingFileError(f"no images (.png/.jpg/...) in {sources_dir}; pass the folder of source images")
    by_stem: dict[str, list[Path]] = {}
    for src in sources:
        by_stem.setdefault(src.stem, []).append(src)
    clash = {k: [p.name for p in v] for k, v in by_stem.items() if len(v) > 1}
    if clash:
        raise ConfigError(f"sources in {sources_dir} share a stem (one canvas each is needed): {clash}; rename one of each")
    out_dir = Path(out_dir)
    existing = read_layouts(out_dir)
    wanted = to_dict(cfg)
    owners = marker_owners(existing)
    shared = {i: stems for i, stems in owners.items() if len(stems) > 1}
    if shared:
        warnings.warn(
            f"canvases in {out_dir} share marker ids (made by an older version): "
            + "; ".join(f"id {i}: {', '.join(st)}" for i, st in sorted(shared.items()))
            + ". A photo of one named like the other is caught only by the content checks; new canvases never reuse these ids.",
            CanvasIdCollisionWarning,
            stacklevel=2,
        )
    for stem, lay in existing.items():
        if family(lay.dictionary) != family(cfg.dictionary):
            raise ConfigError(
                f"{out_dir / (stem + '.layout.json')} uses {lay.dictionary} markers but this run asks for "
                f"{cfg.dictionary}; one folder holds one marker size (ids are unique within it): pass "
                f"--dictionary DICT_{family(lay.dictionary)}_<N>, or write the new canvases to another folder"
            )
    # --- plan (no writes yet): every refusal happens here
    plans: list[tuple[Path, Layout]] = []  # (source, layout) to draw: new canvases and missing PNGs
    new: list[tuple[Path, tuple[int, int]]] = []
    for src in sources:
        found = existing.get(src.stem)
        if found is None:
            new.append((src, upright_size(src, role="source")))
            continue
        lay = found
        where = out_dir / f"{src.stem}.layout.json"
        if lay.source != src.name:
            raise ConfigError(
                f"{where} was made from '{lay.source}' but the sources folder now has '{src.name}' for that stem; "
                "restore the original file name, or remove the canvas (and retake its photo) to make a new one"
            )
        diff = _config_difference(lay.config, wanted)
        if diff:
            raise ConfigError(
                f"existing canvas {where} was made with other settings ({'; '.join(diff)}); existing canvases "
                "are never changed (their photos would stop registering): rerun with the original settings, "
                "or write to a new --out folder"
            )
        if lay.source_sha1 and file_sha1(src) != lay.source_sha1:
            raise ConfigError(
                f"source {src} changed since its canvas {where} was made (SHA-1 {lay.source_sha1[:12]}...): photos "
                "of that canvas show the old image; restore the source, or remove the canvas files (and retake "
                "the photo) to make a new canvas"
            )
        if not (out_dir / f"{src.stem}.png").is_file():
            size = upright_size(src, role="source")
            if tuple(size) != tuple(lay.source_size):
                raise ConfigError(
                    f"source {src} is {size[0]}x{size[1]} but {where} was made for {lay.source_size[0]}x"
                    f"{lay.source_size[1]}; restore the original source to redraw the missing {src.stem}.png"
                )
            plans.append((src, lay))
    used = set(owners)
    free = [b for b in range(id_blocks(cfg.dictionary)) if not used & set(marker_ids_for(b, cfg.dictionary))]
    if len(new) > len(free):
        bigger = [d for d in DICTIONARIES if family(d) == family(cfg.dictionary) and DICTIONARIES[d] > DICTIONARIES[cfg.dictionary]]
        raise ConfigError(
            f"{cfg.dictionary} holds {id_blocks(cfg.dictionary)} canvases of 4 markers; {out_dir} already uses "
            f"{len(used)} ids and {len(new)} new sources need {4 * len(new)} more (only {len(free)} free blocks). "
            + (f"Pass --dictionary {bigger[0]} (it extends {cfg.dictionary}: existing canvases stay valid)."
               if bigger else "Split the sources over several canvas folders.")
        )
    for (src, (W, H)), block in zip(new, free, strict=False):
        lay = plan_layout((W, H), cfg, ids=marker_ids_for(block, cfg.dictionary), source=src.name,
                          source_sha1=file_sha1(src))
        plans.append((src, lay))
    # --- write: the PNG first, the layout JSON last (its presence marks a complete canvas)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src, lay in tqdm(plans, desc="canvases", unit="img", disable=not progress or not plans):
        img = read_image(src, role="source")
        if img.rgb.shape[1::-1] != tuple(lay.source_size):  # the file changed between plan and draw
            raise ConfigError(f"source {src} changed while the canvases were being made; run again")
        write_image(out_dir / f"{src.stem}.png", render_canvas(img.rgb, lay))
        lpath = out_dir / f"{src.stem}.layout.json"
        if not lpath.is_file():
            write_json(lpath, lay.to_json())
    return [out_dir / f"{src.stem}.layout.json" for src in sources]


def load_layout(path: Path) -> Layout:
    """Read a ``<stem>.layout.json`` file."""
    return Layout.from_json(read_json(path, role="layout"), path=Path(path))
