"""Distillation losses: formulas of docs/vosr-reference.md, "5. Distillation (one step)", on small
analytic students."""

from __future__ import annotations

import pytest
import torch

from vosr import create_model
from vosr.conditions import Conditions
from vosr.distill import distill_losses, rc_loss, rc_target, shortcut_loss, velocity
from vosr.sampling import GuidedVelocity
from vosr.statedict import check_state_dict, load_state_dict_strict


def _linear_student(a: float, b: float):
    """S(z, t, r) = a z + b (t - r) z: depends on r, exactly zero consistency for b = 0."""

    def s(z, t, r):
        return a * z + b * (t - r).view(-1, 1, 1, 1) * z

    return s


def test_rc_target_reduces_to_the_teacher_velocity_near_the_diagonal() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 4, 8, 8, generator=g)
    v_tea = torch.randn(4, 4, 8, 8, generator=g) * 0.1
    t = torch.tensor([0.9, 0.5, 0.3, 0.7])
    r = t - 0.004  # t < r + delta: "near"
    student = _linear_student(0.05, 0.3)
    u = student(z, t, r)
    target = rc_target(u, student, z, t, r, v_tea)
    # near: t_m = r, empty roll-out, target = sg(u) - clip(u - v_tea) = v_tea when |u - v_tea| < 1
    assert torch.allclose(target, v_tea, atol=1e-6)
    # so L_u equals the base loss when r -> t
    base = torch.nn.functional.mse_loss(student(z, t, t), v_tea)
    l_u = rc_loss(u, student, z, t, r, v_tea)
    assert torch.allclose(l_u, base, rtol=0.02)


def test_rc_far_branch_is_zero_for_a_consistent_student() -> None:
    """A student whose average velocity is exact (constant flow) has corr = 0 when v_tea agrees."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, 8, 8, generator=g)
    v = torch.randn(3, 4, 8, 8, generator=g)

    def const(zz, tt, rr):
        return v.expand_as(zz)

    t = torch.tensor([0.9, 0.8, 0.6])
    r = torch.tensor([0.1, 0.3, 0.5])
    target = rc_target(v, const, z, t, r, v)
    # (t - r) / delta ~ 80: float32 cancellation leaves ~1e-5 residuals
    assert torch.allclose(target, v, atol=1e-4)
    # a wrong teacher shifts the target by the clipped residual
    target2 = rc_target(v, const, z, t, r, v + 5.0)
    assert torch.allclose(target2, v + 1.0, atol=1e-4)  # clip at +-1


def test_shortcut_loss_is_zero_for_a_self_consistent_student() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, 8, 8, generator=g)
    t, r = torch.tensor([0.9, 0.7]), torch.tensor([0.2, 0.1])
    consistent = _linear_student(0.0, 0.0)
    assert shortcut_loss(consistent(z, t, r), consistent, z, t, r) == 0
    inconsistent = _linear_student(0.5, 0.5)
    assert shortcut_loss(inconsistent(z, t, r), inconsistent, z, t, r) > 1e-3


def test_guided_velocity_formula_and_batching() -> None:
    """The teacher target is the sampler's guided adapter with per-sample times and the explicit
    partial branch of distillation: v_p + omega (v_c - v_p), both branches from separate passes."""
    torch.manual_seed(0)
    model = create_model("vosr-tiny").eval()
    z = torch.randn(2, 4, 16, 16)
    t = torch.rand(2)
    cond = Conditions(torch.randn(2, 4, 16, 16), torch.randn(2, 5, 64))
    pcond = Conditions(0.1 * torch.randn(2, 4, 16, 16), torch.zeros(2, 5, 64))  # not 0.1 * cond: explicit
    with torch.no_grad():
        v_c = velocity(model, z, t, cond)
        v_p = velocity(model, z, t, pcond)
        for omega in (-0.5, 0.5, 1.0):
            ref = v_p + omega * (v_c - v_p)
            guided = GuidedVelocity(model, cond.structure, cond.semantic, omega, 0.1,
                                    partial=(pcond.structure, pcond.semantic))  # fmt: skip
            assert torch.allclose(guided(z, t), ref, atol=1e-5)
    with pytest.raises(ValueError, match="explicit partial branch"):
        guided.with_conditions(cond.structure, cond.semantic)


@pytest.mark.parametrize("variant", ["rc", "shortcut"])
def test_student_initialised_from_teacher_matches_it_at_r_equals_t(variant: str) -> None:
    """At init the student is the teacher (r_embedder enters as (t - r) r_emb(r)): L_base = teacher gap."""
    torch.manual_seed(0)
    teacher = create_model("vosr-tiny").eval()
    student = create_model("vosr-tiny", one_step=True)
    report = check_state_dict(student, teacher.state_dict())
    assert all(k.startswith("r_embedder.") for k in report.missing) and not report.unexpected
    fresh = {k: v for k, v in student.state_dict().items() if k in report.missing}
    load_state_dict_strict(student, {**teacher.state_dict(), **fresh})
    z = torch.randn(2, 4, 16, 16)
    t, r = torch.tensor([0.8, 0.6]), torch.tensor([0.3, 0.2])
    cond = Conditions(torch.randn(2, 4, 16, 16), torch.randn(2, 5, 64))
    with torch.no_grad():
        v_tea = velocity(teacher, z, t, cond)
    both = lambda zz, tt, rr: velocity(student, zz, tt, Conditions(cond.structure.repeat(2, 1, 1, 1), cond.semantic.repeat(2, 1, 1)), rr)  # noqa: E731
    single = lambda zz, tt, rr: velocity(student, zz, tt, cond, rr)  # noqa: E731
    l_base, l_u = distill_losses(both, single, z, t, r, v_tea, variant)
    assert l_base < 1e-10  # S(z, t, t) == T(z, t) exactly at init
    assert torch.isfinite(l_u)
    l_base.add(l_u).backward()
    assert student.r_embedder.mlp[0].weight.grad is not None
