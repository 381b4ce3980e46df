"""Real-ESRGAN second-order degradation (Wang et al., ICCV-W 2021), batched in torch.

The VOSR training data synthesis (``docs/vosr-reference.md``, "6. Training recipe (appendix Table 3 and the released configs)"): a high-quality crop in [0, 1]
goes through blur -> resize -> noise -> JPEG twice, then a final resize to HR/4 with a sinc
filter, and is resized back to the HR size (the structural condition is computed at HR size).

As the released training code does it (the defaults; the alternatives are options):

* JPEG is the differentiable codec with a continuous per-sample quality and float output
  (kornia's ``jpeg_codec_differentiable``, the DiffJPEG family Real-ESRGAN uses); OpenCV's
  libjpeg with integer quality and 8-bit input/output is ``jpeg="opencv"``.
* The image is quantised to 8 bits once, after the final resize back to the HR size (the LR
  image is never rounded on its own).
* The blur kernels of both orders and the final sinc filter are drawn once per batch and shared
  by its images (``kernels="sample"`` draws one per image, as the Real-ESRGAN paper's dataset).
* The first order resizes by scale factor (``F.interpolate(scale_factor=s)``, whose sampling grid
  uses ``s`` itself), the second to a size relative to HR/4, as Real-ESRGAN.

Randomness is explicit and reproducible: every per-sample draw comes from a generator keyed by
``(seed, sample_id)`` and every per-batch draw (kernels, resize scale/mode, noise family, blur
switch, final order) from one keyed by ``(seed, batch_key)``. The trainer's batch key is the
optimiser step, so "per batch" means the step's global batch, whatever its split over ranks and
micro-batches: the degradation of an image does not depend on which rank processes it, which is
what makes a two-process run equal a one-process run with the combined batch.

The kernel formulas (bivariate Gaussian, generalized Gaussian, plateau, circular low-pass
``sinc``) and the parameter ranges are those of the Real-ESRGAN paper and its released
``train_realesrnet_x4plus.yml`` configuration, as listed in the reference document; this is an
independent torch implementation (no ``basicsr``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
"""Blur kernel families, in the order of ``kernel_probs``; index 6 (``SINC``) is the sinc filter."""
SINC = len(KERNEL_TYPES)
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL = 21  # every kernel is zero-padded to 21 x 21 so a batch shares one conv weight shape


@dataclass(frozen=True)
class StageConfig:
    """Parameter ranges of one degradation order (closed intervals, probabilities in [0, 1])."""

    blur_prob: float = 1.0  # the first order always blurs, the second with p = 0.8
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    sinc_prob: float = 0.1
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # order of KERNEL_TYPES
    sigma: tuple[float, float] = (0.2, 3.0)  # Gaussian std in pixels (both axes)
    beta_gaussian: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # in 8-bit units (divided by 255)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[float, float] = (30.0, 95.0)


def _second_stage() -> StageConfig:
    return StageConfig(
        blur_prob=0.8,
        sigma=(0.2, 1.5),
        resize_probs=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_sigma=(1.0, 25.0),
        poisson_scale=(0.05, 2.5),
    )


@dataclass(frozen=True)
class DegradationConfig:
    """The full second-order pipeline; defaults are the reference's ranges (scale 4)."""

    enabled: bool = True  # False: LQ = bicubic down-then-up of the HQ crop (for ablations/tests)
    scale: int = 4
    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=_second_stage)
    final_sinc_prob: float = 0.8
    final_resize_first_prob: float = 0.5  # [resize + sinc] then JPEG, else JPEG then [resize + sinc]
    jpeg: Literal["diff", "opencv"] = "diff"  # diff: continuous quality, float output (as released)
    kernels: Literal["batch", "sample"] = "batch"  # one blur / sinc draw per batch (as released) or per image

    def __post_init__(self) -> None:
        if self.jpeg not in ("diff", "opencv"):
            raise ConfigError(f"degradation jpeg must be 'diff' or 'opencv', got {self.jpeg!r}")
        if self.kernels not in ("batch", "sample"):
            raise ConfigError(f"degradation kernels must be 'batch' or 'sample', got {self.kernels!r}")
        for stage in (self.first, self.second):
            if any(k % 2 == 0 or k < 3 or k > MAX_KERNEL for k in stage.kernel_sizes):
                raise ConfigError(
                    f"degradation kernel_sizes must be odd values in [3, {MAX_KERNEL}], got {stage.kernel_sizes}"
                )
            if len(stage.kernel_probs) != len(KERNEL_TYPES):
                raise ConfigError(
                    f"degradation kernel_probs needs {len(KERNEL_TYPES)} values ({', '.join(KERNEL_TYPES)}), "
                    f"got {stage.kernel_probs}"
                )
        if self.scale < 1:
            raise ConfigError(f"degradation scale must be >= 1, got {self.scale}")


