"""The one typed configuration loader: nested dataclasses from YAML/JSON, unknown keys rejected.

Every configurable part of the suite (capture stages, VOSR model/sampling/training, board export,
study definitions, method options) is a dataclass of plain values. This module turns a mapping
(parsed YAML or JSON, ``--set key=value`` assignments, ``name@key=value`` method options) into
such a dataclass, checking every key and every value against the field's annotation, and turns
it back into a JSON-ready dict to store next to the artefact it produced.

Supported annotations: nested dataclasses, ``int``, ``float`` (ints accepted), ``bool`` (strict),
``str``, ``pathlib.Path`` (from a string), ``Literal[...]``, ``X | None`` / ``Optional[X]``,
unions, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]``, ``Any``.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Inner:
    ...     steps: int = 25
    >>> @dataclass
    ... class Outer:
    ...     name: str = "x"
    ...     inner: Inner = field(default_factory=Inner)
    >>> from_dict(Outer, {"inner": {"steps": 8}})
    Outer(name='x', inner=Inner(steps=8))
    >>> from_dict(Outer, {"inner": {"stpes": 8}})
    Traceback (most recent call last):
    ...
    core.errors.ConfigError: config.inner: unknown key 'stpes' (did you mean 'steps'?)
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ConfigError, MissingFileError, did_you_mean

__all__ = [
    "MissingConfigError",
    "from_dict",
    "to_dict",
    "merge",
    "read_mapping",
    "load_config",
    "parse_assignments",
    "parse_options",
    "field_names",
]

T = TypeVar("T")


class MissingConfigError(ConfigError, MissingFileError):
    """A config file that does not exist: a :class:`ConfigError` and a ``FileNotFoundError``."""


def field_names(cls: type) -> list[str]:
    """The init field names of dataclass ``cls``, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursively, checking keys and value types.

    Args:
        cls: a dataclass type.
        data: key -> value (``None`` means all defaults).
        where: where ``data`` came from (a file name, ``--set``), used as the prefix of errors.

    Raises:
        ConfigError: an unknown key (with the closest valid one), a missing required key, a value
            of the wrong type, or a value the dataclass's own checks (``__post_init__``,
            ``validate()``) reject.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of keys to values for {cls.__name__}, got {_kind(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints.get(name, Any), f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r} for {cls.__name__}")
    try:
        obj = cls(**values)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return obj


def to_dict(obj: Any) -> Any:
    """A JSON-ready copy of a (nested) config dataclass: tuples become lists, paths strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def merge(obj: T, updates: Mapping[str, Any], *, where: str = "config") -> T:
    """A copy of dataclass ``obj`` with ``updates`` (nested mappings merge into nested configs)."""
    base = to_dict(obj)
    _deep_update(base, updates)
    return from_dict(type(obj), base, where=where)


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON file that must hold a mapping.

    Raises:
        MissingConfigError: the file does not exist (a ``ConfigError`` and a ``FileNotFoundError``;
            the message names it).
        ConfigError: the file does not parse, or holds something other than a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingConfigError(f"config file {path} does not exist; pass an existing .yaml/.yml/.json file")
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: json.JSONDecodeError
        raise ConfigError(
            f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} ({exc})"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of keys to values, got {_kind(data)}")
    return data


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    assignments: Iterable[str] = (),
) -> T:
    """Load ``cls`` from a file (or defaults), then apply ``overrides`` and ``key=value`` assignments.

    Args:
        cls: the dataclass type.
        path: a YAML/JSON file, or None for the defaults.
        overrides: a (nested) mapping merged over the file's values; ``None`` values are ignored
            (so unset CLI flags keep the file's value).
        assignments: ``dotted.key=value`` strings (``--set``); values are parsed as YAML scalars.
    """
    data = read_mapping(path) if path is not None else {}
    if overrides:
        _deep_update(data, {k: v for k, v in overrides.items() if v is not None})
    assignments = list(assignments)
    if assignments:
        _deep_update(data, parse_assignments(assignments))
    return from_dict(cls, data, where=str(path) if path is not None else cls.__name__)


def parse_assignments(items: Iterable[str], *, flag: str = "--set") -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are YAML scalars.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected key=value (for example {flag} steps=8)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{flag} {item!r}: {part!r} is assigned both a value and sub-keys")
        node[parts[-1]] = value
    return out


def parse_options(text: str, *, where: str = "options") -> dict[str, Any]:
    """``"steps=8,guidance=0.5"`` (the part after ``@`` in a method spec) -> a mapping.

    Commas inside brackets are kept (``size=[64,64]``).
    """
    items, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    if current:
        items.append(current)
    return parse_assignments([i for i in items if i.strip()], flag=where)


# ------------------------------------------------------------------------------ conversion


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        # An annotation that cannot be resolved (a name imported under TYPE_CHECKING, a class
        # defined in a function): fall back to what the defaults say, so nested configs still nest.
        hints: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            proto = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            hints[f.name] = type(proto) if dataclasses.is_dataclass(proto) else Any
        return hints


def _kind(value: Any) -> str:
    return (
        f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
    )


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked (and minimally converted) against annotation ``hint``."""
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {_kind(value)} matches none of {hint}"
        )
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(
            f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}{did_you_mean(str(value), [str(a) for a in args])}"
        )
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, where=where)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)}")
            return tuple(
                _convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True))
            )
        item_hint = args[0] if args else Any
        converted = [_convert(v, item_hint, f"{where}[{i}]") for i, v in enumerate(items)]
        container = origin or hint
        return container(converted)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        key_hint, val_hint = args if args else (Any, Any)
        return {
            _convert(k, key_hint, f"{where} key"): _convert(v, val_hint, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_kind(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {_kind(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {_kind(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {_kind(value)}")
    if hint is Path or (isinstance(hint, type) and issubclass(hint, os.PathLike)):
        if isinstance(value, (str, os.PathLike)) and str(value):
            return Path(os.fspath(value)).expanduser()
        raise ConfigError(f"{where}: expected a path, got {_kind(value)}")
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)  # an Enum or another simple value type
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {_kind(value)}") from exc
    return value


def _deep_update(base: dict[str, Any], updates: Mapping[str, Any]) -> None:
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
