"""Samplers of the VOSR flow (t = 1 noise -> t = 0 data) and the velocity adapters they call.

Samplers are plain functions with one signature, ``sample_*(velocity, noise, steps, callback)``
(k-diffusion's habit): they never know about conditions, guidance or tiling. Those live in the
*velocity adapters*, callables ``velocity(z, t, r) -> v`` with z (B, C, H, W) latents, t and r
python floats in [0, 1] (r None for multi-step models):

* ``ConditionalVelocity``: the model with the full condition (one-step / distilled models).
* ``GuidedVelocity``: partial-conditioning guidance (VOSR appendix Eq. 1),
  v = v_pcond + omega (v_cond - v_pcond), both branches in one batched pass of 2B; also the
  teacher target of distillation (``vosr.distill``), with per-sample (B,) times.
* ``TiledVelocity``: evaluates another adapter on overlapping latent tiles with per-tile
  conditions and blends the tile velocities with Gaussian weights; the sampler then makes one
  global Euler update, so the noise and the trajectory stay global.

Every adapter counts its network evaluations per image in ``nfe`` (a guided step costs 2).
Tiles are laid out and weighted by ``vosr.tiling``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vosr.conditions import partial_condition
from vosr.tiling import gaussian_weights, tile_grid

__all__ = [
    "Velocity",
    "ConditionalVelocity",
    "GuidedVelocity",
    "TiledVelocity",
    "Tile",
    "tiled",
    "time_grid",
    "sample_euler",
    "sample_two_time",
]

Time = float | torch.Tensor
Velocity = Callable[[torch.Tensor, float, "float | None"], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor], None]


def _times(t: Time, batch: int, like: torch.Tensor) -> torch.Tensor:
    """(batch,) float32 times: a python float repeated, or a per-sample (batch,) tensor."""
    if isinstance(t, torch.Tensor):
        return t.to(device=like.device, dtype=torch.float32).expand(batch)
    return torch.full((batch,), float(t), device=like.device, dtype=torch.float32)


def _param_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _tokens(semantic: torch.Tensor | None) -> torch.Tensor:
    if semantic is None:
        raise ValueError("this velocity adapter is a template for tiles (semantic=None): call the tiled adapter")
    return semantic


class ConditionalVelocity:
    """``model(cat[c_str, z], t, semantic, r)``: the plain conditional velocity.

    Args:
        model: the backbone.
        c_str: (B, C, H, W) structural latent.
        semantic: (B, N, E) raw semantic tokens; None for a template whose tiles bring their own
            (``tiled`` calls ``with_conditions``).
    """

    def __init__(self, model: torch.nn.Module, c_str: torch.Tensor, semantic: torch.Tensor | None) -> None:
        self.model, self.c_str, self.semantic = model, c_str, semantic
        self.nfe = 0

    def with_conditions(self, c_str: torch.Tensor, semantic: torch.Tensor) -> ConditionalVelocity:
        return ConditionalVelocity(self.model, c_str, semantic)

    def __call__(self, z: torch.Tensor, t: float, r: float | None = None) -> torch.Tensor:
        B = z.shape[0]
        dtype = _param_dtype(self.model)
        x = torch.cat([self.c_str, z], dim=1).to(dtype)  # (B, 2C, H, W), c_str first
        rr = None if r is None else _times(r, B, z)
        self.nfe += 1
        # the velocity comes back in z's dtype: the trajectory stays fp32 under a bf16 network
        return self.model(x, _times(t, B, z), _tokens(self.semantic).to(dtype), rr).to(z.dtype)


class GuidedVelocity:
    """Partial-conditioning guidance, both branches batched as 2B in one forward pass.

    v = v_p + omega (v_c - v_p); omega = 1 is the conditional model (then only the conditional
    branch runs), omega < 0 is allowed (the RealSR preset uses -0.5).

    Args:
        model: the backbone.
        c_str: (B, C, H, W) structural latent.
        semantic: (B, N, E) raw semantic tokens; None for a template whose tiles bring their own.
        guidance: omega.
        weak_strength: w of the partial condition (w * c_str, zero semantic tokens).
        partial: an explicit partial branch ``(structure, semantic)`` instead of the one built
            from ``c_str`` (distillation's teacher: ``c_str`` is noise-augmented, its partial
            branch uses the clean latent).

    Called as ``velocity(z, t, r)`` with python-float times (sampling) or per-sample (B,)
    tensors (distillation).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        c_str: torch.Tensor,
        semantic: torch.Tensor | None,
        guidance: float,
        weak_strength: float,
        partial: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.model, self.c_str, self.semantic = model, c_str, semantic
        self.guidance, self.weak_strength = float(guidance), float(weak_strength)
        self.partial = partial
        self.nfe = 0

    def with_conditions(self, c_str: torch.Tensor, semantic: torch.Tensor) -> GuidedVelocity:
        if self.partial is not None:
            raise ValueError("a GuidedVelocity with an explicit partial branch cannot be re-conditioned per tile")
        return GuidedVelocity(self.model, c_str, semantic, self.guidance, self.weak_strength)

    def __call__(self, z: torch.Tensor, t: Time, r: Time | None = None) -> torch.Tensor:
        B = z.shape[0]
        dtype = _param_dtype(self.model)
        c_str = self.c_str.to(z.dtype)
        semantic = _tokens(self.semantic)
        tt = _times(t, B, z)
        rr = None if r is None else _times(r, B, z)
        if self.guidance == 1.0:
            self.nfe += 1
            x = torch.cat([c_str, z], 1).to(dtype)
            return self.model(x, tt, semantic.to(dtype), rr).to(z.dtype)
        if self.partial is not None:
            weak_str, weak_sem = self.partial[0].to(z.dtype), self.partial[1]
        else:
            weak_str, weak_sem = partial_condition(c_str, semantic, self.weak_strength)
        x = torch.cat([torch.cat([c_str, z], 1), torch.cat([weak_str, z], 1)], 0)  # (2B, 2C, H, W)
        sem = torch.cat([semantic, weak_sem], 0)  # (2B, N, E)
        self.nfe += 2
        v = self.model(
            x.to(dtype), torch.cat([tt, tt]), sem.to(dtype), None if rr is None else torch.cat([rr, rr])
        ).to(z.dtype)
        v_cond, v_pcond = v.chunk(2)
        return v_pcond + self.guidance * (v_cond - v_pcond)


