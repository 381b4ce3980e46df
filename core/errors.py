"""Errors a user can fix, and the "did you mean" every registry and config loader uses.

The command line prints an exception whose class has a true ``is_user_error`` attribute as one
``error: ...`` line without a traceback (``SCREENSR_DEBUG=1`` shows it anyway); anything else is a
bug and keeps its traceback. :class:`UserError` is the base of the packages' user-facing errors.
Subclasses may also derive from a builtin (``FileNotFoundError``, ``ValueError``) so callers that
catch those keep working.

Example:
    >>> did_you_mean("bicubc", ["bicubic", "lanczos"])
    " (did you mean 'bicubic'?)"
    >>> str(UnknownNameError("method", "bicubc", ["bicubic", "lanczos"]))
    "unknown method 'bicubc' (did you mean 'bicubic'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "UserError",
    "ConfigError",
    "MissingFileError",
    "UnknownNameError",
    "did_you_mean",
    "close_matches",
]


class UserError(Exception):
    """An error the user can fix; the message names the offending value or file and the fix."""

    is_user_error = True

    def __str__(self) -> str:
        # KeyError-style quoting of the message never applies: print the message as written
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ConfigError(UserError, ValueError):
    """A configuration key or value is wrong (unknown key, wrong type, out of range)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a command needs) does not exist."""


def close_matches(name: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.5) -> list[str]:
    """The ``n`` closest of ``choices`` to ``name`` (``difflib`` ratio >= ``cutoff``)."""
    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 1, list_all_below: int = 30) -> str:
    """A suffix for an "unknown X" message: `` (did you mean 'x'?)``, or the valid choices.

    Args:
        name: what the user typed.
        choices: the valid names.
        n: how many close matches to offer.
        list_all_below: with no close match, list every choice when there are fewer than this many.

    Returns:
        ``" (did you mean 'a'?)"``, ``" (did you mean 'a' or 'b'?)"``, ``" (choices: a, b, c)"``,
        or ``""`` when there is nothing useful to say.
    """
    pool = sorted({str(c) for c in choices})
    close = close_matches(name, pool, n=n)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    if pool and len(pool) < list_all_below:
        return f" (choices: {', '.join(pool)})"
    return ""


class UnknownNameError(UserError, KeyError):
    """A registry lookup for a name that is not registered.

    Derives from ``KeyError`` so ``except KeyError`` around registry lookups keeps working, but
    prints its message without ``KeyError``'s quotes.

    Args:
        kind: what is looked up, e.g. ``"method"`` or ``"metric"``.
        name: the name asked for.
        choices: the registered names, for the suggestion.
        hint: an optional sentence appended to the message (how to list or add entries).
    """

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        self.kind, self.name = kind, name
        message = f"unknown {kind} {name!r}{did_you_mean(name, choices)}"
        super().__init__(f"{message}; {hint}" if hint else message)
