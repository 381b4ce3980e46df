"""Reading, checking and hashing the images the harness scores.

Every image is read from disk once: the bytes are hashed (the content hash recorded with each
score) and decoded from the same buffer. Decoding matches pyiqa's own reader
(``PIL.Image.open(...).convert('RGB')`` then ``to_tensor``), so a harness score equals the score
pyiqa's command line gives for the same file.

Before any pixel is decoded the header's size is checked against the pixel limit
(:mod:`core.imagelimits`, ``$SCREENSR_MAX_PIXELS``, default 100 MP): a small file that declares a
huge image (a "pixel bomb") is refused with an error naming the file instead of costing gigabytes.

Only 8-bit RGB (or palette images without transparency, which are RGB by construction) is
accepted: grayscale, alpha channels and 16-bit images would be silently converted by pyiqa and
change the numbers, so they raise :class:`ImageFormatError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.atomic import atomic_path
from core.errors import MissingFileError, UserError
from core.imageformat import stored_bit_depth
from core.imagelimits import ImageTooLargeError, check_pixels, pil_bomb_error

if TYPE_CHECKING:
    import torch

#: File suffixes treated as images when scanning folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFormatError(UserError, ValueError):
    """An image that cannot be scored as it is (unreadable, wrong mode, wrong size)."""


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image.

    Attributes:
        path: the file it came from.
        array: ``(H, W, 3)`` uint8 RGB.
        sha256: hex digest of the file bytes.
    """

    path: Path
    array: np.ndarray
    sha256: str

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.array.shape[1], self.array.shape[0]

    def tensor(self) -> torch.Tensor:
        """``(1, 3, H, W)`` float32 in [0, 1], as pyiqa's ``imread2tensor`` gives it."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.array.transpose(2, 0, 1))).float().div(255.0)[None]


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def check_mode(img, path: Path, data: bytes = b"") -> None:
    """Refuse an opened image that is not 8-bit RGB (alpha, grayscale, 16-bit, float).

    Args:
        img: an opened (not necessarily decoded) ``PIL.Image``.
        path: its file, named in the message.
        data: the file's first bytes (a PNG's IHDR holds the bit depth: 16-bit PNGs open as RGB).

    Raises:
        ImageFormatError: the mode, naming the file and the conversion that fixes it.
    """
    mode = img.mode
    fix = "convert it to 8-bit RGB (e.g. `convert IN -alpha off -depth 8 -type TrueColor OUT`)"
    depth = stored_bit_depth(img, data) if mode in ("RGB", "RGBA") else 8
    if depth > 8:
        raise ImageFormatError(f"{path}: is a 16-bit image ({depth} bits per channel); {fix}")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        raise ImageFormatError(f"{path}: has an alpha channel (mode {mode}); {fix}")
    if mode in ("L", "1"):
        raise ImageFormatError(f"{path}: is grayscale (mode {mode}); SR metrics need RGB: {fix}")
    if mode.startswith("I") or mode == "F":
        raise ImageFormatError(f"{path}: is a 16-bit or float image (mode {mode}); {fix}")
    if mode not in ("RGB", "P"):
        raise ImageFormatError(f"{path}: unsupported image mode {mode}; {fix}")


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Read, check and decode one image file.

    Args:
        path: the image file.
        max_pixels: the pixel limit (default :func:`core.imagelimits.max_pixels`), checked on the
            header before decoding.

    Raises:
        MissingFileError: the file does not exist (a ``FileNotFoundError``).
        ImageTooLargeError: the header declares more pixels than the limit.
        ImageFormatError: unreadable/truncated file, alpha, grayscale or 16-bit data.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"image {path} does not exist") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            # Image.open parsed the header only: refuse a pixel bomb before decoding it
            check_pixels(img.size[0], img.size[1], path, max_pixels)
            check_mode(img, path, data)
            img.load()  # forces a full decode: truncated files fail here, not later
            rgb = img.convert("RGB")
    except (ImageFormatError, ImageTooLargeError):
        raise
    except Image.DecompressionBombError as exc:
        raise pil_bomb_error(path, exc, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFormatError(
            f"{path}: cannot be decoded ({exc}); the file is corrupt or truncated, re-export or "
            "re-download it"
        ) from exc
    return LoadedImage(path, np.asarray(rgb, dtype=np.uint8), hashlib.sha256(data).hexdigest())


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` from the header only (cheap: used to validate a dataset up front)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise MissingFileError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageFormatError(f"{path}: not a readable image ({exc}); re-export or remove it") from exc


def check_image_header(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` after the checks :func:`read_image` makes that the header allows:
    8-bit RGB (no grayscale, alpha or 16-bit) and the pixel limit. Decodes no pixel, so a whole
    dataset is checked in moments, before anything is scored.

    Raises:
        MissingFileError: the file does not exist (a ``FileNotFoundError``).
        ImageFormatError: not an image, or not 8-bit RGB.
        core.imagelimits.ImageTooLargeError: more pixels than ``$SCREENSR_MAX_PIXELS``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)  # the PNG IHDR (bit depth at byte 24) lies in the first 33 bytes
        with Image.open(path) as img:
            check_mode(img, path, head)
            size = img.size
    except FileNotFoundError:
        raise MissingFileError(f"image {path} does not exist") from None
    except Image.DecompressionBombError as exc:
        raise pil_bomb_error(path, exc) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageFormatError(f"{path}: not a readable image ({exc}); re-export or remove it") from exc
    check_pixels(size[0], size[1], path)
    return size


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB as PNG atomically (temporary file, then ``os.replace``)."""
    from PIL import Image

    path = Path(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"write_png {path}: expected (H, W, 3) uint8, got {array.shape} {array.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (sorted only for stable progress output)."""
    return sorted(p for p in folder.iterdir() if is_image(p))
