"""Rectified-flow conventions of VOSR (vosr-reference.md, sections 2, 4 and 5).

Time runs from data to noise: ``t = 0`` is the clean latent ``x0`` and ``t = 1`` pure Gaussian
noise ``eps``. The network predicts the velocity ``dz/dt = eps - x0``, so an Euler step towards
the data is ``z <- z - (t_i - t_{i+1}) v``. Times are floats in [0, 1] with shape (B,).
"""

from __future__ import annotations

import torch


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) matching ``like``'s rank and dtype."""
    return t.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``z_t = (1 - t) x0 + t eps``; x0, eps (B, C, H, W), t (B,) in [0, 1]."""
    tb = _bcast(t, x0)
    return (1 - tb) * x0 + tb * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target ``v = eps - x0`` (constant along the straight path)."""
    return eps - x0


def euler_step(z: torch.Tensor, v: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step from ``t`` to ``t_next`` (both (B,), ``t_next < t`` goes towards data)."""
    return z - _bcast(t - t_next, z) * v


def sample_time(batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Training times ``t ~ U(0, 1)`` (the released configs' uniform sampling), shape (B,)."""
    return torch.rand(batch, generator=generator).to(device)


def sample_distill_times(
    batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distillation times: ``t = max(u1, u2)`` (biased towards noise), ``r = t (1 - g)``.

    All of ``u1, u2, g ~ U(0, 1)``, so ``0 <= r <= t <= 1``. Returns (t, r), each (B,).
    """
    u = torch.rand(2, batch, generator=generator)
    t = u.max(dim=0).values
    r = t * (1 - torch.rand(batch, generator=generator))
    return t.to(device), r.to(device)


def augment_condition(
    c: torch.Tensor, generator: torch.Generator | None = None, mean: float = 5.0, std: float = 1.0
) -> torch.Tensor:
    """Noise augmentation of the structural condition: ``a c + sqrt(1 - a^2) eps'``.

    ``a = sigmoid(N(mean, std))`` per sample (about 0.993 on average: mostly clean, sometimes
    visibly noisy) so the model does not trust LR latents blindly. c (B, C, H, W).
    """
    b = c.shape[0]
    a = torch.sigmoid(mean + std * torch.randn(b, generator=generator)).to(c.device, c.dtype)
    noise = torch.randn(c.shape, generator=generator).to(c.device, c.dtype)
    ab = _bcast(a, c)
    return ab * c + torch.sqrt(1 - ab * ab) * noise
