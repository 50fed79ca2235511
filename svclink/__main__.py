"""``python -m svclink``: the command line (:mod:`svclink.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
