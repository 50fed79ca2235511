"""The ``svclink`` command line: ``python -m svclink demo``."""

from __future__ import annotations

import argparse
import sys

from .core.errors import SvclinkError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svclink", description="service-to-service calls and events")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="run a local demo service and call it from the sync and aio sides")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; errors are printed as one line, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from . import _demo

            return _demo.run()
    except (SvclinkError, ImportError) as exc:
        print(f"svclink: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
