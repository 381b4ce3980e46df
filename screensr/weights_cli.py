"""Placeholder replaced in this session."""

import argparse


def add_commands(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_parser=parser)
