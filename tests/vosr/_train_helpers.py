"""Shared helpers of the vosr training tests: tiny random weights at the cache paths, images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def write_tiny_weights() -> None:
    """Random ``tiny-kl`` VAE and ``dinov2_tiny`` encoder files where their loaders look.

    The paths come from the environment that tests/conftest.py points at a temporary folder
    (``SCREENSR_HOME``, ``TORCH_HOME``). Seeded, so every test session gets the same encoders.
    """
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from vosr.autoencoders import tiny_kl_config
    from vosr.conditions import build_semantic_encoder
    from vosr.weights import torch_hub_checkpoints, vosr_home

    folder = vosr_home() / "tiny-kl-vae"
    enc_file = torch_hub_checkpoints() / "dinov2_tiny_pretrain.pth"
    if (folder / "diffusion_pytorch_model.safetensors").is_file() and enc_file.is_file():
        return
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(tiny_kl_config())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(tiny_kl_config()))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    # the hub file holds a 5x5 "pretraining" grid (70 px), resampled on load like DINOv2's 37x37
    enc = build_semantic_encoder("dinov2_tiny", 1, 70)
    enc_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(enc.vit.state_dict(), enc_file)


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
