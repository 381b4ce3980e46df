"""Shared helpers of the vosr training tests: tiny random weights at the cache paths, images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_weights() -> None:
    """Random ``tiny-kl`` VAE and ``dinov2_tiny`` encoder files where their loaders look.

    Delegates to ``vosr.weights.write_random_tiny_weights`` (seeded) with the default caches,
    which tests/conftest.py points at a temporary folder; written once per session.
    """
    from vosr.weights import torch_hub_checkpoints, vosr_home, write_random_tiny_weights

    if (vosr_home() / "tiny-kl-vae").is_dir() and (torch_hub_checkpoints() / "dinov2_tiny_pretrain.pth").is_file():
        return
    write_random_tiny_weights(seed=0)


def synthetic_image(seed: int, h: int = 80, w: int = 96) -> np.ndarray:
    """An 8-bit RGB (h, w, 3) image with gradients, edges and texture (deterministic)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, 6.28)
        img[..., c] = 0.5 + 0.35 * np.sin(fx * xx + fy * yy + ph)
    for _ in range(4):  # hard-edged rectangles
        y0, x0 = rng.integers(0, max(h - h // 4, 1)), rng.integers(0, max(w - w // 4, 1))
        img[y0 : y0 + rng.integers(h // 8 + 1, h // 3 + 2), x0 : x0 + rng.integers(w // 8 + 1, w // 3 + 2)] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_images(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (80, 96)) -> Path:
    """``n`` synthetic PNGs in ``folder``; returns the folder."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), synthetic_image(seed + i, *size)[:, :, ::-1])
    return folder
