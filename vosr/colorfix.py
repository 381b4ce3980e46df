"""Colour fix and 8-bit conversion of VOSR outputs, as the released inference scripts do them.

The released ``inference_vosr.py`` / ``inference_vosr_onestep.py`` turn the decoded image into
an 8-bit image and then correct its colours against the bicubic-upsampled input:

1. decoded (3, H, W) in [-1, 1] -> ``ToPILImage()(x * 0.5 + 0.5)``, i.e. ``x.mul(255).byte()``:
   **truncation** to uint8, not rounding;
2. the colour fix works on that uint8 image and truncates again:

   * ``adain``: both images as ``to_tensor`` floats (uint8 / 255), per channel
     ``(x - mean(x)) / (std(x) + 1e-5) * (std(ref) + 1e-5) + mean(ref)`` with the unbiased
     ``torch.std``, clamped to [0, 1], ``to_pil_image`` (truncation);
   * ``wavelet`` (a Gaussian split despite its name): the reference resized to the output size
     with PIL Lanczos (a copy when the sizes already agree), both as float32 / 255, low bands
     ``cv2.GaussianBlur(x, (0, 0), 5)`` (OpenCV's kernel for sigma 5 on float images: 41 taps,
     reflect-101 borders), ``clip(ref_low + (x - x_low), 0, 1) * 255`` cast to uint8 (truncation);
   * ``none``: the truncated image.

``quantize="release"`` follows those steps exactly (uint8 truncation before and after the fix;
outputs equal the released scripts'). ``quantize="round"`` applies the same formulas to the float
image and rounds once at the end (half a grey level brighter on average, no intermediate 8-bit
step).
"""

from __future__ import annotations

import numpy as np
import torch

from vosr.config import ConfigError

__all__ = [
    "ADAIN_EPS",
    "WAVELET_SIGMA",
    "COLOR_FIXES",
    "QUANTIZE_MODES",
    "to_uint8_truncate",
    "to_uint8_round",
    "adain_color_fix",
    "gaussian_color_fix",
    "finish",
]

ADAIN_EPS = 1e-5
WAVELET_SIGMA = 5.0
COLOR_FIXES = ("adain", "wavelet", "none")
QUANTIZE_MODES = ("release", "round")


def to_uint8_truncate(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 by truncation, as ``x.mul(255).byte()``."""
    return image.float().mul(255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def to_uint8_round(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 rounded to the nearest level."""
    return image.float().mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) float32 as torchvision's ``to_tensor`` (contiguous, / 255);
    a float (3, H, W) or (1, 3, H, W) tensor is taken as is."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"expected a uint8 (H, W, 3) array, got {image.dtype}")
        return (
            torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous().float().div(255)[None]
        )
    t = image.float()
    return t[None] if t.ndim == 3 else t


def adain_color_fix(image: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> torch.Tensor:
    """AdaIN as released: per channel, mean and (unbiased std + 1e-5) matched to the reference's.

    Args:
        image, reference: uint8 (H, W, 3) arrays (read as uint8 / 255) or float tensors
            (1, 3, H, W) / (3, H, W) in [0, 1]; the sizes may differ (statistics only).
    Returns:
        (1, 3, H, W) float in [0, 1] (clamped).
    """
    x, ref = _chw(image), _chw(reference)
    x_mean = torch.mean(x, dim=[2, 3], keepdim=True)
    x_std = torch.std(x, dim=[2, 3], keepdim=True) + ADAIN_EPS
    r_mean = torch.mean(ref, dim=[2, 3], keepdim=True)
    r_std = torch.std(ref, dim=[2, 3], keepdim=True) + ADAIN_EPS
    return torch.clamp((x - x_mean) / x_std * r_std + r_mean, 0, 1)


def _hwc_float(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"expected a uint8 (H, W, 3) array, got {image.dtype}")
        return image.astype(np.float32) / 255.0
    t = image.float()
    t = t[0] if t.ndim == 4 else t
    return np.ascontiguousarray(t.permute(1, 2, 0).cpu().numpy())


def gaussian_color_fix(
    image: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, sigma: float = WAVELET_SIGMA
) -> np.ndarray:
    """The released "wavelet" fix: the image's high band over the reference's low band.

    ``clip(G(ref) + (x - G(x)), 0, 1)`` with G = ``cv2.GaussianBlur(., (0, 0), sigma)``; the
    reference is first resized to the image's size with PIL Lanczos (uint8 references; a copy when
    the sizes agree) as the released script does.

    Args:
        image, reference: uint8 (H, W, 3) arrays or float tensors (1, 3, H, W) / (3, H, W) in [0, 1].
    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    import cv2
    from PIL import Image

    x = _hwc_float(image)
    h, w = x.shape[:2]
    if isinstance(reference, np.ndarray):
        if reference.dtype != np.uint8:
            raise TypeError(f"expected a uint8 (H, W, 3) reference, got {reference.dtype}")
        reference = np.asarray(Image.fromarray(reference).resize((w, h), Image.Resampling.LANCZOS))
    ref = _hwc_float(reference)
    if ref.shape != x.shape:
        raise ValueError(
            f"reference {ref.shape} and image {x.shape} differ in size (float references are not resized)"
        )
    ref_low = cv2.GaussianBlur(ref, (0, 0), sigma)
    x_low = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(ref_low + (x - x_low), 0, 1)


def finish(decoded: torch.Tensor, reference: np.ndarray, color_fix: str, quantize: str) -> np.ndarray:
    """Decoded image -> the saved 8-bit image: colour fix against ``reference`` and quantisation.

    Args:
        decoded: (1, 3, H, W) or (3, H, W) float in [0, 1] (the autoencoder output, cropped).
        reference: (H, W, 3) uint8, the bicubic-upsampled input the fix matches.
        color_fix: ``adain``, ``wavelet`` or ``none``.
        quantize: ``release`` (truncate, fix on uint8, truncate) or ``round`` (fix in float, round).
    Returns:
        (H, W, 3) uint8.
    """
    if color_fix not in COLOR_FIXES:
        raise ConfigError(f"color fix {color_fix!r} unknown (choices: {', '.join(COLOR_FIXES)})")
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize {quantize!r} unknown (choices: {', '.join(QUANTIZE_MODES)})")
    x = decoded.detach().float().cpu()
    x = x[0] if x.ndim == 4 else x
    if quantize == "release":
        out = to_uint8_truncate(x)
        if color_fix == "adain":
            return to_uint8_truncate(adain_color_fix(out, reference)[0])
        if color_fix == "wavelet":
            return (gaussian_color_fix(out, reference) * 255.0).astype(np.uint8)
        return out
    ref = _chw(reference)
    if color_fix == "adain":
        return to_uint8_round(adain_color_fix(x, ref)[0])
    if color_fix == "wavelet":
        fixed = gaussian_color_fix(x, ref[0])
        return np.clip(np.rint(fixed * 255.0), 0, 255).astype(np.uint8)
    return to_uint8_round(x.clamp(0, 1))
