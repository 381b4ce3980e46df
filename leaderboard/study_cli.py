"""Placeholder: replaced by the owner of this module."""

import argparse


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the study verbs (create, report, verify, export) to the ``screensr board study`` parser."""
    parser.set_defaults(_parser=parser)
