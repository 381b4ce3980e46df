"""Flow-matching conventions: interpolation, velocity target, Euler steps, time sampling."""

from __future__ import annotations

import torch

from vosr import flow
from vosr.conditions import augment_condition


def test_interpolation_end_points_and_velocity() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    assert torch.equal(flow.interpolate(x0, eps, torch.zeros(3)), x0)
    assert torch.equal(flow.interpolate(x0, eps, torch.ones(3)), eps)
    t = torch.tensor([0.1, 0.5, 0.9])
    v = flow.velocity_target(x0, eps)
    # the path is straight: d z_t / dt = eps - x0, checked by a finite difference
    h = 1e-3
    dz = (flow.interpolate(x0, eps, t + h) - flow.interpolate(x0, eps, t - h)) / (2 * h)
    assert torch.allclose(dz, v, atol=1e-3)


def test_euler_with_the_true_velocity_recovers_data_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    z = eps.clone()
    ts = torch.linspace(1, 0, 26)
    for a, b in zip(ts[:-1], ts[1:], strict=True):
        z = flow.euler_step(z, flow.velocity_target(x0, eps), a.expand(2), b.expand(2))
    assert torch.allclose(z, x0, atol=1e-5)


def test_distillation_times_are_ordered_and_biased_to_noise() -> None:
    t, r = flow.sample_distill_times(20000, torch.Generator().manual_seed(0))
    assert torch.all(r <= t) and torch.all(r >= 0) and torch.all(t <= 1)
    # t = max(u1, u2) has mean 2/3; r = t (1 - g) has mean 1/3
    assert abs(t.mean() - 2 / 3) < 0.01 and abs(r.mean() - 1 / 3) < 0.01


def test_condition_augmentation_keeps_scale_and_is_mostly_clean() -> None:
    c = torch.randn(4000, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    out = augment_condition(c, torch.Generator().manual_seed(1))
    # a = sigmoid(N(5, 1)) ~ 0.99: variance preserving, correlation with the clean input high
    assert abs(out.std() - 1) < 0.02
    corr = torch.corrcoef(torch.stack([out.flatten(), c.flatten()]))[0, 1]
    assert 0.97 < corr < 0.999
