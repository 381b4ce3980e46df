"""``screensr vosr ...``: command-line verbs of the ``vosr`` package.

Only the standard library is imported at module level; handlers import what they need.
"""

from __future__ import annotations

import argparse


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add this group's verbs to ``parser`` (the ``screensr vosr`` parser)."""
    parser.set_defaults(_parser=parser)
    parser.add_subparsers(title="verbs", metavar="VERB")
