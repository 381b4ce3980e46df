"""Every weight file the suite can use, gathered from the packages that load them.

``benchmark.weights`` knows the metric and built-in SR files; ``vosr.weights`` the VOSR
checkpoints, semantic encoders and autoencoders. Both return ``core.weights.WeightFile`` entries,
so this module only concatenates them for ``screensr weights`` and ``screensr doctor``.
"""

from __future__ import annotations

from benchmark.weights import all_weight_files
from core.weights import WeightFile

__all__ = ["vosr_weight_files", "every_weight_file"]


def vosr_weight_files() -> list[WeightFile]:
    """The ``vosr`` package's files (group ``vosr``)."""
    from vosr.weights import weight_files  # imports torch: only when the vosr group is listed

    return weight_files()


def every_weight_file(groups: set[str] | None = None) -> list[WeightFile]:
    """All known files, optionally only those whose group is in ``groups``."""
    files = all_weight_files() + vosr_weight_files()
    return [wf for wf in files if groups is None or wf.group in groups]
