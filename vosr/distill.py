"""One-step distillation: the guided teacher target, the base loss, RC and shortcut.

Formulas are the VOSR appendix's (``docs/vosr-reference.md``, "5. Distillation (one step)").
The student is any callable ``student(z, t, r) -> v`` with its conditions already bound (the
released ones, ``vosr.conditions.distill_conditions``: the noise-augmented structural condition,
10% of the samples dropped to the partial condition); ``z`` (B, C, H, W) latents, ``t``/``r``
(B,) times with ``0 <= r <= t <= 1``. The teacher's guided velocity is the sampler's adapter
(``vosr.sampling.GuidedVelocity``), so training targets and inference use one formula. The
variant changes only the consistency term; :func:`distillation_loss` is the whole objective of a
batch, as ``vosr.flow.flow_matching_loss`` is for multi-step training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vosr.conditions import Conditions, distill_conditions
from vosr.degradations import per_sample
from vosr.flow import broadcast_time, euler_step, interpolate, sample_distill_times
from vosr.recipes import DistillConfig
from vosr.sampling import GuidedVelocity

__all__ = [
    "Student",
    "velocity",
    "distillation_loss",
    "distill_losses",
    "rc_target",
    "rc_loss",
    "shortcut_loss",
]

Student = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def velocity(
    model: torch.nn.Module, z: torch.Tensor, t: torch.Tensor, cond: Conditions, r: torch.Tensor | None = None
) -> torch.Tensor:
    """``model(cat([c_str, z]), t, semantic, r)``: the network's velocity (B, C, H, W)."""
    return model(torch.cat([cond.structure, z], dim=1), t, cond.semantic, r)


def distillation_loss(
    model: torch.nn.Module,
    model_sg: torch.nn.Module,
    teacher: torch.nn.Module,
    x0: torch.Tensor,
    c_str: torch.Tensor,
    semantic: torch.Tensor,
    gens: Sequence[torch.Generator],
    cond_gens: Sequence[torch.Generator],
    dc: DistillConfig,
    *,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_base + weight * L_u, L_base, L_u)`` of one distillation batch.

    Per sample (``gens``, in this order): ``(t, r)`` of ``vosr.flow.sample_distill_times`` and
    ``eps``; its conditions from ``cond_gens`` (:func:`vosr.conditions.distill_conditions`). The
    target is the teacher's guided velocity ``v_p + omega (v_c - v_p)`` at ``z_t``.

    Args:
        model: the student being trained (or its DDP wrapper); model_sg: the same network for the
            detached roll-outs (the unwrapped module, so no-grad calls skip gradient bookkeeping).
        teacher: the frozen multi-step model.
        x0: (B, C, H, W) clean HQ latents; c_str: (B, C, H, W) clean LQ latents; semantic: (B, N, E).
        dc: the distillation settings (variant, omega, weak strength, RC constants).
        bf16: run the networks under bf16 autocast (the losses are computed in float32).
    """
    dev = x0.device
    times = [sample_distill_times(1, g) for g in gens]
    t = torch.cat([a for a, _ in times]).to(dev)
    r = torch.cat([b for _, b in times]).to(dev)
    eps = per_sample(gens, lambda g: torch.randn(1, *x0.shape[1:], generator=g)).to(dev, x0.dtype)
    z_t = interpolate(x0, eps, t)
    conds = distill_conditions(c_str, semantic, cond_gens, dc)
    cond = conds.student  # the student and its roll-outs; the teacher's branches below
    partial = (conds.teacher_partial.structure, conds.teacher_partial.semantic)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        guided = GuidedVelocity(teacher, conds.teacher.structure, conds.teacher.semantic, dc.guidance,
                                dc.weak_strength, partial=partial)  # fmt: skip
        with torch.no_grad():
            v_tea = guided(z_t, t).float()

        def student(z: torch.Tensor, tt: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            n = z.shape[0] // cond.structure.shape[0]
            c = Conditions(cond.structure.repeat(n, 1, 1, 1), cond.semantic.repeat(n, 1, 1))
            return velocity(model, z, tt, c, rr)

        def student_sg(z: torch.Tensor, tt: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            return velocity(model_sg, z, tt, cond, rr)

        l_base, l_u = distill_losses(
            student, student_sg, z_t, t, r, v_tea, dc.variant, dc.delta, dc.rollout_steps, dc.clip
        )
    return l_base + dc.consistency_weight * l_u, l_base, l_u


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
        dt = broadcast_time(t_i - t_n, z)
        disp = disp + v_i * dt
        z = z - v_i * dt
    d = torch.clamp(t - r, min=1e-6)
    near = t < r + delta + 1e-6
    c_l = torch.where(near, torch.ones_like(d), d / delta)
    c_r = torch.where(near, 1.0 / d, torch.full_like(d, 1.0 / delta))
    corr = broadcast_time(c_l, u_sg) * u_sg - broadcast_time(c_r, disp) * disp - v_tea.float()
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
