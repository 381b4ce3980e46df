"""Image and file input/output for the capture pipeline: one decoding policy, atomic writes.

Decoding policy (tested with rotated-EXIF photos): pixels are decoded by OpenCV with
``IMREAD_IGNORE_ORIENTATION`` and the EXIF orientation tag (read by Pillow) is then applied here,
explicitly, so every photo is registered in its *upright* pixel frame (the frame a gallery shows)
and the original tag is recorded in the manifest. Photo coordinates in ``photo_to_canvas`` are in
that upright frame.

Images are returned as RGB ``uint8`` arrays ``(H, W, 3)``. 16-bit inputs are reduced to 8 bit
(rounded), grayscale inputs are replicated to three channels and an alpha channel is dropped; each
conversion is reported in the returned notes so the manifest says what happened to the input.

Bounded work: the pixel count declared in the file's header is checked against the suite's pixel
limit (``core.imagelimits``: ``$SCREENSR_MAX_PIXELS``, default 100 MP, room for 12-50 MP phone
photos) *before* any pixel is decoded, so a small file declaring 20000x20000 pixels is refused in
milliseconds instead of costing gigabytes.

Writes go through ``core.atomic``: a temporary file beside the target, renamed over it, with the
permissions an ordinary ``open()`` gives under the process umask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write_bytes
from core.errors import MissingFileError, UserError
from core.imagelimits import ImageTooLargeError, check_image_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

# EXIF tag ids (Exif 2.32): orientation in IFD0, the camera settings in the Exif sub-IFD 0x8769.
_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_IFD0_TAGS = {0x010F: "make", 0x0110: "model", 0x0132: "datetime"}
_EXIF_TAGS = {
    0x829A: "exposure_time_s",
    0x829D: "f_number",
    0x8827: "iso",
    0x920A: "focal_length_mm",
    0xA405: "focal_length_35mm",
    0xA434: "lens_model",
    0xA404: "digital_zoom",
    0xA403: "white_balance",
    0x9003: "datetime_original",
}


class ImageReadError(UserError, ValueError):
    """An image file is missing, corrupt or unusable; the message names the file and the fix."""


class JSONFileError(UserError, ValueError):
    """A JSON file the pipeline wrote (layout, truth, manifest entry) that no longer parses."""


@dataclass
class LoadedImage:
    """A decoded image: ``rgb`` is ``(H, W, 3) uint8`` in the upright frame."""

    rgb: np.ndarray
    path: Path
    orientation: int = 1  # the EXIF orientation tag found (1 = none / upright)
    notes: list[str] = field(default_factory=list)  # conversions applied (16-bit, grayscale, alpha)
    exif: dict[str, Any] = field(default_factory=dict)  # device fields for the manifest


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"folder {folder} does not exist; pass a folder of images")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _exif_fields(path: Path) -> tuple[int, dict[str, Any], str | None]:
    """The orientation tag, the device EXIF fields of ``path`` and a note when the EXIF block is
    unreadable (no pixel decoding). A damaged EXIF block does not make the pixels unusable: the
    photo is then taken as stored (orientation 1) and the note goes into the manifest."""
    import struct

    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
    except (OSError, ValueError, SyntaxError, struct.error) as exc:  # what Pillow's EXIF parser raises
        return 1, {}, f"EXIF block unreadable ({type(exc).__name__}: {exc}); orientation taken as stored"
    out: dict[str, Any] = {}
    for tag, name in _IFD0_TAGS.items():
        if tag in exif:
            out[name] = _jsonable(exif[tag])
    for tag, name in _EXIF_TAGS.items():
        if tag in sub:
            out[name] = _jsonable(sub[tag])
    orientation = int(exif.get(_ORIENTATION, 1) or 1)
    if orientation != 1:
        out["orientation"] = orientation
    return orientation, out, None


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("ascii", "replace").strip("\x00 ")
    if isinstance(v, str):
        return v.strip("\x00 ")
    try:
        return float(v) if not isinstance(v, int) else v
    except (TypeError, ValueError):
        return str(v)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored-frame image upright according to EXIF tag values 1-8 (TIFF 6.0 section 8)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2),
        8: lambda a: np.rot90(a, 1),
    }
    if orientation not in ops:
        return img
    return np.ascontiguousarray(ops[orientation](img))


def upright_size(path: Path, *, role: str = "image", max_pixels: int | None = None) -> tuple[int, int]:
    """``(W, H)`` of an image in its upright frame (EXIF orientation applied), from the header only.

    Raises:
        ImageReadError: missing or unreadable file; ImageTooLargeError: over the pixel limit.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{role} {path} does not exist; check the folder and the file stem")
    w, h = _checked_header(path, role, max_pixels)
    orientation = _exif_fields(path)[0]
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # 5-8 transpose the stored frame


