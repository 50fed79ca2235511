"""``svclink publish`` and ``svclink listen``: placeholder until the events API lands."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError(args.command)
