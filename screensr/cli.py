"""The ``screensr`` command line: ``screensr <group> <verb>`` plus ``doctor``, ``weights``, ``demo``.

Each package contributes its verbs through a ``cli`` module with one function,
``add_commands(parser: argparse.ArgumentParser) -> None``, which adds sub-parsers and sets
``func=handler`` on each (``handler(args) -> int`` is the exit status). Those modules import only
the standard library at module level, so ``screensr --help`` stays fast; heavy work is imported
inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# group name -> (module providing add_commands, one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "capture": ("data_capture.cli", "build paired datasets from screen re-photographs"),
    "bench": ("benchmark.cli", "score SR methods on paired datasets (metrics, store, reports)"),
    "vosr": ("vosr.cli", "the VOSR reference model: inference, training, distillation"),
    "board": ("leaderboard.cli", "the Streamlit leaderboard and user studies"),
}

# top-level verbs implemented in this package
VERBS: dict[str, tuple[str, str]] = {
    "doctor": ("screensr.doctor", "report what this environment can do (versions, metrics, weights)"),
    "weights": ("screensr.weights_cli", "list, install or download the weight files the suite uses"),
    "demo": ("screensr.demo", "build a small demo dataset and benchmark three methods on it"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-written examples in descriptions and epilogs as they are."""


def build_parser() -> argparse.ArgumentParser:
    """The full parser; importing each group's ``cli`` module is cheap by contract."""
    parser = argparse.ArgumentParser(
        prog="screensr",
        description="ScreenSR: benchmark and evaluation suite for real-world image super-resolution.",
        formatter_class=_Formatter,
        epilog="examples:\n  screensr demo\n  screensr doctor\n  screensr bench run --help\n",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in {**VERBS, **GROUPS}.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
        importlib.import_module(module).add_commands(p)
    return parser


def _version() -> str:
    from screensr import __version__

    return f"screensr {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``screensr`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # a group or no command given: show the most specific help available
        target = getattr(args, "_parser", parser)
        target.print_help()
        return 0 if args.command is None else 2
    try:
        status = int(func(args) or 0)
        # flush here, not at interpreter exit, so a closed pipe is caught below
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        if not _stdout_broken():
            raise  # a pipe to something else (a method's subprocess) broke: a real failure
        return _stdout_closed()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Errors a user can cause (bad paths, values, configs) are core.errors.UserError
        # subclasses (a true ``is_user_error``): their message names the value and the fix, so a
        # traceback would only hide it. Anything else is a bug and keeps its traceback, even a
        # bare ValueError or KeyError. SCREENSR_DEBUG=1 shows the traceback anyway.
        if os.environ.get("SCREENSR_DEBUG") or not is_user_error(exc):
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2


#: The exit status of a command whose reader closed the pipe (``screensr weights | head -1``):
#: 128 + SIGPIPE, what a shell reports for a tool the signal ended.
EXIT_BROKEN_PIPE = 141


def _stdout_broken() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end is closed."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not backed by a descriptor (captured in-process): it cannot be the pipe
    if not hasattr(select, "poll"):  # Windows: no poll; a broken pipe there is stdout's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # the write end of a pipe whose reader has gone reports POLLERR (sockets: POLLHUP)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _stdout_closed() -> int:
    """The reader of stdout went away: stop quietly (no traceback, no "Exception ignored").

    Python flushes stdout once more at exit, which would raise again; pointing the descriptor at
    /dev/null makes that flush a no-op (the recipe of the ``signal`` module's documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the user can fix (printed as one line, without a traceback).

    Only exceptions that say so (``core.errors.UserError`` and other classes with a true
    ``is_user_error`` attribute): a builtin ``ValueError`` or ``KeyError`` from a bug must keep its
    traceback.
    """
    return bool(getattr(exc, "is_user_error", False))


def user_message(exc: BaseException) -> str:
    """The message of a user error as written: ``str(KeyError(msg))`` would add quotes."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def group_parser(parser: argparse.ArgumentParser, title: str = "verbs") -> argparse._SubParsersAction:
    """Create the sub-command set of a group parser, so ``screensr GROUP`` alone prints its help."""
    parser.set_defaults(_parser=parser)
    return parser.add_subparsers(title=title, metavar="VERB")


if __name__ == "__main__":
    sys.exit(main())
