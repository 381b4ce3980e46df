"""A pixel limit checked on the image header, before any pixel is decoded.

A 1.2 MB PNG can declare 20000 x 20000 pixels and cost gigabytes once decoded. Every place that
reads an image from a user or a submitter (capture photos and sources, benchmark datasets and
method outputs, board submissions, VOSR inputs) calls :func:`check_image_pixels` first.

The limit defaults to 100 megapixels (room for the 12-50 MP photos of current phones, with their
sources and 4x outputs); ``$SCREENSR_MAX_PIXELS`` or an explicit argument changes it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import UserError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageTooLargeError",
    "max_pixels",
    "check_pixels",
    "check_image_pixels",
    "pil_bomb_error",
]

DEFAULT_MAX_PIXELS = 100_000_000


class ImageTooLargeError(UserError, ValueError):
    """An image declares more pixels than the configured limit."""


def max_pixels(override: int | None = None) -> int:
    """The pixel limit in force: ``override``, else ``$SCREENSR_MAX_PIXELS``, else the default."""
    if override is not None:
        value: object = override
        source = "the max_pixels argument"
    else:
        value = os.environ.get("SCREENSR_MAX_PIXELS") or DEFAULT_MAX_PIXELS
        source = "SCREENSR_MAX_PIXELS"
    try:
        limit = int(str(value).replace("_", ""))
    except ValueError:
        raise UserError(f"{source}={value!r} is not an integer pixel count (e.g. 100000000)") from None
    if limit <= 0:
        raise UserError(f"{source}={value!r}: the pixel limit must be positive")
    return limit


def check_pixels(width: int, height: int, what: str | os.PathLike[str], limit: int | None = None) -> None:
    """Raise :class:`ImageTooLargeError` when ``width * height`` exceeds the limit."""
    cap = max_pixels(limit)
    if width * height > cap:
        raise ImageTooLargeError(
            f"{what}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the pixel limit of "
            f"{cap / 1e6:.1f} MP; downscale or crop the image, or raise the limit with "
            f"SCREENSR_MAX_PIXELS (pixels) if it is genuine"
        )


def pil_bomb_error(
    what: str | os.PathLike[str], exc: Exception, limit: int | None = None
) -> ImageTooLargeError:
    """Our error for PIL's own ``DecompressionBombError`` (raised on the header above twice
    ``Image.MAX_IMAGE_PIXELS``, before our limit could be checked), with the pixel count PIL found."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.1f} MP" if found else "more pixels than PIL allows"
    return ImageTooLargeError(
        f"{what}: declares {size}, over the pixel limit of {max_pixels(limit) / 1e6:.1f} MP; "
        "downscale or crop the image"
    )


def check_image_pixels(path: str | os.PathLike[str], limit: int | None = None) -> tuple[int, int]:
    """Read only the header of the image at ``path`` and enforce the pixel limit.

    Returns:
        ``(width, height)`` as the header declares them (EXIF orientation not applied).

    Raises:
        FileNotFoundError: no such file.
        ImageTooLargeError: too many pixels.
        UserError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        # Image.open parses the header only; pixels are decoded on first access
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist") from None
    except Image.DecompressionBombError as exc:
        raise pil_bomb_error(path, exc, limit) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: not a readable image ({exc}); re-export or remove it") from exc
    check_pixels(width, height, path, limit)
    return width, height
