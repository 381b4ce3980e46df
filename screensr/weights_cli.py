"""``screensr weights``: list, install (``--from DIR``) or download the suite's weight files."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  screensr weights                       # every file, present or missing, with its path
  screensr weights --missing --group metric
  screensr weights --from /media/usb/weights   # copy the files found there into the caches
  screensr weights --download --group metric   # fetch what is missing (needs network)
"""


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Options of ``screensr weights`` (it has no verbs)."""
    parser.epilog = EPILOG
    parser.add_argument(
        "--group", action="append", choices=["metric", "sr", "vosr"], help="only this group (repeatable)"
    )
    parser.add_argument("--missing", action="store_true", help="list only the files that are missing")
    parser.add_argument(
        "--from", dest="source", metavar="DIR", help="install the files found (by name) below DIR"
    )
    parser.add_argument("--download", action="store_true", help="download the missing files (online)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark import weights
    from screensr.catalogue import every_weight_file

    files = every_weight_file(set(args.group) if args.group else None)
    if args.source:
        installed = weights.install_from_dir(Path(args.source), files)
        for wf, src in installed:
            print(f"installed {wf.name}: {src} -> {wf.resolved_path}")
        if not installed:
            print(f"nothing to install from {args.source} (no file there matched a missing weight's name)")
    if args.download:
        for wf in weights.download(files):
            print(f"downloaded {wf.name} -> {wf.resolved_path}")
    rows = [
        {
            "name": wf.name,
            "group": wf.group,
            "status": "present" if wf.present else "missing",
            "path": str(wf.resolved_path),
            "used_by": ",".join(wf.used_by),
            "source": wf.ships_with and f"ships with {wf.ships_with}" or (wf.url or ""),
        }
        for wf in files
        if not (args.missing and wf.present)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_weight_rows(rows))
    return 0


def format_weight_rows(rows: list[dict[str, str]]) -> str:
    """A plain-text listing, one block per file (paths are long: one per line)."""
    lines = []
    for r in rows:
        lines.append(f"[{r['status']:7}] {r['group']:6} {r['name']}  (used by {r['used_by']})")
        lines.append(f"          path:   {r['path']}")
        if r["source"]:
            lines.append(f"          source: {r['source']}")
    n_missing = sum(r["status"] == "missing" for r in rows)
    lines.append(f"{len(rows)} file(s), {n_missing} missing")
    return "\n".join(lines)
