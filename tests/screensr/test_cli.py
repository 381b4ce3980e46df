"""The ``screensr`` command line: every command and verb answers ``--help``."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from screensr.cli import GROUPS, VERBS, build_parser, main


def _walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*prefix, name))


ALL_COMMANDS = [path for path, _ in _walk(build_parser())]


def test_console_script_help(checkout_env):
    # the installed console script itself (the one test where the entry point on PATH is the point)
    out = subprocess.run(["screensr", "--help"], capture_output=True, text=True, check=True,
                         env=checkout_env()).stdout  # fmt: skip
    for name in [*GROUPS, *VERBS]:
        assert name in out


def test_module_entry_point_matches_console_script(run_screensr):
    out = run_screensr("--help", check=True).stdout
    assert "doctor" in out and "bench" in out


def test_every_group_is_wired():
    assert {p[0] for p in ALL_COMMANDS if p} >= set(GROUPS) | set(VERBS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "screensr")
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: screensr")


def test_group_without_verb_prints_its_help(capsys):
    assert main(["bench"]) == 2
    assert "usage: screensr bench" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(run_screensr):
    # a missing folder given to `weights --from` is the user's to fix: message, exit 2, no traceback
    proc = run_screensr("weights", "--from", "/nonexistent/weights-dir")
    assert proc.returncode == 2
    assert "error: --from /nonexistent/weights-dir: not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def _parser_raising(exc: BaseException):
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="screensr")
        sub = parser.add_subparsers(dest="command")

        def handler(args):
            raise exc

        sub.add_parser("boom").set_defaults(func=handler)
        return parser

    return build


def test_unknown_name_error_is_printed_without_quotes(monkeypatch, capsys):
    import screensr.cli as cli
    from core.errors import UnknownNameError

    # str(KeyError("unknown thing 'x'")) is "\"unknown thing 'x'\"": the CLI prints the message as written
    err = UnknownNameError("thing", "x", [], hint="choose y")
    monkeypatch.setattr(cli, "build_parser", _parser_raising(err))
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == "error: unknown thing 'x'; choose y\n"


@pytest.mark.parametrize("exc", [KeyError("a bug"), ValueError("a bug"), FileNotFoundError("a bug")])
def test_builtin_errors_are_bugs_and_keep_their_traceback(monkeypatch, capsys, exc):
    import screensr.cli as cli

    # only UserError (is_user_error) is the user's to fix; a builtin from a package is a bug
    monkeypatch.setattr(cli, "build_parser", _parser_raising(exc))
    with pytest.raises(type(exc)):
        cli.main(["boom"])
    assert "error:" not in capsys.readouterr().err


def test_broken_pipe_elsewhere_keeps_its_traceback(monkeypatch):
    import screensr.cli as cli

    # stdout is fine (captured): a broken pipe to some other process is a real failure
    monkeypatch.setattr(cli, "build_parser", _parser_raising(BrokenPipeError(32, "Broken pipe")))
    with pytest.raises(BrokenPipeError):
        cli.main(["boom"])


def test_bench_datasets_lists_layouts_sources_and_what_is_here(tmp_path, monkeypatch, capsys):
    import shutil

    from benchmark.dataset_sources import KNOWN_DATASETS, LAYOUT_GUIDE

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    data = Path(__file__).resolve().parents[1] / "data" / "drealsr_osediff"
    shutil.copytree(data, tmp_path / "home" / "datasets" / "DRealSR_crops")
    assert main(["bench", "datasets", "--dataset", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out
    for d in KNOWN_DATASETS.values():
        assert f"{d.name}  [{d.layout} layout, x{d.scale}]" in out
    for g in LAYOUT_GUIDE.values():
        assert all(line in out for line in g.structure)
    here = tmp_path / "home" / "datasets" / "DRealSR_crops"
    assert (f"  here: 19 pairs, x4, crops layout; the published set has 93: scores will not match the papers "
            f"({here})") in out  # fmt: skip
    assert "RealSR_crops  [crops layout, x4]\n  RealSR test set" in out and "  here: absent\n" in out
    assert f"  {tmp_path / 'nowhere'}: unusable: dataset {tmp_path / 'nowhere'}: no such folder; check the path" in out
    assert main(["bench", "datasets", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listing["known"]] == list(KNOWN_DATASETS)
    assert listing["known"][2]["present"]["pairs"] == 19 and set(listing["layouts"]) == set(LAYOUT_GUIDE)


def test_every_error_class_of_the_cli_packages_is_a_user_error():
    # The CLI prints only UserError as one line: an error class a user can trigger that is not
    # one would end in a traceback (as DatasetError, ImageFormatError, MethodError did)
    import importlib
    import inspect
    import pkgutil

    from core.errors import UserError

    found, bad = [], []
    for pkg_name in ("benchmark", "data_capture", "screensr"):
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{pkg_name}."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if not (inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name):
                    continue
                if issubclass(obj, Warning):
                    continue  # warnings are printed by the warnings machinery, never raised to the CLI
                found.append(f"{info.name}.{name}")
                if not issubclass(obj, UserError):
                    bad.append(f"{info.name}.{name} ({', '.join(b.__name__ for b in obj.__mro__[1:-2])})")
    assert len(found) >= 20, found  # the sweep saw the packages' error classes
    assert not bad, "error classes that print a traceback for a user's mistake:\n" + "\n".join(bad)
