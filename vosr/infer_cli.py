"""Placeholder: replaced by the owner of this module."""

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the ``screensr vosr`` sub-parsers."""
