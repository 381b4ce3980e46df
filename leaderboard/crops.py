"""Comparison crops: the same region of the LR input, the HR reference and each SR output.

Crops are enlarged by whole-pixel replication (nearest neighbour), so nothing is interpolated or
invented, and encoded as lossless PNG. Image locations come from the results store: a dataset's
root and layout (read with the benchmark's own loader) and each method's outputs location.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.datasets import load_dataset
from benchmark.images import IMAGE_SUFFIXES, read_image
from core.errors import MissingFileError, UnknownNameError
from core.hashing import file_sha256


def crop_box(size: tuple[int, int], center: tuple[float, float], crop: int, multiple: int = 1) -> tuple[int, int, int, int]:
    """A square crop of side ``crop`` centred at ``center``, clamped inside an image.

    Args:
        size: (width, height) of the HR image in pixels.
        center: (x, y) in [0, 1], relative to the image.
        crop: side in HR pixels (clamped to the image).
        multiple: align the box to this many pixels (the scale factor, so that the same box
            divided by the scale is an exact LR crop).

    Returns:
        (left, top, right, bottom) in HR pixels, right/bottom exclusive.
    """
    w, h = size
    if crop < 1:
        raise ValueError(f"crop side must be >= 1 pixel, got {crop}")
    side = max(multiple, min(crop, w, h) // multiple * multiple)
    cx, cy = (min(max(float(c), 0.0), 1.0) for c in center)
    left = int(round(cx * w - side / 2))
    top = int(round(cy * h - side / 2))
    left = min(max(left, 0), w - side) // multiple * multiple
    top = min(max(top, 0), h - side) // multiple * multiple
    return left, top, left + side, top + side


def zoom_crop(image: np.ndarray, box: tuple[int, int, int, int], zoom: int) -> np.ndarray:
    """Crop ``box`` of ``image`` (H, W, C uint8) and enlarge it ``zoom`` times, nearest neighbour.

    Every source pixel becomes a zoom x zoom block of exactly its value, so nothing is
    interpolated or invented. Returns (h*zoom, w*zoom, C) uint8.
    """
    if zoom < 1 or int(zoom) != zoom:
        raise ValueError(f"zoom must be a positive integer, got {zoom}")
    left, top, right, bottom = box
    h, w = image.shape[:2]
    if not (0 <= left < right <= w and 0 <= top < bottom <= h):
        raise ValueError(f"crop box {box} lies outside the image of size {w}x{h}")
    crop = image[top:bottom, left:right]
    return np.repeat(np.repeat(crop, int(zoom), axis=0), int(zoom), axis=1)


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """Where one pair's images are: LR input, HR reference (None in an NR-only set), scale."""

    id: str
    lr: Path
    hr: Path | None
    scale: int


def dataset_images(datasets: pd.DataFrame, dataset: str) -> dict[str, ImageFiles]:
    """``{pair id: ImageFiles}`` of ``dataset``, read with the benchmark's own loader from the root
    and layout the store recorded (so pairs are matched exactly as when they were scored).

    Raises:
        UnknownNameError: the store does not describe ``dataset`` (a ``KeyError``).
        MissingFileError: its root folder is not on this machine (a ``FileNotFoundError`` naming
            the folder).
    """

    rows = datasets[datasets["name"] == dataset]
    if rows.empty:
        raise UnknownNameError("dataset", dataset, datasets["name"].tolist(), hint="the results store does not describe it")
    row = rows.iloc[0]
    root = Path(str(row["root"]))
    if not root.is_dir():
        raise MissingFileError(
            f"dataset {dataset!r}: its images were at {root}, which is not on this machine; mount or copy "
            "the dataset there (or re-run `screensr bench run` from where it is)"
        )
    ds = load_dataset(root, layout=str(row["layout"]) or None, scale=int(row["scale"]), name=dataset, validate=False)
    return {p.id: ImageFiles(p.id, p.lr, p.hr, ds.scale) for p in ds.pairs}


def method_output(outputs: str, files: ImageFiles) -> Path | None:
    """The SR output of one pair in a method's outputs location, or None.

    Looks for the layouts the benchmark writes and reads: precomputed folders name outputs by
    pair id or LR stem (``folder:`` methods); generated outputs are cached as
    ``<sha256 of the LR file>[:24].png`` (``benchmark.methods.SRMethod.output_path``).
    """

    if not outputs:
        return None
    folder = Path(outputs)
    if not folder.is_dir():
        return None
    for stem in dict.fromkeys((files.id, files.lr.stem)):
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    cached = folder / f"{file_sha256(files.lr)[:24]}.png"
    return cached if cached.is_file() else None


def comparison_crops(
    files: ImageFiles, outputs: Mapping[str, Path | None], center: tuple[float, float], crop: int, zoom: int
) -> tuple[tuple[int, int, int, int], dict[str, np.ndarray | str]]:
    """The same region of the LR input, the HR reference and each method's output.

    Args:
        files: the pair.
        outputs: method -> output file (None when the method has no output for this pair).
        center: crop centre, (x, y) in [0, 1] of the HR image.
        crop: crop side in HR pixels.
        zoom: nearest-neighbour enlargement of the HR-sized crops; the LR crop is enlarged
            ``zoom * scale`` so that every panel shows the same region at the same size.

    Returns:
        (box in HR pixels, {"LR": array, "HR": array, method: array or an error message}).
        Each array is (crop*zoom, crop*zoom, 3) uint8. A method output whose size differs from
        the HR image gets a message naming both sizes (never a silent resize).
    """

    lr = read_image(files.lr).array
    hr = read_image(files.hr).array if files.hr is not None else None
    s = files.scale
    hr_size = (hr.shape[1], hr.shape[0]) if hr is not None else (lr.shape[1] * s, lr.shape[0] * s)
    box = crop_box(hr_size, center, crop, multiple=s)
    lr_box = tuple(v // s for v in box)
    panels: dict[str, np.ndarray | str] = {"LR": zoom_crop(lr, lr_box, zoom * s)}  # type: ignore[arg-type]
    if hr is not None:
        panels["HR"] = zoom_crop(hr, box, zoom)
    for method, path in outputs.items():
        if path is None:
            panels[method] = f"no output of {method!r} for {files.id!r} in its outputs folder"
            continue
        try:
            sr = read_image(path).array
        except (FileNotFoundError, ValueError) as exc:
            panels[method] = str(exc)
            continue
        if (sr.shape[1], sr.shape[0]) != hr_size:
            panels[method] = (
                f"{path} is {sr.shape[1]}x{sr.shape[0]} but the HR image is {hr_size[0]}x{hr_size[1]}: not shown "
                "(outputs are never resized)"
            )
            continue
        panels[method] = zoom_crop(sr, box, zoom)
    return box, panels


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 image, no metadata."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
