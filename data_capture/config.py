"""Typed configuration of the capture pipeline: one dataclass per stage, strict loading.

Every config is a dataclass of plain values so it serialises to JSON unchanged and is saved next
to each artefact (``layout.json``, ``dataset.json``). Loading goes through the suite's one typed
loader (``core.config``): unknown keys are rejected with a "did you mean", values are checked
against the field annotations, and each dataclass's own ``validate()`` runs, so a typo in a YAML
file never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from core import config as _core
from core.errors import ConfigError

__all__ = ["ConfigError", "from_dict", "to_dict", "load_config"]

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Raises:
        ConfigError: an unknown key (with the closest valid key), or a value of the wrong type.
    """
    return _core.from_dict(cls, data, where=where)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass (tuples become lists)."""
    return _core.to_dict(obj)


def load_config(cls: type[T], path: Path | None, overrides: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a JSON or YAML file (or defaults when ``path`` is None), then apply overrides.

    ``None`` values in ``overrides`` are ignored (unset command-line flags keep the file's value).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: the file does not parse, or a key or value is wrong.
    """
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"config file {path} does not exist; pass an existing .json/.yaml file")
    return _core.load_config(cls, path, overrides={k: v for k, v in (overrides or {}).items() if v is not None})
