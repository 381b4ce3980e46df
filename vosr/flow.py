"""Rectified-flow conventions of VOSR and the multi-step training loss.

``docs/vosr-reference.md``, "4. Flow matching and sampling": time runs from data to noise:
``t = 0`` is the clean latent ``x0`` and ``t = 1`` pure Gaussian noise ``eps``. The network
predicts the velocity ``dz/dt = eps - x0``, so an Euler step towards the data is
``z <- z - (t_i - t_{i+1}) v``. Times are floats in [0, 1] with shape (B,).

:func:`flow_matching_loss` is the multi-step training objective (the distillation one is
``vosr.distill.distillation_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vosr.conditions import training_conditions
from vosr.degradations import per_sample
from vosr.recipes import ConditionConfig


def broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) matching ``like``'s rank and dtype."""
    return t.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``z_t = (1 - t) x0 + t eps``; x0, eps (B, C, H, W), t (B,) in [0, 1]."""
    tb = broadcast_time(t, x0)
    return (1 - tb) * x0 + tb * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target ``v = eps - x0`` (constant along the straight path)."""
    return eps - x0


def euler_step(z: torch.Tensor, v: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step from ``t`` to ``t_next`` (both (B,), ``t_next < t`` goes towards data)."""
    return z - broadcast_time(t - t_next, z) * v


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


def flow_matching_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    c_str: torch.Tensor,
    semantic: torch.Tensor,
    gens: Sequence[torch.Generator],
    step_gen: torch.Generator,
    cc: ConditionConfig,
    *,
    bf16: bool = False,
) -> torch.Tensor:
    """The flow-matching MSE of one batch, with the released condition handling.

    Per sample (from its own generator, in this order): ``t ~ U(0, 1)``, ``eps ~ N(0, I)``, then
    the condition augmentation and dropout of :func:`vosr.conditions.training_conditions` (the
    weak strength from ``step_gen``, once per step). The network sees ``cat[c_str', z_t]`` with
    ``z_t = (1 - t) x0 + t eps`` and regresses ``eps - x0``.

    Args:
        model: the backbone (or its DDP wrapper) being trained.
        x0: (B, C, H, W) clean HQ latents; c_str: (B, C, H, W) clean LQ latents; semantic: (B, N, E).
        gens: one generator per sample; step_gen: the step's generator.
        cc: the condition design (``TrainConfig.conditions``).
        bf16: run the network under bf16 autocast (the loss is computed in float32).
    Returns:
        The scalar loss (mean over every element of the batch).
    """
    dev = x0.device
    t = per_sample(gens, lambda g: torch.rand(1, generator=g)).to(dev)
    eps = per_sample(gens, lambda g: torch.randn(1, *x0.shape[1:], generator=g)).to(dev, x0.dtype)
    c, sem, _, _ = training_conditions(c_str, semantic, gens, step_gen, cc)
    z_t = interpolate(x0, eps, t)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        v = model(torch.cat([c, z_t], dim=1), t, sem)
    return F.mse_loss(v.float(), velocity_target(x0, eps).float())
