"""What an image file stores, read from its header: bits per channel.

Pillow opens 48-bit PNG and TIFF files as 8-bit "RGB", keeping the high byte and dropping the low
one without a word, so a reader that must refuse (or explicitly convert) 16-bit images reads the
depth from the file itself: the PNG IHDR chunk, or TIFF's BitsPerSample tag.
"""

from __future__ import annotations

from typing import Any

__all__ = ["stored_bit_depth"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stored_bit_depth(img: Any, header: bytes) -> int:
    """Bits per channel as stored in the file.

    Args:
        img: the opened ``PIL.Image`` (for TIFF tags and the mode).
        header: the file's first bytes (at least 25 for a PNG).
    Returns:
        The PNG IHDR bit depth (PNG spec, section 11.2.2), the largest TIFF BitsPerSample (tag
        258), 16 for Pillow's ``I;16`` modes, else 8.
    """
    if header[:8] == _PNG_SIGNATURE and header[12:16] == b"IHDR" and len(header) > 24:
        return header[24]
    tags = getattr(img, "tag_v2", None)
    if tags is not None and 258 in tags:
        bits = tags[258]
        return int(max(bits) if isinstance(bits, tuple) else bits)
    return 16 if str(getattr(img, "mode", "")).startswith("I;16") else 8
