"""``screensr board ...``: serve the leaderboard, export it as a static site, run user studies.

Only the standard library and ``core.errors`` (standard library only) are imported at module
level; handlers import what they need, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import ConfigError, UserError

_SERVE_EPILOG = """examples:
  screensr board                                   # results.db in this folder, http://127.0.0.1:8501
  screensr board --store sqlite:///runs/results.db --port 8600
  screensr board --store postgresql+psycopg://board@db/screensr --address 0.0.0.0
  screensr board --admin-secret-hash "$(screensr board hash-secret < admin-secret.txt)"
  screensr board -S server.maxUploadSize=1024 -S theme.base=light   # streamlit run options
  screensr board -S client.toolbarMode=developer   # show Streamlit's developer menu (default: viewer)
"""

_HASH_EPILOG = """The secret is read from stdin (typed twice, hidden, on a terminal; else the first line of
the input), never from the command line where other users could see it in the process list.
Only the printed hash is given to the board.

examples:
  screensr board hash-secret                      # type the secret twice
  screensr board hash-secret < admin-secret.txt
  screensr board --admin-secret-hash "$(screensr board hash-secret < admin-secret.txt)"
"""

#: Streamlit options ``screensr board`` sets unless ``-S`` gives them: visitors get the viewer
#: toolbar (no "Deploy" button, no rerun / clear-cache developer items)
DEFAULT_STREAMLIT_OPTIONS = {"client.toolbarMode": "viewer"}

MIN_SECRET_CHARS = 8

_EXPORT_EPILOG = """examples:
  screensr board export --out site/
  screensr board export --store sqlite:///results.db --out paper-supplement/ --crops 3
  screensr board export --out site/ --config export.yaml   # e.g. {crops: 4, x_metric: lpips, y_metric: maniqa}
