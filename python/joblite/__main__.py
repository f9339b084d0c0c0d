"""Command line: ``python -m joblite cache {info,list,clear,prune} LOCATION``. (Issue 4.)"""

from __future__ import annotations

import sys
from typing import Optional


def main(argv: Optional[list] = None) -> int:
    """Entry point of the ``joblite`` console script."""
    print("joblite: no commands yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
