"""Real-ESRGAN second-order degradation: parameter ranges, kernels, sizes, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vosr.degradations import (
    KERNEL_TYPES,
    MAX_KERNEL,
    SINC,
    DegradationConfig,
    StageConfig,
    anisotropic_kernel,
    degrade,
    filter2d,
    sample_kernel,
    sample_params,
    sinc_kernel,
)

CFG = DegradationConfig()


def _check_kernel(k, stage: StageConfig, final: bool = False) -> None:
    assert k.kernel.shape == (MAX_KERNEL, MAX_KERNEL)
    assert torch.isclose(k.kernel.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert k.size in stage.kernel_sizes
    if k.kind == SINC:
        lo = math.pi / 3 if (final or k.size < 13) else math.pi / 5
        assert lo <= k.cutoff <= math.pi
        return
    name = KERNEL_TYPES[k.kind]
    assert stage.sigma[0] <= k.sigma_x <= stage.sigma[1]
    assert stage.sigma[0] <= k.sigma_y <= stage.sigma[1]
    assert -math.pi <= k.theta <= math.pi
    if name.endswith("_iso"):
        assert k.sigma_x == k.sigma_y and k.theta == 0.0
    if name.startswith("generalized"):
        assert stage.beta_gaussian[0] <= k.beta <= stage.beta_gaussian[1]
    elif name.startswith("plateau"):
        assert stage.beta_plateau[0] <= k.beta <= stage.beta_plateau[1]
    else:
        assert k.beta == 1.0
    # zero padding outside the drawn support
    pad = (MAX_KERNEL - k.size) // 2
    if pad:
        assert k.kernel[:pad].abs().max() == 0 and k.kernel[:, -pad:].abs().max() == 0


def _check_stage(p, stage: StageConfig, n: int) -> None:
    for k in p.kernels:
        _check_kernel(k, stage)
    lo, hi = stage.resize_range
    if p.resize_kind == 0:
        assert 1.0 <= p.resize_scale <= hi
    elif p.resize_kind == 1:
        assert lo <= p.resize_scale <= 1.0
    else:
        assert p.resize_scale == 1.0
    assert p.resize_mode in ("area", "bilinear", "bicubic")
    if p.gaussian:
        assert torch.all(p.noise_amount >= stage.noise_sigma[0] / 255 - 1e-9)
        assert torch.all(p.noise_amount <= stage.noise_sigma[1] / 255 + 1e-9)
    else:
        assert torch.all(p.noise_amount >= stage.poisson_scale[0]) and torch.all(p.noise_amount <= stage.poisson_scale[1])
    assert torch.all(p.jpeg_quality >= stage.jpeg_quality[0]) and torch.all(p.jpeg_quality <= stage.jpeg_quality[1])
    assert p.gray.shape == (n,) and p.noise_amount.shape == (n,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), step=st.integers(0, 10**6), first_id=st.integers(0, 10**9))
def test_parameter_ranges_hold_for_any_seed(seed: int, step: int, first_id: int) -> None:
    ids = list(range(first_id, first_id + 3))
    p = sample_params(CFG, ids, ("step", step), seed)
    _check_stage(p.first, CFG.first, 3)
    _check_stage(p.second, CFG.second, 3)
    assert p.first.blur  # the first order always blurs
    for k in p.final_sinc:
        if k is not None:
            _check_kernel(k, CFG.first, final=True)


def test_reference_ranges_are_the_defaults() -> None:
    """The documented Real-ESRGAN numbers (docs/vosr-reference.md, "6. Training recipe (appendix Table 3 and the released configs)")."""
    a, b = CFG.first, CFG.second
    assert a.kernel_sizes == tuple(range(7, 22, 2)) and a.sinc_prob == 0.1
    assert a.kernel_probs == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert a.sigma == (0.2, 3.0) and a.beta_gaussian == (0.5, 4.0) and a.beta_plateau == (1.0, 2.0)
    assert a.resize_probs == (0.2, 0.7, 0.1) and a.resize_range == (0.15, 1.5)
    assert a.gaussian_noise_prob == 0.5 and a.noise_sigma == (1, 30) and a.poisson_scale == (0.05, 3)
    assert a.gray_noise_prob == 0.4 and a.jpeg_quality == (30, 95)
    assert b.blur_prob == 0.8 and b.sigma == (0.2, 1.5) and b.resize_probs == (0.3, 0.4, 0.3)
    assert b.resize_range == (0.3, 1.2) and b.noise_sigma == (1, 25) and b.poisson_scale == (0.05, 2.5)
    assert CFG.final_sinc_prob == 0.8 and CFG.final_resize_first_prob == 0.5


def test_draw_frequencies_match_the_probabilities() -> None:
    """Over many draws, kernel families and sinc follow the configured probabilities."""
    n = 3000
    kinds = torch.zeros(SINC + 1)
    for i in range(n):
        kinds[sample_kernel(CFG.first, torch.Generator().manual_seed(i)).kind] += 1
    freq = kinds / n
    assert abs(freq[SINC] - 0.1) < 0.025
    expected = torch.tensor(CFG.first.kernel_probs) * 0.9
    assert torch.allclose(freq[:SINC], expected.float(), atol=0.03)


def test_gaussian_kernel_matches_closed_form() -> None:
    k = anisotropic_kernel(21, 2.0, 2.0, 0.0)
    ax = torch.arange(21, dtype=torch.float64) - 10
    g1 = torch.exp(-(ax**2) / (2 * 4.0))
    ref = torch.outer(g1, g1)
    assert torch.allclose(k, ref / ref.sum())
    # rotation by pi/2 swaps the axes
    k1 = anisotropic_kernel(15, 1.0, 3.0, 0.0)
    k2 = anisotropic_kernel(15, 3.0, 1.0, math.pi / 2)
    assert torch.allclose(k1, k2, atol=1e-12)


def test_sinc_kernel_is_a_low_pass_with_unit_dc_gain() -> None:
    k = sinc_kernel(21, math.pi / 3)
    spec = torch.fft.fft2(k, s=(128, 128)).abs()
    assert torch.isclose(spec[0, 0], torch.tensor(1.0, dtype=torch.float64))
    assert spec[64, 64] < 0.2  # Nyquist is attenuated
    assert torch.allclose(k, k.T)


def test_filter2d_uses_each_samples_kernel() -> None:
    img = torch.rand(2, 3, 32, 32)
    pulse = torch.zeros(MAX_KERNEL, MAX_KERNEL, dtype=torch.float64)
    pulse[10, 10] = 1
    blur = anisotropic_kernel(MAX_KERNEL, 2.0, 2.0, 0.0)
    out = filter2d(img, torch.stack([pulse, blur]))
    assert torch.allclose(out[0], img[0], atol=1e-6)
    assert out[1].std() < img[1].std()


@pytest.mark.parametrize("size", [64, 96])
def test_output_size_range_and_quantisation(size: int) -> None:
    hq = torch.rand(3, 3, size, size)
    lq, params = degrade(hq, CFG, [0, 1, 2], ("step", 0), seed=1)
    assert lq.shape == hq.shape and lq.dtype == torch.float32
    assert lq.min() >= 0 and lq.max() <= 1
    assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-4)  # 8-bit levels
    assert params is not None
    # the information is destroyed: LQ differs clearly from HQ
    assert (lq - hq).abs().mean() > 0.01


def test_deterministic_by_seed_and_independent_of_batch_composition() -> None:
    hq = torch.rand(4, 3, 64, 64)
    a, _ = degrade(hq, CFG, [10, 11, 12, 13], ("step", 5), seed=3)
    b, _ = degrade(hq, CFG, [10, 11, 12, 13], ("step", 5), seed=3)
    assert torch.equal(a, b)
    c, _ = degrade(hq, CFG, [10, 11, 12, 13], ("step", 5), seed=4)
    assert not torch.equal(a, c)
    # splitting the batch (two ranks) gives the same images
    lo, _ = degrade(hq[:2], CFG, [10, 11], ("step", 5), seed=3)
    hi, _ = degrade(hq[2:], CFG, [12, 13], ("step", 5), seed=3)
    assert torch.equal(torch.cat([lo, hi]), a)


def test_disabled_pipeline_is_bicubic_round_trip() -> None:
    cfg = DegradationConfig(enabled=False)
    hq = torch.rand(1, 3, 32, 32)
    lq, params = degrade(hq, cfg, [0], 0)
    assert params is None and lq.shape == hq.shape


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of the degradation scale"):
        degrade(torch.rand(1, 3, 30, 30), CFG, [0], 0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        degrade(torch.rand(1, 4, 32, 32), CFG, [0], 0)
    with pytest.raises(ValueError, match="sample ids"):
        degrade(torch.rand(2, 3, 32, 32), CFG, [0], 0)
    with pytest.raises(ValueError, match="odd values"):
        DegradationConfig(first=StageConfig(kernel_sizes=(8,)))


def test_noise_statistics() -> None:
    """Gaussian sigma in 8-bit units; Poisson variance img / vals scaled (Real-ESRGAN convention)."""
    from vosr.degradations import add_noise

    img = torch.full((2, 3, 128, 128), 0.5)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = add_noise(img, True, torch.tensor([10 / 255, 10 / 255]), torch.tensor([False, True]), gens)
    assert abs((out[0] - 0.5).std() - 10 / 255) < 0.002
    assert torch.equal(out[1, 0], out[1, 1])  # gray noise: one field for all channels
    # a ramp with 256 distinct 8-bit levels -> vals = 256, Poisson std = sqrt(x / 256) * scale
    ramp = (torch.arange(256).float() / 255).repeat(3, 256, 1)[None]
    out = add_noise(ramp, False, torch.tensor([2.0]), torch.tensor([False]), gens[:1])
    col = 128
    noise = out[0, :, :, col] - ramp[0, :, :, col]
    assert abs(noise.std() - (ramp[0, 0, 0, col] / 256).sqrt() * 2.0) < 0.01


# --- release parity (issue 11, item 11) ----------------------------------------------------------


def test_release_parity_defaults() -> None:
    assert CFG.jpeg == "diff" and CFG.kernels == "batch"
    with pytest.raises(ValueError, match="'diff' or 'opencv'"):
        DegradationConfig(jpeg="pil")
    with pytest.raises(ValueError, match="'batch' or 'sample'"):
        DegradationConfig(kernels="image")


def test_differentiable_jpeg_is_the_library_codec_with_continuous_quality() -> None:
    from kornia.enhance import jpeg_codec_differentiable

    from vosr.degradations import jpeg

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 40, 56, generator=g) * 1.2 - 0.1  # out of range on purpose: clipped first
    q = torch.tensor([31.7, 55.25, 94.9])
    out = jpeg(img, q)
    ref = jpeg_codec_differentiable(img.clamp(0, 1), q).clamp(0, 1)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert not torch.allclose(out * 255, (out * 255).round(), atol=1e-3)  # float output, not 8-bit levels
    # the quality is continuous: a fractional change changes the output
    assert not torch.equal(jpeg(img, q + 0.4), out)
    # and the codec is differentiable
    x = img.clamp(0, 1).requires_grad_(True)
    jpeg(x, q).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_opencv_jpeg_option_is_libjpeg_with_integer_quality() -> None:
    import cv2
    import numpy as np

    from vosr.degradations import jpeg

    img = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    q = torch.tensor([40.4, 80.6])
    out = jpeg(img, q, "opencv")
    for i, qi in enumerate((40, 81)):
        rgb = (img[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, qi])
        ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


def test_kernels_are_drawn_once_per_batch_or_per_sample() -> None:
    ids = list(range(6))
    p = sample_params(CFG, ids, ("step", 3), seed=2)
    for stage in (p.first, p.second):
        assert all(torch.equal(k.kernel, stage.kernels[0].kernel) for k in stage.kernels)
    assert len({id(k) for k in p.final_sinc}) == 1
    # the per-batch draw is the same whichever ids share the batch (process splits keep it)
    q = sample_params(CFG, ids[3:], ("step", 3), seed=2)
    assert torch.equal(q.first.kernels[0].kernel, p.first.kernels[0].kernel)
    per = sample_params(DegradationConfig(kernels="sample"), ids, ("step", 3), seed=2)
    assert len({round(float(k.kernel.max()), 12) for k in per.first.kernels}) > 1
    for k in per.first.kernels:
        _check_kernel(k, CFG.first)


def test_first_order_resize_is_by_scale_factor() -> None:
    import torch.nn.functional as F

    from vosr.degradations import rescale, resize

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for mode in ("bilinear", "bicubic", "area"):
        kw = {} if mode == "area" else {"align_corners": False}
        ref = F.interpolate(x, scale_factor=0.37, mode=mode, **kw)
        torch.testing.assert_close(rescale(x, 0.37, mode), ref, rtol=0, atol=0)
        assert ref.shape[-1] == 23
    # by size the sampling grid is 23 / 64 = 0.359, not 0.37: another image
    assert not torch.allclose(resize(x, (23, 23), "bicubic"), rescale(x, 0.37, "bicubic"), atol=1e-3)


def _reference_degrade(hq: torch.Tensor, cfg: DegradationConfig, p, scale: int = 4) -> torch.Tensor:
    """The released pipeline with zero noise, written from library calls: per-batch kernel conv with
    reflect padding, F.interpolate by scale factor / size, kornia's JPEG on clipped input, the final
    resize back and ONE 8-bit rounding (clamp(round(x * 255), 0, 255) / 255)."""
    import torch.nn.functional as F
    from kornia.enhance import jpeg_codec_differentiable

    def conv(x, k):
        pad = k.shape[-1] // 2
        w = k.to(x).expand(3, 1, *k.shape)
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), w, groups=3)

    def interp(x, mode, **kw):
        return F.interpolate(x, mode=mode, **kw) if mode == "area" else F.interpolate(x, mode=mode, align_corners=False, **kw)

    def jp(x, q):
        return jpeg_codec_differentiable(x.clamp(0, 1), q).clamp(0, 1)

    h, w = hq.shape[-2:]
    x = conv(hq, p.first.kernels[0].kernel)  # the first order always blurs
    x = interp(x, p.first.resize_mode, scale_factor=p.first.resize_scale).clamp(0, 1)  # zero noise, clipped
    x = jp(x, p.first.jpeg_quality)
    if p.second.blur:
        x = conv(x, p.second.kernels[0].kernel)
    s2 = p.second.resize_scale
    x = interp(x, p.second.resize_mode, size=(int(h / scale * s2), int(w / scale * s2))).clamp(0, 1)
    final = p.final_sinc[0]
    lr = (h // scale, w // scale)
    if p.resize_first:
        x = interp(x, p.final_mode, size=lr)
        x = conv(x, final.kernel) if final is not None else x
        x = jp(x, p.second.jpeg_quality)
    else:
        x = jp(x, p.second.jpeg_quality)
        x = interp(x, p.final_mode, size=lr)
        x = conv(x, final.kernel) if final is not None else x
    x = interp(x, p.back_mode, size=(h, w))
    return torch.clamp((x * 255).round(), 0, 255) / 255


@pytest.mark.parametrize("step", range(6))
def test_pipeline_equals_the_release_written_from_library_calls(step: int) -> None:
    quiet = {"noise_sigma": (0.0, 0.0), "gaussian_noise_prob": 1.0}
    cfg = DegradationConfig(first=StageConfig(**quiet), second=dataclasses.replace(CFG.second, **quiet))
    hq = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(step))
    lq, p = degrade(hq, cfg, [0, 1, 2], ("step", step), seed=5)
    torch.testing.assert_close(lq, _reference_degrade(hq, cfg, p), rtol=0, atol=0)
