"""Tiles over a 2-D grid: where they start, how they are weighted, how outputs are blended.

Two blends, for two uses:

* **Latent tiles of the sampler** (``vosr.sampling.TiledVelocity``): velocities blended with the
  Gaussian weights of the tiled-diffusion samplers (:func:`gaussian_weights`), tiles laid out
  by :func:`tile_grid` (the released square layout or per-axis rectangles).
* **Autoencoder tiles** (``vosr.autoencoders``): an encoder or decoder applied tile by tile
  with linear ramps over the overlaps (:func:`blend_tiles`).

Both lay tiles out with :func:`tile_boxes`. This module imports nothing else from ``vosr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["tile_boxes", "tile_grid", "gaussian_weights", "blend_tiles"]


def tile_boxes(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``size`` with at least ``overlap`` shared.

    The last tile is aligned to the end, so every tile is whole; one tile if size <= tile.
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def tile_grid(
    h: int, w: int, tile: int, overlap: int, layout: str = "release"
) -> tuple[list[int], list[int], int, int]:
    """The latent tiles over an h x w latent: (row starts, column starts, tile height, tile width).

    Args:
        tile, overlap: resolved latent tile side and overlap (``SamplingConfig.resolved``).
        layout: ``release``: square tiles of side min(tile, h, w) with overlap
            min(overlap, side - 1), as the released scripts (so a non-square image is tiled
            along its long side even when ``tile`` exceeds it); ``rect``: min(tile, h) x
            min(tile, w) tiles (one tile when ``tile`` covers the image), overlap as given.
    Starts follow ``tile_boxes`` on each axis.
    """
    if layout == "release":
        side = max(1, min(tile, h, w))
        ov = max(0, min(overlap, side - 1))
        return tile_boxes(h, side, ov), tile_boxes(w, side, ov), side, side
    if layout == "rect":
        return tile_boxes(h, tile, overlap), tile_boxes(w, tile, overlap), min(tile, h), min(tile, w)
    raise ValueError(f"tile layout {layout!r} unknown (choices: release, rect)")


def gaussian_weights(h: int, w: int, var: float = 0.01) -> torch.Tensor:
    """(h, w) blending weights peaking at the tile centre.

    The Gaussian of the tiled-diffusion samplers (Mixture of Diffusers, Jimenez 2023; also
    StableSR's tiled sampler): exp(-(x - mid)^2 / n^2 / (2 var)) / sqrt(2 pi var) per axis.
    """

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2
        return torch.exp(-((x - mid) ** 2) / (n * n) / (2 * var)) / math.sqrt(2 * math.pi * var)

    return (axis(h)[:, None] * axis(w)[None, :]).float()


# --- blending encoder / decoder tiles ----------------------------------------------------


def _axis_weights(starts: list[int], tile: int, scale: float) -> list[torch.Tensor]:
    """Per tile, 1-D output weights: linear ramps over the overlaps with its neighbours, else 1.

    Every weight is positive, so the normalised blend is a convex combination everywhere.
    """
    n = round(tile * scale)
    out = []
    for i, s in enumerate(starts):
        w = torch.ones(n)
        if i > 0:
            ov = min(n, round((starts[i - 1] + tile - s) * scale))
            if ov > 0:
                w[:ov] = torch.minimum(w[:ov], (torch.arange(ov, dtype=torch.float32) + 0.5) / ov)
        if i + 1 < len(starts):
            ov = min(n, round((s + tile - starts[i + 1]) * scale))
            if ov > 0:
                ramp = ((torch.arange(ov, dtype=torch.float32) + 0.5) / ov).flip(0)
                w[n - ov :] = torch.minimum(w[n - ov :], ramp)
        out.append(w)
    return out


def blend_tiles(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    scale: float,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` and blend the outputs.

    Args:
        fn: (B, Cin, h, w) -> (B, Cout, h*scale, w*scale), e.g. an encoder (scale 1/8) or a
            decoder (scale 8).
        x: (B, Cin, H, W).
        tile: tile side in ``x``'s pixels; overlap: pixels shared by neighbours (keep both
            multiples of 1/scale when scale < 1).
    Returns:
        (B, Cout, H*scale, W*scale); exactly ``fn(x)`` when one tile covers ``x``.
    """
    H, W = x.shape[-2:]
    th, tw = min(tile, H), min(tile, W)
    ys, xs = tile_boxes(H, tile, overlap), tile_boxes(W, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    wys, wxs = _axis_weights(ys, th, scale), _axis_weights(xs, tw, scale)
    out: torch.Tensor | None = None
    norm: torch.Tensor | None = None
    for y, wy in zip(ys, wys, strict=True):
        for x0, wx in zip(xs, wxs, strict=True):
            y_out = fn(x[:, :, y : y + th, x0 : x0 + tw]).float()  # (B, Cout, oh, ow)
            oh, ow = y_out.shape[-2:]
            oy, ox = round(y * scale), round(x0 * scale)
            if out is None or norm is None:
                out = torch.zeros(*y_out.shape[:2], round(H * scale), round(W * scale), device=y_out.device)
                norm = torch.zeros(out.shape[-2:], device=y_out.device)
            wgt = (wy[:, None] * wx[None, :]).to(y_out.device)
            out[:, :, oy : oy + oh, ox : ox + ow] += y_out * wgt
            norm[oy : oy + oh, ox : ox + ow] += wgt
    if out is None or norm is None:
        raise ValueError(f"blend_tiles got an empty tile grid for a {H}x{W} input")
    return (out / norm).to(x.dtype)