"""


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add ``screensr board`` (serve) and its verbs ``export`` and ``study`` to ``parser``."""
    parser.description = "Serve the ScreenSR leaderboard (Streamlit) on a results store."
    parser.epilog = _SERVE_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _store_option(parser)
    parser.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    parser.add_argument(
        "--address", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 to serve a network)"
    )
    parser.add_argument(
        "--admin-secret-hash",
        default=None,
        metavar="HASH",
        help="salted scrypt hash of the admin secret that unlocks the Submit page, made by "
        "`screensr board hash-secret` (without it submissions are disabled)",
    )
    parser.add_argument(
        "--admin-secret-sha256",
        default=None,
        metavar="HASH",
        help="deprecated spelling of --admin-secret-hash (one release); an unsalted sha256 is refused",
    )
    parser.add_argument(
        "--study-store",
        default=None,
        metavar="URL",
        help="user-study votes store for the Study admin page "
        "(default $SCREENSR_STUDY_STORE, else $SCREENSR_HOME/studies.sqlite)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the streamlit command instead of running it"
    )
    parser.add_argument(
        "-S",
        "--streamlit-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a `streamlit run` option passed through, e.g. -S server.maxUploadSize=1024 (repeatable)",
    )
    parser.set_defaults(func=_serve, _parser=parser)

    verbs = parser.add_subparsers(title="verbs", metavar="VERB")
    export = verbs.add_parser(
        "export",
        help="write the leaderboard as a self-contained static site (HTML + CSV/JSON + plots + crops)",
        description="Write the leaderboard tables, plots and comparison crops as a static site.",
        epilog=_EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hash_secret = verbs.add_parser(
        "hash-secret",
        help="print the salted hash of an admin secret (read from stdin) for --admin-secret-hash",
        description="Hash an admin secret with salted scrypt for `screensr board --admin-secret-hash`.",
        epilog=_HASH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hash_secret.set_defaults(func=_hash_secret)

    _store_option(export)
    export.add_argument("--out", required=True, type=Path, help="output folder (created; files are replaced atomically)")
    export.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="export options from a YAML/JSON file (keys of leaderboard.board.export.ExportOptions: crops, "
        "crop_size, zoom, methods_per_crop, x_metric, y_metric, dist_metric); flags given override it",
    )
    export.add_argument("--crops", type=int, default=None, help="comparison crops per dataset (default 2; 0 for none)")
    export.add_argument("--crop-size", type=int, default=None, help="crop side in HR pixels (default 96)")
    export.add_argument("--zoom", type=int, default=None, help="nearest-neighbour zoom of the crops (default 3)")
    export.add_argument("--methods-per-crop", type=int, default=None, help="top methods shown in each crop (default 4)")
    export.set_defaults(func=_export)

    study = verbs.add_parser(
        "study",
        help="user studies: create, serve the voting app, report, verify, export",
        description="User studies of SR outputs (votes, statistics, integrity).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  screensr board study --help\n",
    )
    from leaderboard.study import cli as study_cli

    study_cli.add_commands(study)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="results store: an SQLAlchemy URL or a SQLite path (default $SCREENSR_STORE or sqlite:///results.db)",
    )


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line that serves the app for ``args``."""
    app = Path(__file__).with_name("app.py")
    extra: list[str] = []
    given: set[str] = set()
    for item in args.streamlit_option or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--streamlit-option {item!r}: expected KEY=VALUE, e.g. server.maxUploadSize=1024")
        key = key.strip().lstrip("-")
        given.add(key)
        extra += [f"--{key}", value]
    for key, value in DEFAULT_STREAMLIT_OPTIONS.items():
        if key not in given:
            extra += [f"--{key}", value]
    return [
        sys.executable,
        "-c",
        "from leaderboard.cli import launch_streamlit; launch_streamlit()",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--browser.gatherUsageStats",
        "false",
        *extra,
    ]


def launch_streamlit() -> None:
    """``streamlit`` with its arguments from ``sys.argv``, in navigation (not pages-folder) mode.

    Streamlit treats an app with a ``pages/`` folder beside its main script as a v1 multipage
    app until the main script has called ``st.navigation`` once in the server process: a first
    visit to a deep link (``/compare``) would run that page file alone, without this app's
    navigation and page settings. Declaring navigation mode before the server starts makes
    every first request go through ``app.py``.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
    except (ImportError, AttributeError):  # another Streamlit release: it then behaves as documented
        pass
    from streamlit.web import cli as streamlit_cli

    if os.environ.get("SCREENSR_STORE"):
        import threading

        # Read and aggregate the store while the server starts, so that the first visitor does
        # not wait for it (same process, the board cache the pages use). Not the tables too
        # (Board.warm): computing them here competes with the server's start and the first page
        # for the interpreter, and the first page load measured 4.2-4.4 s with it, 3.4-3.6 s without.
        threading.Thread(target=_preload_board, args=(os.environ["SCREENSR_STORE"],), daemon=True).start()
    sys.argv[0] = "streamlit"
    streamlit_cli.main(prog_name="streamlit")


def _preload_board(url: str) -> None:
    try:
        from leaderboard.board import cache

        cache.cached_board(url)
    except Exception as exc:  # the pages report store errors to the visitor; never kill the server
        print(f"warning: could not preload the results store {url}: {exc}", file=sys.stderr)


class StoreOpenError(UserError, RuntimeError):
    """The results store named on the command line cannot be opened (printed as one line)."""


class SecretInputError(UserError, ValueError):
    """The admin secret typed or piped in is unusable (too short, or the two entries differ)."""


