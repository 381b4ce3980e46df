"""``screensr vosr ...``: command-line verbs of the ``vosr`` package.

Inference verbs live in ``vosr.infer_cli``, training verbs in ``vosr.train_cli``; only the
standard library is imported at module level.
"""

from __future__ import annotations

import argparse


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the ``infer``, ``train`` and ``distill`` verbs to the ``screensr vosr`` parser."""
    from vosr import infer_cli, train_cli

    parser.set_defaults(_parser=parser)
    sub = parser.add_subparsers(title="verbs", metavar="VERB")
    infer_cli.add_commands(sub)
    train_cli.add_commands(sub)
