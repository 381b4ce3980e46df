"""Every weight file the suite can use, gathered from the packages that load them.

``benchmark.weights`` knows the metric and built-in SR files; ``vosr.weights`` the VOSR
checkpoints, DINOv2 and the autoencoders. This module only merges the two lists into one type so
``screensr weights`` and ``screensr doctor`` can show them together.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.weights import WeightFile, all_weight_files


def vosr_weight_files() -> list[WeightFile]:
    """The ``vosr`` package's files as :class:`WeightFile` entries (group ``vosr``)."""
    from vosr.weights import weight_files

    out = []
    for entry in weight_files():
        path = Path(entry["path"])
        out.append(
            WeightFile(
                name=entry.get("name") or path.name,
                group="vosr",
                path=path,
                url=entry.get("url"),
                used_by=tuple(_as_tuple(entry.get("used_by", ()))),
                description=entry.get("description", ""),
            )
        )
    return out


def _as_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[union-attr]


def every_weight_file(groups: set[str] | None = None) -> list[WeightFile]:
    """All known files, optionally only those whose group is in ``groups``."""
    files = all_weight_files() + vosr_weight_files()
    return [wf for wf in files if groups is None or wf.group in groups]