def _resolved_store(url: str | None) -> str:
    """Open the store once (creating or migrating its tables) and return its normalised URL.

    Raises:
        StoreOpenError: the database cannot be opened (a file that is not a database, a
            folder, no permission), naming the URL; the store's own user errors pass unchanged.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from benchmark.store import ResultsStore, default_url

    target = url or default_url()
    try:
        store = ResultsStore(target)  # fails early, naming the URL, if it cannot be opened
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise StoreOpenError(
            f"results store {target!r} cannot be opened ({reason}); give --store a SQLite database file "
            "(created if missing) or a database URL"
        ) from exc
    store.close()
    return store.url


def admin_hash_option(args: argparse.Namespace) -> str | None:
    """The admin hash from ``--admin-secret-hash`` (or its deprecated spelling), checked.

    Raises:
        AdminSecretError: an unsalted sha256 or anything but a ``hash-secret`` hash, with the fix;
            both spellings given.
    """
    from leaderboard.board.submissions import AdminSecretError, parse_admin_hash

    new, old = getattr(args, "admin_secret_hash", None), getattr(args, "admin_secret_sha256", None)
    if new and old:
        raise AdminSecretError("give --admin-secret-hash only (--admin-secret-sha256 is its deprecated spelling)")
    if old:
        value = parse_admin_hash(old, "--admin-secret-sha256")
        print("warning: --admin-secret-sha256 is deprecated; use --admin-secret-hash", file=sys.stderr)
        return value
    return parse_admin_hash(new, "--admin-secret-hash") if new else None


def read_secret(stream=None, *, prompt: bool | None = None) -> str:
    """The admin secret from ``stream`` (default stdin): typed twice without echo on a terminal,
    else the first line (its line ending removed).

    Raises:
        SecretInputError: empty, shorter than :data:`MIN_SECRET_CHARS`, or the two entries differ.
    """
    import getpass

    stream = sys.stdin if stream is None else stream
    interactive = stream.isatty() if prompt is None else prompt
    if interactive:
        secret = getpass.getpass("Admin secret: ")
        if getpass.getpass("Again: ") != secret:
            raise SecretInputError("the two entries differ; run `screensr board hash-secret` again")
    else:
        secret = stream.readline().rstrip("\r\n")
    if len(secret) < MIN_SECRET_CHARS:
        raise SecretInputError(
            f"the admin secret has {len(secret)} characters; use at least {MIN_SECRET_CHARS} (a passphrase of "
            "several words is best)"
        )
    return secret


def _hash_secret(args: argparse.Namespace) -> int:
    from core.secrets import hash_secret

    print(hash_secret(read_secret()))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import subprocess

    try:
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise ImportError("the leaderboard needs Streamlit: pip install 'screensr[board]'") from exc
    cmd = streamlit_command(args)  # first: option errors before anything is opened
    env = dict(os.environ)
    from leaderboard.board.submissions import ADMIN_ENV, LEGACY_ADMIN_ENV, admin_hash

    admin = admin_hash_option(args)  # refuses an unsalted sha256, with the command that makes the hash
    if admin:
        env[ADMIN_ENV] = admin
        env.pop(LEGACY_ADMIN_ENV, None)
    else:
        admin_hash()  # a hash from the environment is checked here too, not first on the Submit page
    env["SCREENSR_STORE"] = _resolved_store(args.store)
    if args.study_store:
        from leaderboard.study.store import ENV_STORE, normalise_url

        env[ENV_STORE] = normalise_url(args.study_store)
    if args.dry_run:
        study = f"{ENV_STORE}={env[ENV_STORE]} " if args.study_store else ""
        print(f"SCREENSR_STORE={env['SCREENSR_STORE']} {study}" + " ".join(cmd))
        return 0
    print(f"serving {env['SCREENSR_STORE']} at http://{args.address}:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    if os.name == "posix":
        # become the server: signals (Ctrl-C, a service manager's SIGTERM) reach Streamlit itself,
        # and no orphaned server outlives this command
        os.execve(cmd[0], cmd, env)
    return subprocess.call(cmd, env=env)


def _export(args: argparse.Namespace) -> int:
    from core.config import load_config
    from leaderboard.board.export import ExportOptions, export_site

    # options first: a bad file or value is reported before the store is opened
    flags = {"crops": args.crops, "crop_size": args.crop_size, "zoom": args.zoom, "methods_per_crop": args.methods_per_crop}
    options = load_config(ExportOptions, args.config, overrides=flags)
    url = _resolved_store(args.store)
    index = export_site(url, args.out, options, progress=True)
    print(f"wrote {index}")
    return 0