# --- tiled velocity ------------------------------------------------------------------


@dataclass
class Tile:
    """One latent tile: its box and the velocity adapter holding its own conditions."""

    y: int
    x: int
    h: int
    w: int
    velocity: Velocity


class TiledVelocity:
    """Blend a velocity computed tile by tile (Gaussian-weighted average over overlaps).

    Each tile's adapter carries that tile's c_str crop and semantic tokens (computed from the
    tile's image region), so conditions are local like the model saw in training, while the
    noise and the Euler update stay global. With ``batch > 1``, that many equally sized tiles
    go through the network in one batched pass (faster on GPUs; the same numbers up to float
    rounding, since every layer is per sample).
    """

    def __init__(self, tiles: Sequence[Tile], latent_hw: tuple[int, int], batch: int = 1) -> None:
        self.tiles = list(tiles)
        self.latent_hw = latent_hw
        self.batch = max(1, int(batch))
        self._weights: dict[tuple[int, int], torch.Tensor] = {}
        self._groups: list[tuple[list[Tile], Velocity]] | None = None

    @property
    def nfe(self) -> float:
        """Network passes summed over the tiles (a guided step over k tiles costs 2k)."""
        if self.batch == 1:
            return sum(getattr(t.velocity, "nfe", 0) for t in self.tiles)
        return sum(getattr(adapter, "nfe", 0) * len(group) for group, adapter in self.groups())

    def groups(self) -> list[tuple[list[Tile], Velocity]]:
        """Tiles in batches of equal size, each with one adapter holding the stacked conditions."""
        if self._groups is None:
            by_size: dict[tuple[int, int], list[Tile]] = {}
            for tile in self.tiles:
                by_size.setdefault((tile.h, tile.w), []).append(tile)
            self._groups = []
            for same in by_size.values():
                for i in range(0, len(same), self.batch):
                    group = same[i : i + self.batch]
                    first = group[0].velocity
                    c_str = torch.cat([t.velocity.c_str for t in group], 0)  # type: ignore[attr-defined]
                    sem = torch.cat([t.velocity.semantic for t in group], 0)  # type: ignore[attr-defined]
                    self._groups.append((group, first.with_conditions(c_str, sem)))  # type: ignore[attr-defined]
        return self._groups

    def _accumulate(self, out, norm, tile: Tile, v: torch.Tensor) -> None:
        key = (tile.h, tile.w)
        if key not in self._weights:
            self._weights[key] = gaussian_weights(tile.h, tile.w).to(v.device)
        wgt = self._weights[key]
        out[:, :, tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] += v.float() * wgt
        norm[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] += wgt

    def __call__(self, z: torch.Tensor, t: float, r: float | None = None) -> torch.Tensor:
        out = torch.zeros_like(z, dtype=torch.float32)
        norm = torch.zeros(z.shape[-2:], dtype=torch.float32, device=z.device)

        def crop(tile: Tile) -> torch.Tensor:
            return z[:, :, tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]

        if self.batch == 1:
            for tile in self.tiles:
                self._accumulate(out, norm, tile, tile.velocity(crop(tile), t, r))
        else:
            for group, adapter in self.groups():
                vs = adapter(torch.cat([crop(tile) for tile in group], 0), t, r).split(z.shape[0])
                for tile, v in zip(group, vs, strict=True):
                    self._accumulate(out, norm, tile, v)
        return (out / norm).to(z.dtype)