def _checked_header(path: Path, role: str, max_pixels: int | None) -> tuple[int, int]:
    try:
        return check_image_pixels(path, max_pixels)  # header only
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{role} {exc}") from None
    except UserError as exc:  # no parsable header: the decoder would fail too (or guess unbounded)
        raise ImageReadError(
            f"{role} {path} could not be decoded (corrupt, truncated or not an image: {exc}); "
            "re-export it as PNG or JPEG"
        ) from None


def read_image(path: Path, *, role: str = "image", exif: bool = False, max_pixels: int | None = None) -> LoadedImage:
    """Decode ``path`` to upright RGB uint8, after checking its header against the pixel limit.

    Args:
        path: the image file.
        role: what the file is ("photo", "source", "canvas"), used in error messages.
        exif: also read the device EXIF fields (photos).
        max_pixels: the pixel limit; None = ``$SCREENSR_MAX_PIXELS`` or the 100 MP default.

    Raises:
        ImageReadError: the file is missing, empty, corrupt, or not an image.
        ImageTooLargeError: the header declares more pixels than the limit (nothing decoded).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{role} {path} does not exist; check the folder and the file stem")
    _checked_header(path, role, max_pixels)
    buf = np.fromfile(str(path), dtype=np.uint8)
    img = None
    if buf.size:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageReadError(
            f"{role} {path} could not be decoded (corrupt, truncated or not an image); "
            "re-export it as PNG or JPEG"
        )
    notes: list[str] = []
    if img.dtype == np.uint16:
        img = ((img.astype(np.float32) / 257.0) + 0.5).astype(np.uint8)
        notes.append("16-bit input reduced to 8 bit")
    elif img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            notes.append(f"{img.dtype} input scaled from [0, 1] to 8 bit")
        else:
            raise ImageReadError(f"{role} {path} has unsupported sample type {img.dtype}; save it as 8 or 16 bit")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        notes.append("grayscale input replicated to RGB")
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        notes.append("alpha channel dropped")
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    orientation, fields, exif_note = _exif_fields(path)  # header only: cheap, and one policy for every format
    if exif_note:
        notes.append(exif_note)
    if orientation != 1:
        img = apply_orientation(img, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    return LoadedImage(rgb=img, path=path, orientation=orientation, notes=notes, exif=fields if exif else {})


def write_image(path: Path, rgb: np.ndarray, *, jpeg_quality: int = 95, exif: bytes | None = None) -> None:
    """Atomically write an RGB (or gray) uint8 image; the format follows the suffix."""
    import cv2

    path = Path(path)
    arr = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    if suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; datasets are re-read far more than written
    ok, enc = cv2.imencode(suffix, arr, params)
    if not ok:
        raise ValueError(f"cannot encode {path} as {suffix}; use .png or .jpg")
    data = enc.tobytes()
    if exif is not None:
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(data)) as im:
            out = BytesIO()
            im.save(out, format="JPEG", quality=jpeg_quality, exif=exif)
            data = out.getvalue()
    atomic_write_bytes(path, data)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write_bytes(Path(path), text.encode())


def read_json(path: Path, *, role: str = "file") -> Any:
    """Read JSON with an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{role} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{role} {path} is not valid JSON ({exc}); regenerate it") from exc
