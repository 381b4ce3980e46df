"""One-step distillation losses: the guided teacher target, the base loss, RC and shortcut.

Formulas are the VOSR appendix's (vosr-reference.md section 5). The student is any callable
``student(z, t, r) -> v`` with its conditions already bound (the trainer binds the released
ones, ``vosr.train.distill_conditions``: the noise-augmented structural condition, 10% of the
samples dropped to the partial condition); ``z`` (B, C, H, W) latents, ``t``/``r`` (B,) times
with ``0 <= r <= t <= 1``. The variant changes only :func:`consistency_loss`; everything else in the
trainer is shared with multi-step training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vosr.flow import _bcast, euler_step

Student = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Conditions:
    """Network conditions of a batch: structural latent (B, C, H, W), semantic tokens (B, N, E)."""

    structure: torch.Tensor
    semantic: torch.Tensor


def velocity(model: torch.nn.Module, z: torch.Tensor, t: torch.Tensor, cond: Conditions, r: torch.Tensor | None = None) -> torch.Tensor:
    """``model(cat([c_str, z]), t, semantic, r)``: the network's velocity (B, C, H, W)."""
    return model(torch.cat([cond.structure, z], dim=1), t, cond.semantic, r)


@torch.no_grad()
def guided_velocity(
    model: torch.nn.Module, z: torch.Tensor, t: torch.Tensor, cond: Conditions, pcond: Conditions, omega: float
) -> torch.Tensor:
    """``v = v_pcond + omega (v_cond - v_pcond)`` with both branches in one 2B batch (Eq. 1)."""
    both = Conditions(torch.cat([cond.structure, pcond.structure]), torch.cat([cond.semantic, pcond.semantic]))
    v_c, v_p = velocity(model, torch.cat([z, z]), torch.cat([t, t]), both).chunk(2)
    return v_p + omega * (v_c - v_p)


def distill_losses(
    student: Student,
    student_sg: Student,
    z_t: torch.Tensor,
    t: torch.Tensor,
    r: torch.Tensor,
    v_tea: torch.Tensor,
    variant: str = "rc",
    delta: float = 0.01,
    rollout_steps: int = 2,
    clip: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_base, L_u)`` of one batch.

    ``student`` carries gradients; ``student_sg`` is the same network for the detached
    roll-outs (under DDP the unwrapped module, so no-grad calls skip gradient bookkeeping).
    ``S(z_t, t, t)`` and ``u = S(z_t, t, r)`` are evaluated in one 2B forward pass.
    """
    v = student(torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([t, r]))
    v_base, u = v.chunk(2)
    l_base = F.mse_loss(v_base.float(), v_tea.float())  # appendix Eq. 2: S(z_t, t, r = t) vs v_tea
    if variant == "rc":
        l_u = rc_loss(u, student_sg, z_t, t, r, v_tea, delta, rollout_steps, clip)
    elif variant == "shortcut":
        l_u = shortcut_loss(u, student_sg, z_t, t, r)
    else:
        raise ValueError(f"unknown distillation variant {variant!r}; choose 'rc' or 'shortcut'")
    return l_base, l_u


@torch.no_grad()
def rc_target(
    u: torch.Tensor,
    student_sg: Student,
    z_t: torch.Tensor,
    t: torch.Tensor,
    r: torch.Tensor,
    v_tea: torch.Tensor,
    delta: float = 0.01,
    rollout_steps: int = 2,
    clip: float = 1.0,
) -> torch.Tensor:
    """The RC regression target for ``u = S(z_t, t, r)`` (appendix Eqs. 8-13).

    The average velocity must make ``u (t - r)`` equal one teacher step of length ``t - t_m``
    plus the detached student's own displacement from ``t_m`` to ``r`` (``rollout_steps`` Euler
    sub-steps calling ``S(., t_i, t_{i+1})``). Dividing that identity by ``delta`` (far from the
    diagonal) or by ``t - r`` (near it) gives the residual ``corr``; the target is
    ``sg(u) - clip(corr)``. When ``t < r + delta``: ``t_m = r``, the roll-out is empty and the
    target is ``v_tea`` (up to the clip).
    """
    u_sg = u.detach().float()
    t_m = torch.maximum(t - delta, r)
    z = euler_step(z_t.float(), v_tea.float(), t, t_m)
    disp = torch.zeros_like(z)
    for i in range(rollout_steps):
        t_i = t_m + (r - t_m) * (i / rollout_steps)
        t_n = t_m + (r - t_m) * ((i + 1) / rollout_steps)
        v_i = student_sg(z.to(z_t.dtype), t_i, t_n).float()
        dt = _bcast(t_i - t_n, z)
        disp = disp + v_i * dt
        z = z - v_i * dt
    d = torch.clamp(t - r, min=1e-6)
    near = t < r + delta + 1e-6
    c_l = torch.where(near, torch.ones_like(d), d / delta)
    c_r = torch.where(near, 1.0 / d, torch.full_like(d, 1.0 / delta))
    corr = _bcast(c_l, u_sg) * u_sg - _bcast(c_r, disp) * disp - v_tea.float()
    return u_sg - corr.clamp(-clip, clip)


def rc_loss(
    u: torch.Tensor,
    student_sg: Student,
    z_t: torch.Tensor,
    t: torch.Tensor,
    r: torch.Tensor,
    v_tea: torch.Tensor,
    delta: float = 0.01,
    rollout_steps: int = 2,
    clip: float = 1.0,
) -> torch.Tensor:
    """``L_u = MSE(u, rc_target(...))``; near the diagonal this is ``MSE(u, v_tea)``."""
    target = rc_target(u, student_sg, z_t, t, r, v_tea, delta, rollout_steps, clip)
    return F.mse_loss(u.float(), target)


def shortcut_loss(u: torch.Tensor, student_sg: Student, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The shortcut (self-consistency) term (appendix Eqs. 3-7) for ``u = S(z_t, t, r)``.

    Two half jumps ``t -> s -> r`` (s = (t + r) / 2) of the detached student define the target
    of the full jump: ``MSE(u, sg((u_ts + u_sr) / 2))``.
    """
    with torch.no_grad():
        s = (t + r) / 2
        u_ts = student_sg(z_t, t, s)
        z_s = euler_step(z_t, u_ts, t, s)
        u_sr = student_sg(z_s, s, r)
        target = (u_ts.float() + u_sr.float()) / 2
    return F.mse_loss(u.float(), target)
