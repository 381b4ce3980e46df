"""``screensr vosr ...``: command-line verbs of the ``vosr`` package.

Inference verbs live in ``vosr.infer_cli``, training verbs in ``vosr.train_cli``; both import
only the standard library and ``core.errors`` at module level (their handlers import the rest).
"""

from __future__ import annotations

import argparse

from vosr import infer_cli, train_cli


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the ``infer``, ``train`` and ``distill`` verbs to the ``screensr vosr`` parser."""
    parser.set_defaults(_parser=parser)
    sub = parser.add_subparsers(title="verbs", metavar="VERB")
    infer_cli.add_commands(sub)
    train_cli.add_commands(sub)
