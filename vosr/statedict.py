"""Strict state-dict loading with a readable key report.

Every weight file the ``vosr`` package reads (backbones, autoencoders, the light decoder,
semantic encoders) goes through :func:`load_state_dict_strict`: ``strict=True`` always; any
missing, unexpected or mis-shaped key raises :class:`CheckpointMismatchError` listing them, with a
hint when the pattern is recognisable (one-step vs multi-step, wrong size). Wrapper prefixes
(``module.``, ``_orig_mod.``, ``ema_model.``) that DDP / torch.compile / EMA wrappers add are
removed first; they never change a tensor. This module imports nothing else from ``vosr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core.errors import UserError

__all__ = [
    "CheckpointMismatchError",
    "KeyReport",
    "strip_prefixes",
    "check_state_dict",
    "load_state_dict_strict",
]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "ema_model.")


class CheckpointMismatchError(UserError, ValueError):
    """A state dict whose keys or shapes do not match the model (the message is the report)."""

    def __init__(self, message: str, report: KeyReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class KeyReport:
    """Differences between a state dict and a model's own ``state_dict()``.

    ``absent`` lists keys the architecture defines but the checkpoint's layout lacks *by design*
    (the caller removed those weights from the model before loading, so they are neither missing
    nor filled in); ``absent_reason`` says why. They never make the report fail.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    absent_reason: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def format(self, limit: int = 12) -> str:
        """Human-readable lines: counts, then up to ``limit`` names per kind."""

        def names(items: list[Any], fmt: Callable[[Any], str]) -> list[str]:
            lines = [f"    {fmt(x)}" for x in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
            return lines

        lines = []
        if self.absent:
            lines += [
                f"  absent by design ({len(self.absent)}): {self.absent_reason}",
                *names(self.absent, str),
            ]
        if self.missing:
            lines += [f"  missing keys ({len(self.missing)}):", *names(self.missing, str)]
        if self.unexpected:
            lines += [f"  unexpected keys ({len(self.unexpected)}):", *names(self.unexpected, str)]
        if self.mis_shaped:
            lines += [
                f"  mis-shaped tensors ({len(self.mis_shaped)}):",
                *names(
                    self.mis_shaped,
                    lambda x: f"{x[0]}: checkpoint {list(x[1])} vs model {list(x[2])}",
                ),
            ]
        hint = self._hint()
        if hint:
            lines.append(f"  hint: {hint}")
        return "\n".join(lines)

    def _hint(self) -> str:
        if self.unexpected and all(k.startswith("r_embedder.") for k in self.unexpected) and not self.missing:
            return "the checkpoint is a one-step (distilled) model: build it with one_step=True"
        if self.missing and all(k.startswith("r_embedder.") for k in self.missing) and not self.unexpected:
            return "the checkpoint is a multi-step model: build it with one_step=False"
        if self.mis_shaped or any(k.startswith("blocks.") for k in self.missing + self.unexpected):
            return "the checkpoint is another model size (check hidden size, depth, latent channels)"
        return ""


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with the DDP / torch.compile / EMA wrapper prefixes removed from every key."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> KeyReport:
    """Compare names and shapes of ``state_dict`` against ``model.state_dict()`` (works on meta)."""
    own = model.state_dict()
    report = KeyReport(
        missing=sorted(k for k in own if k not in state_dict),
        unexpected=sorted(k for k in state_dict if k not in own),
    )
    for key, value in state_dict.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            report.mis_shaped.append((key, tuple(value.shape), tuple(own[key].shape)))
    return report


def load_state_dict_strict(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "state dict",
    assign: bool = False,
    absent: list[str] | None = None,
    absent_reason: str = "",
) -> KeyReport:
    """``model.load_state_dict(state_dict, strict=True)`` with a readable report on mismatch.

    Args:
        absent: keys the caller removed from ``model`` because the checkpoint's layout has no
            such weights (recorded in the report with ``absent_reason``; any key still in the
            model must be in ``state_dict``, so nothing is dropped silently).
    Returns:
        The key report (``ok``; with ``absent`` filled in when given).
    Raises:
        CheckpointMismatchError: naming ``source`` and every missing/unexpected/mis-shaped key.
    """
    state_dict = strip_prefixes(state_dict)
    report = check_state_dict(model, state_dict)
    report.absent, report.absent_reason = sorted(absent or []), absent_reason
    if not report.ok:
        raise CheckpointMismatchError(
            f"{source} does not match the {type(model).__name__} it is loaded into:\n{report.format()}",
            report,
        )
    model.load_state_dict(state_dict, strict=True, assign=assign)
    return report