def tiled(
    base: ConditionalVelocity | GuidedVelocity,
    c_str: torch.Tensor,
    semantic_for_box: Callable[[int, int, int, int], torch.Tensor],
    tile: int,
    overlap: int,
    batch: int = 1,
    layout: str = "release",
) -> Velocity:
    """Wrap ``base`` into a ``TiledVelocity`` over c_str's latent grid.

    Args:
        base: an adapter whose ``with_conditions`` builds a tile's adapter.
        c_str: (B, C, H, W) global structural latent.
        semantic_for_box: (y, x, h, w) latent box -> (B, N, E) semantic tokens of that region;
            called once per tile, and never when one tile covers the latent.
        tile: latent tile side; overlap: latent pixels shared by neighbours.
        batch: tiles per network pass.
        layout: ``release`` or ``rect`` (see ``tile_grid``).
    Returns ``base`` itself (no tiling) when one tile covers the latent.
    """
    H, W = c_str.shape[-2:]
    ys, xs, h, w = tile_grid(H, W, tile, overlap, layout)
    if len(ys) == 1 and len(xs) == 1:
        return base
    tiles = []
    for y in ys:
        for x in xs:
            crop = c_str[:, :, y : y + h, x : x + w]
            tiles.append(Tile(y, x, h, w, base.with_conditions(crop, semantic_for_box(y, x, h, w))))
    return TiledVelocity(tiles, (H, W), batch=batch)


# --- samplers -----------------------------------------------------------------------------


def time_grid(steps: int) -> list[float]:
    """t_0 = 1 > t_1 > ... > t_N = 0, evenly spaced (torch.linspace(1, 0, N + 1) in float32)."""
    return [float(v) for v in torch.linspace(1.0, 0.0, steps + 1)]


def sample_euler(
    velocity: Velocity, noise: torch.Tensor, steps: int, callback: Callback | None = None
) -> torch.Tensor:
    """Multi-step Euler from noise (t = 1) to data (t = 0): z <- z - (t_i - t_i+1) v(z, t_i).

    The flow is z_t = (1 - t) x0 + t eps with velocity eps - x0 (rectified flow; VOSR Sec. 3).

    Args:
        velocity: adapter ``(z, t, r) -> v``; called with r = None.
        noise: (B, C, H, W) standard normal latent (eps).
        steps: N Euler steps.
        callback: called as ``callback(i, steps, z)`` after each step (progress bars).
    Returns:
        (B, C, H, W) the predicted clean latent x0.
    """
    ts = time_grid(steps)
    z = noise
    for i in range(steps):
        z = z - (ts[i] - ts[i + 1]) * velocity(z, ts[i], None)
        if callback is not None:
            callback(i, steps, z)
    return z


def sample_two_time(
    velocity: Velocity, noise: torch.Tensor, steps: int = 1, callback: Callback | None = None
) -> torch.Tensor:
    """One- or few-step sampling of a distilled two-time model S(z, t, r).

    z <- z - (t_i - t_i+1) S(z, t_i, r = t_i+1); with one step x0 = eps - S(eps, 1, 0).
    Arguments as ``sample_euler``.
    """
    ts = time_grid(steps)
    z = noise
    for i in range(steps):
        z = z - (ts[i] - ts[i + 1]) * velocity(z, ts[i], ts[i + 1])
        if callback is not None:
            callback(i, steps, z)
    return z
