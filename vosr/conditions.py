"""The conditions of VOSR, for inference and training alike (``docs/vosr-reference.md``, "2. Conditions").

* **Structural condition** c_str: the autoencoder latent of the LR image upsampled to the HR
  size (:func:`structural_latent`); it enters the backbone by channel concatenation.
* **Semantic condition**: ViT tokens of the same upsampled image (``vosr.semantic``).
* **Partial condition**: w * c_str and zero semantic tokens (:func:`partial_condition`), the weak
  branch of partial-conditioning guidance.
* **Training conditions**: multi-step training noise-augments c_str and drops a share of the
  samples to the partial condition (:func:`training_conditions`, the released ``loss_fm``);
  distillation does the same for the teacher's conditional branch and the student
  (:func:`distill_conditions`, the released distillation losses).

A batch's conditions travel together as :class:`Conditions`. Randomness comes from one
generator per sample (and one per step for the weak strength), so a sample's conditions never
depend on the batch it is in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vosr.degradations import per_sample
from vosr.recipes import ConditionConfig, DistillConfig

__all__ = [
    "Conditions",
    "DistillConditions",
    "structural_latent",
    "partial_condition",
    "augment_condition",
    "training_conditions",
    "distill_conditions",
]


@dataclass
class Conditions:
    """Network conditions of a batch: structural latent (B, C, H, W), semantic tokens (B, N, E)."""

    structure: torch.Tensor
    semantic: torch.Tensor


def structural_latent(
    encode: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor],
    upsampled: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """c_str: the latent of the upsampled LR image (B, 3, H, W) in [0, 1] -> (B, C, H/8, W/8).

    ``encode`` is an autoencoder's ``encode(images, generator)`` (``vosr.autoencoders``), which
    scales the latent the way the backbone was trained.
    """
    if upsampled.ndim != 4 or upsampled.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got {tuple(upsampled.shape)}")
    return encode(upsampled, generator)


def partial_condition(
    c_str: torch.Tensor, semantic: torch.Tensor, weak_strength: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial ("weak") condition: (w * c_str, zeros like semantic).

    Zeros rather than a learned null token: after the model's LayerNorm they become its bias,
    which is what the released checkpoints were trained with. ``weak_strength`` may be a float
    or a (B,) tensor.
    """
    w = weak_strength
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        w = w.view(-1, 1, 1, 1).to(c_str)
    return w * c_str, torch.zeros_like(semantic)


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
    ab = a.view(-1, *([1] * (c.ndim - 1)))
    return ab * c + torch.sqrt(1 - ab * ab) * noise


def _augment(c_str: torch.Tensor, gens: Sequence[torch.Generator], on: bool, mean: float, std: float) -> torch.Tensor:
    if not on:
        return c_str
    return torch.cat([augment_condition(c_str[i : i + 1], g, mean, std) for i, g in enumerate(gens)])


def training_conditions(
    c_str: torch.Tensor,
    semantic: torch.Tensor,
    gens: Sequence[torch.Generator],
    step_gen: torch.Generator,
    cc: ConditionConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Noise augmentation and condition dropout of one multi-step training batch.

    As the released ``loss_fm``: the kept samples get the noise-augmented structural condition
    ``a c_str + sqrt(1 - a^2) eps'``; the dropped ones the partial condition built from the
    **clean** latent, ``(w c_str, 0)``, never from the augmented one.

    Args:
        c_str: (B, C, h, w) clean structural latents; semantic: (B, N, E) tokens.
        gens: one generator per sample (augmentation noise, then the dropout draw).
        step_gen: the step's generator: the weak strength is drawn once per step and shared
            by the batch (the reference's "per-step" strength).
        cc: the guidance design (Table 4 ablation), see ``ConditionConfig``.

    Returns:
        (c_str', semantic', dropped (B,) bool, w): dropped samples get ``(w c_str, 0)``
        (``w = 0`` for ``cfg``: fully unconditional); ``full`` drops nothing.
    """
    c_aug = _augment(c_str, gens, cc.noise_aug, cc.noise_aug_mean, cc.noise_aug_std)
    drop = per_sample(gens, lambda g: torch.rand(1, generator=g) < cc.dropout_prob).to(c_str.device)
    if cc.guidance == "full":
        return c_aug, semantic, torch.zeros_like(drop), 1.0
    if cc.guidance == "cfg":
        w = 0.0
    elif cc.guidance == "partial_fixed":
        w = cc.fixed_strength
    else:
        lo, hi = cc.weak_strength
        w = lo + (hi - lo) * float(torch.rand((), generator=step_gen))
    weak_str, weak_sem = partial_condition(c_str, semantic, w)
    c_out = torch.where(drop.view(-1, 1, 1, 1), weak_str, c_aug)
    s_out = torch.where(drop.view(-1, 1, 1), weak_sem, semantic)
    return c_out, s_out, drop, w


@dataclass
class DistillConditions:
    """The conditions of one distillation batch (see :func:`distill_conditions`)."""

    teacher: Conditions  # the guided target's conditional branch: (augmented c_str, semantic)
    teacher_partial: Conditions  # its partial branch: (w c_str, 0), w = distill.weak_strength
    student: Conditions  # student and roll-outs: the teacher's conditional input, or (w c_str, 0) if dropped
    dropped: torch.Tensor  # (B,) bool


def distill_conditions(
    c_str: torch.Tensor, semantic: torch.Tensor, gens: Sequence[torch.Generator], dc: DistillConfig
) -> DistillConditions:
    """Condition handling of one-step distillation, as the released distillation losses.

    The structural condition is noise-augmented (``a = sigmoid(N(5, 1))``) for the teacher's
    conditional branch and the student's input; with probability ``dc.dropout_prob`` per sample
    the student's (and its roll-outs') conditions are dropped to the partial condition
    ``(w c_str, 0)`` built from the clean latent. The teacher's partial branch is always
    ``(w c_str, 0)``.

    Args:
        c_str: (B, C, h, w) clean structural latents; semantic: (B, N, E) tokens.
        gens: one generator per sample (augmentation noise, then the dropout draw).
        dc: the distillation settings (``weak_strength`` w, ``noise_aug*``, ``dropout_prob``).
    """
    c_aug = _augment(c_str, gens, dc.noise_aug, dc.noise_aug_mean, dc.noise_aug_std)
    drop = per_sample(gens, lambda g: torch.rand(1, generator=g) < dc.dropout_prob).to(c_str.device)
    weak_str, weak_sem = partial_condition(c_str, semantic, dc.weak_strength)
    student = Conditions(
        torch.where(drop.view(-1, 1, 1, 1), weak_str, c_aug), torch.where(drop.view(-1, 1, 1), weak_sem, semantic)
    )
    return DistillConditions(Conditions(c_aug, semantic), Conditions(weak_str, weak_sem), student, drop)
