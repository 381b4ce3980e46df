"""Colour alignment of an aligned photo to its source: wavelet low-band transfer or AdaIN.

Wavelet transfer (the "wavelet colour fix" of the StableSR lineage, re-derived here): an
undecimated a-trous decomposition with the 3x3 binomial kernel ``[1, 2, 1] / 4`` (separable)
dilated by ``1, 2, 4, ...`` (``levels`` steps, replicate padding) gives a low band ``L(x)``; the
result is ``photo - L(photo) + L(source)``: colour, shading and vignetting (structure larger than
about ``2^(levels+1)`` px) come from the source, the finer capture degradation stays from the photo.
The low band after ``n`` levels is close to a Gaussian of sigma ``sqrt(sum 4^i / 2)`` px
(5 levels: ~13 px). The undecimated form is used because a decimated DWT (``pywt.wavedec2``)
is shift-variant and swapping its approximation band leaves blocking artefacts.

AdaIN (Huang & Belongie 2017): per-channel ``(x - mean(x)) / std(x) * std(s) + mean(s)``. It
cannot correct vignetting or a spatially varying cast; offered for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError


@dataclass
class ColorFixConfig:
    """Colour alignment settings (recorded per pair in the manifest)."""

    method: str = "wavelet"  # wavelet | adain | none
    levels: int = 5  # a-trous levels for the wavelet method; the low band is ~Gaussian sigma 13 px at 5

    def validate(self) -> None:
        if self.method not in ("wavelet", "adain", "none"):
            raise ConfigError(f"colour-fix method '{self.method}' unknown; use wavelet, adain or none")
        if not 1 <= self.levels <= 10:
            raise ConfigError(f"levels {self.levels} must be 1..10 (5 is the usual choice)")


def low_band(img: np.ndarray, levels: int) -> np.ndarray:
    """A-trous low band of ``img (H, W, C) float32`` after ``levels`` binomial smoothings."""
    import cv2

    out: np.ndarray = img.astype(np.float32, copy=True)
    for i in range(levels):
        d = 2**i
        k = np.zeros(2 * d + 1, np.float32)
        k[0], k[d], k[2 * d] = 0.25, 0.5, 0.25  # binomial [1, 2, 1] / 4 with holes (dilation d)
        out = cv2.sepFilter2D(out, -1, k, k, borderType=cv2.BORDER_REPLICATE)
    return out


def wavelet_transfer(photo: np.ndarray, source: np.ndarray, levels: int = 5) -> np.ndarray:
    """``photo - L(photo) + L(source)``; both ``(H, W, 3) uint8``, returns uint8."""
    p = photo.astype(np.float32)
    out = p - low_band(p, levels) + low_band(source.astype(np.float32), levels)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def adain(photo: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per-channel mean/std transfer from ``source`` to ``photo`` (both ``(H, W, 3) uint8``)."""
    p = photo.astype(np.float32)
    s = source.astype(np.float32)
    pm, ps = p.mean((0, 1)), p.std((0, 1)) + 1e-6
    sm, sd = s.mean((0, 1)), s.std((0, 1))
    return np.clip((p - pm) / ps * sd + sm + 0.5, 0, 255).astype(np.uint8)


def color_fix(photo: np.ndarray, source: np.ndarray, cfg: ColorFixConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the configured colour alignment; returns the image and the settings to record.

    Raises:
        ValueError: the two images differ in shape.
    """
    if photo.shape != source.shape:
        raise ValueError(f"colour fix needs equal shapes, got photo {photo.shape} and source {source.shape}")
    levels = cfg.levels
    if cfg.method == "wavelet":
        # the a-trous support is 2^(levels+1) px: small images get fewer levels (recorded), not an error
        levels = max(1, min(cfg.levels, int(np.log2(max(min(photo.shape[:2]), 4))) - 1))
        out = wavelet_transfer(photo, source, levels)
    elif cfg.method == "adain":
        out = adain(photo, source)
    else:
        out = photo.copy()
    return out, {"method": cfg.method, "levels": levels if cfg.method == "wavelet" else None,
                 "levels_requested": cfg.levels if cfg.method == "wavelet" else None,
                 "kernel": "a-trous binomial [1,2,1]/4, replicate" if cfg.method == "wavelet" else None}
