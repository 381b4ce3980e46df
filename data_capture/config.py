"""Typed configuration of the capture pipeline: one dataclass per stage, strict loading.

Every config is a frozen-free dataclass of plain values so it serialises to JSON unchanged and is
saved next to each artefact (``layout.json``, ``dataset.json``). ``from_dict`` rejects unknown keys
with a "did you mean" so a typo in a YAML file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names it and the fix."""


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Raises:
        ConfigError: an unknown key (with the closest valid key), or a value of the wrong type.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown key '{key}' in {where} ({cls.__name__}){hint} valid keys: {', '.join(fields)}"
            )
        default = fields[key].default
        if dataclasses.is_dataclass(default):
            value = from_dict(type(default), value, where=f"{where}.{key}")
        elif fields[key].default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            proto = fields[key].default_factory()  # type: ignore[misc]
            if dataclasses.is_dataclass(proto):
                value = from_dict(type(proto), value, where=f"{where}.{key}")
        kwargs[key] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(obj)


def load_config(cls: type[T], path: Path | None, overrides: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a JSON or YAML file (or defaults when ``path`` is None), then apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; pass an existing .json/.yaml file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_dict(cls, data, where=str(path) if path else "config")
