"""What the voting page serves: lossless, metadata-free PNG bytes of every candidate, and the same
zoomed crop of each (nearest-neighbour, so no resampling hides or invents detail).

Example:
    >>> lr_png, crops = trial_pngs(config, "img_001", ("SeeSR", "PASD"), center=(0.5, 0.5), zoom=2)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderboard.study.config import BICUBIC, HR, LR, StudyConfig, StudyConfigError


@dataclass
class ImageCache:
    """Decoded candidate images keyed by file path and modification time (a small LRU)."""

    capacity: int = 64
    _items: dict[tuple[str, int], Any] = field(default_factory=dict)
    # Streamlit serves sessions from threads and shares one cache between them.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: Path) -> Any:
        """The decoded RGB image at ``path`` (``PIL.Image``; callers must not modify it)."""
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            image = self._items.pop(key, None)
            if image is not None:
                self._items[key] = image
                return image
        image = _open_rgb(path)
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.capacity:
                self._items.pop(next(iter(self._items)))
        return image


def candidate_image(config: StudyConfig, image_id: str, candidate: str, cache: ImageCache | None = None) -> Any:
    """The decoded RGB image (``PIL.Image``) of one candidate of one trial."""
    from PIL import Image

    load = cache.get if cache is not None else _open_rgb
    if candidate == BICUBIC:
        lr = load(config.file(LR, image_id))
        # the SR size of this image: every method output has it (validated at creation)
        with Image.open(config.file(next(iter(config.methods)), image_id)) as ref:
            size = ref.size
        return lr.resize(size, Image.Resampling.BICUBIC)
    if candidate != HR and candidate not in config.methods:
        raise StudyConfigError(f"candidate {candidate!r} is not a method of study {config.name!r}")
    return load(config.file(candidate, image_id))


def lr_image(config: StudyConfig, image_id: str, cache: ImageCache | None = None) -> Any:
    """The decoded LR input of a trial."""
    return (cache.get if cache is not None else _open_rgb)(config.file(LR, image_id))


def _open_rgb(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB") if im.mode != "RGB" else im.copy()


def png_bytes(image: Any) -> bytes:
    """Lossless PNG bytes of ``image`` carrying pixels only: no text, ICC, EXIF or file name.

    The pixels are copied into a fresh image first, because Pillow's PNG writer otherwise carries
    ``info`` entries (ICC profile, text chunks) of the source over.
    """
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=1)  # level 1: fast, still lossless
    return buf.getvalue()


def crop_box(size: tuple[int, int], center: tuple[float, float], crop: int) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` of a ``crop`` x ``crop`` window centred at ``center``.

    ``center`` is in fractions of width and height (0..1); the box is clamped inside the image
    and shrinks to the image when the image is smaller than ``crop``.
    """
    w, h = size
    cw, ch = min(crop, w), min(crop, h)
    cx = min(max(center[0], 0.0), 1.0) * w
    cy = min(max(center[1], 0.0), 1.0) * h
    left = int(round(min(max(cx - cw / 2, 0), w - cw)))
    top = int(round(min(max(cy - ch / 2, 0), h - ch)))
    return left, top, left + cw, top + ch


def zoomed_crop(image: Any, center: tuple[float, float], crop: int, zoom: int, reference_size: tuple[int, int] | None = None) -> Any:
    """The same region of any candidate, enlarged ``zoom`` times with nearest-neighbour.

    Args:
        image: ``PIL.Image`` (SR candidate or LR input).
        center: crop centre in fractions (0..1) of the image.
        crop: window side in pixels of ``reference_size`` (the SR size); the LR input gets the
            proportionally smaller window of the same region, enlarged to the same display size.
        zoom: integer enlargement factor (nearest-neighbour keeps pixels honest).
        reference_size: SR size ``(w, h)``; defaults to ``image.size``.

    Returns:
        ``PIL.Image`` of about ``crop * zoom`` pixels per side.
    """
    from PIL import Image

    ref = reference_size or image.size
    box_ref = crop_box(ref, center, crop)
    sx, sy = image.size[0] / ref[0], image.size[1] / ref[1]
    box = (
        int(round(box_ref[0] * sx)),
        int(round(box_ref[1] * sy)),
        max(int(round(box_ref[2] * sx)), int(round(box_ref[0] * sx)) + 1),
        max(int(round(box_ref[3] * sy)), int(round(box_ref[1] * sy)) + 1),
    )
    out_size = ((box_ref[2] - box_ref[0]) * zoom, (box_ref[3] - box_ref[1]) * zoom)
    return image.crop(box).resize(out_size, Image.Resampling.NEAREST)


def trial_pngs(
    config: StudyConfig,
    image_id: str,
    shown: tuple[str, ...],
    center: tuple[float, float] = (0.5, 0.5),
    zoom: int = 2,
    cache: ImageCache | None = None,
) -> tuple[bytes, list[bytes]]:
    """Everything the voting page shows for one trial, as metadata-free PNG bytes.

    Returns:
        ``(lr_crop_png, [candidate_crop_png, ...])`` in the order ``shown``; every crop covers the
        same region (the LR one at LR resolution), enlarged to the same display size.
    """
    candidates = [candidate_image(config, image_id, c, cache) for c in shown]
    ref = candidates[0].size
    lr = lr_image(config, image_id, cache)
    lr_zoom = zoomed_crop(lr, center, config.crop, zoom, reference_size=ref)
    crops = [zoomed_crop(c, center, config.crop, zoom) for c in candidates]
    return png_bytes(lr_zoom), [png_bytes(c) for c in crops]
