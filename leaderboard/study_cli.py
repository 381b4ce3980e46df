"""``screensr board study ...``: create a user study, hand out links, report, verify and export votes.

Only the standard library is imported at module level (``--help`` stays instant); the handlers
import the study modules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_STORE_HELP = (
    "SQLAlchemy URL or SQLite file of the study store (default: $SCREENSR_STUDY_STORE, else "
    "$SCREENSR_HOME/studies.sqlite); e.g. postgresql+psycopg://user@host/votes"
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in epilogs as written."""


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the study verbs (create, invite, status, report, verify, export) to the ``study`` parser."""
    parser.set_defaults(_parser=parser)
    sub = parser.add_subparsers(title="verbs", metavar="VERB")

    p = sub.add_parser(
        "create",
        help="store a study from its YAML definition and print one link per participant",
        description="Validate a study definition (every method has every image, sizes agree), store it "
        "with its trials, and issue participant tokens (only their hashes are stored). Re-running "
        "with an unchanged YAML changes nothing; --participants then issues that many more tokens.",
        formatter_class=_Formatter,
        epilog="example:\n  screensr board study create study.yaml --participants 10 \\\n"
        "      --base-url https://votes.example.org\n"
        "  # prints 10 links .../study_vote?token=...; the admin secret goes to stderr once\n",
    )
    p.add_argument("definition", metavar="STUDY.yaml", help="study definition (see leaderboard/study.py)")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.add_argument("--participants", type=int, default=0, metavar="N", help="tokens to issue now (default 0)")
    p.add_argument("--base-url", default="http://localhost:8501",
                   help="address of the leaderboard app, for the printed links (default %(default)s)")  # fmt: skip
    p.add_argument("--admin-secret", default=None,
                   help="admin secret to store (hashed); by default a random one is generated and printed")  # fmt: skip
    p.add_argument("--tokens-only", action="store_true", help="print bare tokens instead of links")
    p.set_defaults(func=_create)

    p = sub.add_parser(
        "invite",
        help="issue more participant links for a stored study",
        formatter_class=_Formatter,
        epilog="example:\n  screensr board study invite vosr-ms --participants 5\n",
    )
    p.add_argument("study", metavar="STUDY_NAME")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.add_argument("--participants", type=int, required=True, metavar="N")
    p.add_argument("--base-url", default="http://localhost:8501")
    p.add_argument("--tokens-only", action="store_true", help="print bare tokens instead of links")
    p.set_defaults(func=_invite)

    p = sub.add_parser(
        "status",
        help="per-participant progress of a study",
        formatter_class=_Formatter,
        epilog="example:\n  screensr board study status vosr-ms\n",
    )
    p.add_argument("study", metavar="STUDY_NAME")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "report",
        help="votes, shares, intervals, tests and agreement per method and criterion",
        description="One row per method x criterion (method, criterion, votes, n, share, ci_low, ci_high "
        "[Wilson], sim_low, sim_high [Goodman], boot_low, boot_high [cluster bootstrap]); shares are "
        "fractions. markdown and json add the chi-square, pairwise, agreement and participant tables.",
        formatter_class=_Formatter,
        epilog="examples:\n  screensr board study report vosr-ms --format markdown\n"
        "  screensr board study report vosr-ms --format csv --out votes.csv --plot figure2.png\n",
    )
    p.add_argument("study", metavar="STUDY_NAME")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.add_argument("--format", choices=("csv", "json", "markdown"), default="markdown")
    p.add_argument("--out", default=None, help="write the report here (atomically) instead of stdout")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also write the votes figure (Figure 2)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--top", type=int, default=3, help="methods compared pairwise (default 3)")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "verify",
        help="recompute the votes' hash chain (exit status 0 only when it holds)",
        formatter_class=_Formatter,
        epilog="example:\n  screensr board study verify vosr-ms --expect-head 3f2a...\n",
    )
    p.add_argument("study", metavar="STUDY_NAME")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.add_argument("--expect-head", default=None, metavar="HASH",
                   help="published head hash; also detects votes removed from the end")  # fmt: skip
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "export",
        help="export the raw vote log (CSV or Parquet) with the study definition next to it",
        formatter_class=_Formatter,
        epilog="example:\n  screensr board study export vosr-ms --out votes/vosr-ms.parquet\n",
    )
    p.add_argument("study", metavar="STUDY_NAME")
    p.add_argument("--store", default=None, help=_STORE_HELP)
    p.add_argument("--out", default=None, help="output file, .csv or .parquet (default STUDY_NAME-votes.csv)")
    p.add_argument("--format", choices=("csv", "parquet"), default=None, help="default: from --out's suffix")
    p.set_defaults(func=_export)


def _links(tokens: list[str], base_url: str, tokens_only: bool) -> list[str]:
    from urllib.parse import quote

    if tokens_only:
        return tokens
    return [f"{base_url.rstrip('/')}/study_vote?token={quote(t)}" for t in tokens]


def _create(args: argparse.Namespace) -> int:
    from leaderboard.study import load_study
    from leaderboard.study_db import StudyStore

    config = load_study(args.definition)
    store = StudyStore(args.store)
    info, secret, created = store.create_study(config, admin_secret=args.admin_secret)
    if created:
        print(f"created study {info.name!r} in {store.url} (config {info.config_hash[:12]})", file=sys.stderr)
        if args.admin_secret is None:
            print(f"admin secret (shown once, stored hashed): {secret}", file=sys.stderr)
    else:
        print(f"study {info.name!r} already exists with this definition; nothing changed", file=sys.stderr)
    if config.open_enrolment:
        print(f"open enrolment link: {args.base_url.rstrip('/')}/study_vote?study={info.name}", file=sys.stderr)
    tokens = store.add_participants(info.name, args.participants) if args.participants else []
    for line in _links(tokens, args.base_url, args.tokens_only):
        print(line)
    return 0


def _invite(args: argparse.Namespace) -> int:
    from leaderboard.study_db import StudyStore

    store = StudyStore(args.store)
    for line in _links(store.add_participants(args.study, args.participants), args.base_url, args.tokens_only):
        print(line)
    return 0


def _status(args: argparse.Namespace) -> int:
    from leaderboard.stats import markdown_table
    from leaderboard.study_db import StudyStore

    store = StudyStore(args.store)
    progress = store.progress(args.study)
    print(markdown_table(progress))
    done = int(progress["complete"].sum()) if len(progress) else 0
    print(f"\n{done}/{len(progress)} participants complete, {int(progress['votes'].sum())} votes")
    return 0


def _report(args: argparse.Namespace) -> int:
    from leaderboard.stats import figure_png, plot_votes, study_report, write_atomic
    from leaderboard.study_db import StudyStore

    store = StudyStore(args.store)
    info = store.study(args.study)
    votes = store.votes_frame(args.study)
    check = store.verify(args.study)
    meta = {
        "config_hash": info.config_hash,
        "votes": check.n_votes,
        "head_hash": check.head_hash,
        "chain_ok": check.ok,
        "participants": int(votes["participant"].nunique()) if len(votes) else 0,
    }
    report = study_report(
        info.name,
        votes,
        list(info.config.method_names),
        [c.key for c in info.config.criteria],
        n_boot=args.bootstrap,
        seed=args.seed,
        top=args.top,
        meta=meta,
    )
    if args.format == "csv":
        text = report.votes.to_csv(index=False)
    elif args.format == "json":
        text = report.to_json()
    else:
        text = report.to_markdown()
    if args.out:
        write_atomic(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plot:
        write_atomic(args.plot, figure_png(plot_votes(report.votes, title=info.name)))
        print(f"wrote {args.plot}", file=sys.stderr)
    if not check.ok:
        print(f"warning: the vote chain does not verify ({check.problems[0]})", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from leaderboard.study_db import StudyStore

    report = StudyStore(args.store).verify(args.study, expected_head=args.expect_head)
    if report.ok:
        print(f"ok: {report.n_votes} votes, head {report.head_hash}")
        return 0
    print(f"FAILED: {report.n_votes} votes, {len(report.problems)} problem(s):")
    for problem in report.problems[:20]:
        print(f"  {problem}")
    return 1


def _export(args: argparse.Namespace) -> int:
    import json

    from leaderboard.stats import write_atomic
    from leaderboard.study_db import StudyStore

    store = StudyStore(args.store)
    info = store.study(args.study)
    out = Path(args.out or f"{info.name}-votes.csv")
    fmt = args.format or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    if fmt == "parquet" and out.suffix.lower() != ".parquet":
        out = out.with_suffix(".parquet")
    votes = store.votes_frame(args.study)
    if fmt == "csv":
        write_atomic(out, votes.to_csv(index=False))
    else:
        import io

        buf = io.BytesIO()
        votes.to_parquet(buf, index=False)
        write_atomic(out, buf.getvalue())
    definition = {"study": info.config.to_dict(), "config_hash": info.config_hash, "created_at": info.created_at}
    write_atomic(out.with_name(out.stem + ".study.json"), json.dumps(definition, indent=2))
    print(f"wrote {len(votes)} votes to {out}")
    return 0