# --------------------------------------------------------------------------------------------
# Seeded generators
# --------------------------------------------------------------------------------------------


def derive_seed(*keys: object) -> int:
    """A 63-bit seed from any tuple of keys (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def generator(*keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded by :func:`derive_seed` of ``keys``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g


def per_sample(gens: Sequence[torch.Generator], draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """``draw(g)`` for each sample's generator, concatenated along dim 0 (one row per sample)."""
    return torch.cat([draw(g) for g in gens])


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, probs: Sequence[float]) -> int:
    return int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=g))


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def anisotropic_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0, family: str = "gaussian"
) -> torch.Tensor:
    """A normalised ``(size, size)`` float64 kernel of the bivariate Gaussian family.

    With the quadratic form ``q = x^T S^-1 x``, ``S = R diag(sx^2, sy^2) R^T`` (R rotates by
    ``theta`` radians, sigmas in pixels): Gaussian ``exp(-q / 2)``, generalized
    ``exp(-0.5 * q^beta)`` and plateau ``1 / (1 + q^beta)`` (Real-ESRGAN, section 3.1).
    """
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    xx, yy = _grid(size)
    q = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    if family == "gaussian":
        k = torch.exp(-0.5 * q)
    elif family == "generalized":
        k = torch.exp(-0.5 * q.pow(beta))
    elif family == "plateau":
        k = 1.0 / (1.0 + q.pow(beta))
    else:
        raise ValueError(f"unknown kernel family {family!r}; expected gaussian, generalized or plateau")
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (2-D ``sinc``) kernel, ``(size, size)`` float64, normalised to sum 1.

    ``k(r) = cutoff * J1(cutoff * r) / (2 pi r)`` with the limit ``cutoff^2 / (4 pi)`` at r = 0;
    ``cutoff`` is the angular cut-off frequency in radians per pixel (pi = Nyquist).
    """
    xx, yy = _grid(size)
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), k)
    return k / k.sum()


def _pad_kernel(k: torch.Tensor) -> torch.Tensor:
    p = (MAX_KERNEL - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p))


@dataclass
class KernelDraw:
    """One sampled blur kernel and the parameters it came from (for range checks)."""

    kernel: torch.Tensor  # (21, 21) float64, sums to 1
    size: int
    kind: int  # index into KERNEL_TYPES, or SINC
    sigma_x: float = float("nan")
    sigma_y: float = float("nan")
    theta: float = float("nan")
    beta: float = float("nan")
    cutoff: float = float("nan")


def sample_kernel(stage: StageConfig, g: torch.Generator) -> KernelDraw:
    """Draw one blur kernel of a stage (sinc with ``sinc_prob``, else a Gaussian-family one)."""
    size = stage.kernel_sizes[int(torch.randint(len(stage.kernel_sizes), (), generator=g))]
    if float(torch.rand((), generator=g)) < stage.sinc_prob:
        # small kernels cannot represent low cut-offs, hence the narrower range below 13 px
        lo = math.pi / 3 if size < 13 else math.pi / 5
        cutoff = _uniform(g, lo, math.pi)
        return KernelDraw(_pad_kernel(sinc_kernel(size, cutoff)), size, SINC, cutoff=cutoff)
    kind = _choice(g, stage.kernel_probs)
    name = KERNEL_TYPES[kind]
    sx = _uniform(g, *stage.sigma)
    if name.endswith("_iso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = _uniform(g, *stage.sigma), _uniform(g, -math.pi, math.pi)
    beta, family = 1.0, "gaussian"
    if name.startswith(("generalized", "plateau")):
        family = "generalized" if name.startswith("generalized") else "plateau"
        lo, hi = stage.beta_gaussian if family == "generalized" else stage.beta_plateau
        # half the draws below 1 and half above, so heavy and light tails are equally likely
        beta = _uniform(g, lo, 1.0) if float(torch.rand((), generator=g)) < 0.5 else _uniform(g, 1.0, hi)
    k = anisotropic_kernel(size, sx, sy, theta, beta, family)
    return KernelDraw(_pad_kernel(k), size, kind, sx, sy, theta, beta)


def filter2d(img: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of ``img`` (B, C, H, W) with its own kernel ``kernels`` (B, k, k).

    Reflect padding keeps the size; one grouped convolution handles the whole batch.
    """
    b, c, h, w = img.shape
    k = kernels.shape[-1]
    # reflect needs the pad to be smaller than the image; tiny intermediate images (heavy
    # down-scaling of small crops) fall back to edge replication
    mode = "reflect" if k // 2 < min(h, w) else "replicate"
    x = F.pad(img.reshape(1, b * c, h, w), (k // 2,) * 4, mode=mode)
    weight = kernels.to(img).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


# --------------------------------------------------------------------------------------------
# Noise, resize, JPEG
# --------------------------------------------------------------------------------------------


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp((x * 255.0).round(), 0, 255) / 255.0


def _gray(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601 luma, as torchvision's rgb_to_grayscale
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def add_noise(
    img: torch.Tensor,
    gaussian: bool,
    amount: torch.Tensor,
    gray: torch.Tensor,
    gens: Sequence[torch.Generator],
) -> torch.Tensor:
    """Add Gaussian (``amount`` = sigma in [0, 1] units) or Poisson (``amount`` = scale) noise.

    ``img`` (B, 3, H, W) in [0, 1]; ``gray`` (B,) bool selects one noise field shared by the
    three channels. Poisson noise uses the Real-ESRGAN convention: photon count = 2^ceil(log2(
    number of distinct 8-bit values)) per image, the noise is computed on the quantised image.
    Returns the clipped noisy image.
    """
    out = []
    for i, g in enumerate(gens):
        x = img[i : i + 1]
        if gaussian:
            shape = (1, 1, *x.shape[2:]) if bool(gray[i]) else x.shape
            noise = torch.randn(shape, generator=g, device=x.device, dtype=x.dtype) * float(amount[i])
        else:
            base = _quantize(_gray(x) if bool(gray[i]) else x)
            vals = 2 ** math.ceil(math.log2(len(torch.unique(base))))
            noise = (torch.poisson(base * vals, generator=g) / vals - base) * float(amount[i])
        out.append(torch.clamp(x + noise, 0, 1))
    return torch.cat(out)


def jpeg(img: torch.Tensor, quality: torch.Tensor, backend: str = "diff") -> torch.Tensor:
    """JPEG-compress each image of ``img`` (B, 3, H, W) at its own ``quality`` (B,).

    The input is clipped to [0, 1] first and the output lies in [0, 1] (Real-ESRGAN's order).

    * ``diff`` (the released training code's): kornia's differentiable codec, 4:2:0 chroma
      subsampling, standard tables scaled by the continuous quality, float output (no 8-bit
      rounding of the image); runs on the input's device.
    * ``opencv``: libjpeg through OpenCV on the CPU, quality rounded to an integer, 8-bit input
      and output (the codec a saved JPEG file goes through).
    """
    img = img.clamp(0, 1)
    if backend == "diff":
        try:
            from kornia.enhance import jpeg_codec_differentiable
        except ImportError as exc:
            raise ImportError(
                "the released degradation's differentiable JPEG needs kornia: pip install 'screensr[vosr]' "
                "(or set degradation.jpeg: opencv)"
            ) from exc
        q = quality.to(device=img.device, dtype=img.dtype).reshape(-1)
        return jpeg_codec_differentiable(img, q).clamp(0, 1)
    if backend != "opencv":
        raise ValueError(f"unknown JPEG backend {backend!r}; choose 'diff' or 'opencv'")
    import cv2

    arr = (img.detach() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for i in range(arr.shape[0]):
        bgr = np.ascontiguousarray(arr[i, :, :, ::-1])
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(round(float(quality[i])))])
        if not ok:
            raise RuntimeError(f"OpenCV failed to JPEG-encode a {bgr.shape} image")
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if decoded is None:
            raise RuntimeError(f"OpenCV failed to decode its own JPEG of a {bgr.shape} image")
        out.append(decoded[:, :, ::-1].copy())
    res = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(img.device, img.dtype) / 255.0
    return res


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size`` = (h, w) with ``mode`` in RESIZE_MODES (no antialias)."""
    size = (max(int(size[0]), 1), max(int(size[1]), 1))
    if mode == "area":
        return F.interpolate(img, size=size, mode="area")
    return F.interpolate(img, size=size, mode=mode, align_corners=False)


def rescale(img: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
    """Resize (B, C, H, W) by ``scale`` (output floor(H * scale), sampling grid spaced 1 / scale).

    ``F.interpolate(scale_factor=scale)``, as Real-ESRGAN's first order: the source coordinates
    use ``scale`` itself, not the ratio of the rounded sizes, so it differs from
    ``resize(img, floor(H * scale))`` whenever ``H * scale`` is not an integer.
    """
    if mode == "area":
        return F.interpolate(img, scale_factor=scale, mode="area")
    return F.interpolate(img, scale_factor=scale, mode=mode, align_corners=False)


# --------------------------------------------------------------------------------------------
# Parameter sampling and the pipeline
# --------------------------------------------------------------------------------------------


@dataclass
class StageParams:
    """What one order drew. Per-batch values are scalars; per-sample ones are (B,) tensors."""

    kernels: list[KernelDraw]
    blur: bool
    resize_kind: int  # 0 up, 1 down, 2 keep
    resize_scale: float
    resize_mode: str
    gaussian: bool
    noise_amount: torch.Tensor  # (B,) sigma in [0, 1] units, or Poisson scale
    gray: torch.Tensor  # (B,) bool
    jpeg_quality: torch.Tensor  # (B,)


@dataclass
class DegradationParams:
    """Everything a call of :func:`degrade` drew; used by the range property tests."""

    first: StageParams
    second: StageParams
    final_sinc: list[KernelDraw | None]  # None = identity (no final sinc)
    resize_first: bool
    final_mode: str
    back_mode: str


def _sample_stage(
    stage: StageConfig, batch_g: torch.Generator, sample_gs: Sequence[torch.Generator], per_sample_kernels: bool
) -> StageParams:
    blur = float(torch.rand((), generator=batch_g)) < stage.blur_prob
    kind = _choice(batch_g, stage.resize_probs)
    lo, hi = stage.resize_range
    scale = _uniform(batch_g, 1.0, hi) if kind == 0 else _uniform(batch_g, lo, 1.0) if kind == 1 else 1.0
    mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (), generator=batch_g))]
    gaussian = float(torch.rand((), generator=batch_g)) < stage.gaussian_noise_prob
    shared = None if per_sample_kernels else sample_kernel(stage, batch_g)
    kernels, amount, gray, quality = [], [], [], []
    for g in sample_gs:
        kernels.append(sample_kernel(stage, g) if shared is None else shared)
        amount.append(_uniform(g, *stage.noise_sigma) / 255.0 if gaussian else _uniform(g, *stage.poisson_scale))
        gray.append(float(torch.rand((), generator=g)) < stage.gray_noise_prob)
        quality.append(_uniform(g, *stage.jpeg_quality))
    return StageParams(
        kernels, blur, kind, scale, mode, gaussian, torch.tensor(amount), torch.tensor(gray), torch.tensor(quality)
    )


def _final_sinc(cfg: DegradationConfig, g: torch.Generator) -> KernelDraw | None:
    if float(torch.rand((), generator=g)) >= cfg.final_sinc_prob:
        return None
    size = cfg.first.kernel_sizes[int(torch.randint(len(cfg.first.kernel_sizes), (), generator=g))]
    cutoff = _uniform(g, math.pi / 3, math.pi)
    return KernelDraw(_pad_kernel(sinc_kernel(size, cutoff)), size, SINC, cutoff=cutoff)


def sample_params(
    cfg: DegradationConfig, sample_ids: Sequence[int], batch_key: object, seed: int = 0
) -> DegradationParams:
    """Draw the parameters of one batch (see the module docstring for the seeding scheme)."""
    bg = generator(seed, "degradation-batch", batch_key)
    first_gs = [generator(seed, "degradation-1", int(i)) for i in sample_ids]
    second_gs = [generator(seed, "degradation-2", int(i)) for i in sample_ids]
    per_sample = cfg.kernels == "sample"
    first = _sample_stage(cfg.first, bg, first_gs, per_sample)
    second = _sample_stage(cfg.second, bg, second_gs, per_sample)
    if per_sample:
        finals = [_final_sinc(cfg, generator(seed, "degradation-final", int(i))) for i in sample_ids]
    else:
        finals = [_final_sinc(cfg, bg)] * len(sample_ids)
    resize_first = float(torch.rand((), generator=bg)) < cfg.final_resize_first_prob
    final_mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (), generator=bg))]
    back_mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (), generator=bg))]
    return DegradationParams(first, second, finals, resize_first, final_mode, back_mode)


def _stage(
    x: torch.Tensor, p: StageParams, size: tuple[int, int] | None, gens: Sequence[torch.Generator]
) -> torch.Tensor:
    if p.blur:
        x = filter2d(x, torch.stack([k.kernel for k in p.kernels]))
    if size is None:  # first order: by scale factor, relative to the current size
        x = rescale(x, p.resize_scale, p.resize_mode)
    else:
        x = resize(x, size, p.resize_mode)
    return add_noise(x, p.gaussian, p.noise_amount, p.gray, gens)


def degrade(
    hq: torch.Tensor, cfg: DegradationConfig, sample_ids: Sequence[int], batch_key: object, seed: int = 0
) -> tuple[torch.Tensor, DegradationParams | None]:
    """Degrade HQ crops into LQ images, returned at the HQ size.

    Args:
        hq: (B, 3, H, W) float in [0, 1], H and W multiples of ``cfg.scale``.
        cfg: ranges and probabilities.
        sample_ids: B global sample indices (per-sample randomness is keyed by these).
        batch_key: key of the per-batch draws (the trainer passes (stage, step, micro-step)).
        seed: run seed.

    Returns:
        ``(lq, params)``: lq (B, 3, H, W) in [0, 1], quantised to 8-bit levels once, after the
        resize back to the HR size with a random mode (the LR image itself is kept in float);
        ``params`` the draws (None when ``cfg.enabled`` is False).
    """
    if hq.ndim != 4 or hq.shape[1] != 3:
        raise ValueError(f"degrade expects (B, 3, H, W) RGB crops, got shape {tuple(hq.shape)}")
    b, _, h, w = hq.shape
    if len(sample_ids) != b:
        raise ValueError(f"degrade got {len(sample_ids)} sample ids for a batch of {b}")
    if h % cfg.scale or w % cfg.scale:
        raise ValueError(f"crop size {h}x{w} must be a multiple of the degradation scale {cfg.scale}")
    lr_size = (h // cfg.scale, w // cfg.scale)
    if not cfg.enabled:
        lq = resize(hq, lr_size, "bicubic")
        return _quantize(resize(lq, (h, w), "bicubic").clamp(0, 1)), None
    p = sample_params(cfg, sample_ids, batch_key, seed)
    dev = hq.device
    noise1 = [generator(seed, "noise-1", int(i), device=dev) for i in sample_ids]
    noise2 = [generator(seed, "noise-2", int(i), device=dev) for i in sample_ids]
    x = _stage(hq.float(), p.first, None, noise1)
    x = jpeg(x, p.first.jpeg_quality, cfg.jpeg)
    s2 = p.second.resize_scale
    x = _stage(x, p.second, (int(h / cfg.scale * s2), int(w / cfg.scale * s2)), noise2)
    pulse = torch.zeros(MAX_KERNEL, MAX_KERNEL, dtype=torch.float64)
    pulse[MAX_KERNEL // 2, MAX_KERNEL // 2] = 1
    finals = torch.stack([k.kernel if k is not None else pulse for k in p.final_sinc])
    if p.resize_first:
        x = filter2d(resize(x, lr_size, p.final_mode), finals)
        x = jpeg(x, p.second.jpeg_quality, cfg.jpeg)
    else:
        x = jpeg(x, p.second.jpeg_quality, cfg.jpeg)
        x = filter2d(resize(x, lr_size, p.final_mode), finals)
    # one 8-bit rounding, of the image at HR size (as released), not of the LR image too
    lq = _quantize(resize(x, (h, w), p.back_mode).clamp(0, 1))
    return lq, p
