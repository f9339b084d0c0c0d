"""``joblib.disk`` under joblite's alias: the size parser and directory helpers."""

from __future__ import annotations

import os
import shutil
from typing import Union

from ...store import parse_bytes

__all__ = ["disk_used", "memstr_to_bytes", "mkdirp", "rm_subdirs"]


def memstr_to_bytes(text: Union[str, int]) -> int:
    """``"10M"`` -> bytes (powers of 1024, as joblib)."""
    value = parse_bytes(text)
    return 0 if value is None else value


def mkdirp(d: str) -> None:
    """Create ``d`` and its parents; no error when it exists."""
    os.makedirs(d, exist_ok=True)


def rm_subdirs(path: str) -> None:
    """Remove every directory below ``path`` (files directly in it stay)."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)


def disk_used(path: str) -> int:
    """Kilobytes used by the files below ``path``."""
    size = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return size // 1024
