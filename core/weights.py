"""The weight-file record: one file a loader reads, where it must be, and where it comes from.

Each package keeps its own catalogue (``benchmark.weights`` for metrics and built-in SR methods,
``vosr.weights`` for the VOSR checkpoints, DINOv2 and the autoencoders) and returns this one type,
so ``screensr weights`` and ``screensr doctor`` list, install and download them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.paths import hf_hub_cache_dir

__all__ = ["WeightFile", "hf_snapshot_path", "hf_cached_path"]


@dataclass(frozen=True)
class WeightFile:
    """One file a loader reads.

    Attributes:
        name: the file's name as published (what ``screensr weights --from DIR`` looks for).
        group: ``metric``, ``sr`` or ``vosr``.
        path: the exact location the loader reads.
        url: the download source, or ``None`` when the file ships with a package or has no
            public source (then ``description`` says how to obtain it).
        used_by: metric, method or model names that need it.
        description: one line for listings.
        sha256: the checksum the loader enforces, when it enforces one.
        hf_repo: for files in the Hugging Face cache, ``(repo_id, filename)``; ``path`` is then
            resolved through the cache's ``refs/main`` and may not exist yet.
        ships_with: the package that carries the file (nothing to download), if any.
        source_names: other names ``--from DIR`` accepts (relative paths inside a release).
    """

    name: str
    group: str
    path: Path
    url: str | None
    used_by: tuple[str, ...]
    description: str = ""
    sha256: str | None = None
    hf_repo: tuple[str, str] | None = None
    ships_with: str | None = None
    source_names: tuple[str, ...] = field(default=())

    @property
    def present(self) -> bool:
        """Whether the file is where the loader looks (for HF files: resolvable offline)."""
        if self.hf_repo is not None:
            return hf_cached_path(*self.hf_repo) is not None
        return self.path.is_file()

    @property
    def resolved_path(self) -> Path:
        """The concrete file path (the HF snapshot file when cached)."""
        if self.hf_repo is not None:
            return hf_cached_path(*self.hf_repo) or self.path
        return self.path

    def accepted_names(self) -> tuple[str, ...]:
        """File names ``--from DIR`` accepts for this entry (the published name first)."""
        return (self.name, *self.source_names)


def hf_snapshot_path(repo_id: str, filename: str, revision: str = "local") -> Path:
    """Where a file of hub repo ``repo_id`` lives in the cache when installed under ``revision``."""
    folder = hf_hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    return folder / "snapshots" / revision / filename


def hf_cached_path(repo_id: str, filename: str) -> Path | None:
    """The cached file of ``repo_id`` that ``refs/main`` points at, or None when absent."""
    folder = hf_hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    if not ref.is_file():
        return None
    candidate = folder / "snapshots" / ref.read_text().strip() / filename
    return candidate if candidate.is_file() else None
