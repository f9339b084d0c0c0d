"""Command line: ``python -m joblite cache {info,list,clear,prune} LOCATION``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``joblite`` console script (see ``joblite cache --help``)."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
