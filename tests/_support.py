"""What several test files share: a fresh interpreter whose peak memory is measured, and the
compute-once lock of a cache entry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def run_measured(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter after importing numpy and joblite (and
    ``CorruptFileError``, ``UnsafeLoadError``); return what it put in the dict ``out`` plus
    ``rss_growth`` (bytes of peak resident memory it added)."""
    script = (
        "import json, resource, sys\n"
        "import numpy as np, joblite\n"
        "from joblite import CorruptFileError, UnsafeLoadError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n" + code + "\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out['rss_growth'] = (after - before) * 1024\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def entry_lock(
    folder: Path, func: Callable[[int], Any], arg: int, **memory_kwargs: Any
) -> tuple[Any, Path]:
    """``func`` cached in a Memory at ``folder`` (its folder made by a first call, ``f(0)``),
    and the path of the compute-once lock of its entry for ``arg`` (not created)."""
    from joblite import Memory

    mem = Memory(folder, verbose=0, **memory_kwargs)
    f = mem.cache(func)
    f(0)
    key = f._get_args_id(arg)
    lock = Path(mem.store_backend.entry_dir(f.func_id, key) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    return f, lock


def write_lock(lock: Path, pid: int, marker: str = "") -> None:
    """Write ``lock`` as the compute-once lock of process ``pid`` on this host, taken now
    (``marker``: the owner's start marker, left out as older versions wrote it)."""
    import os

    fields = [str(pid), os.uname().nodename, str(time.time())] + ([marker] if marker else [])
    lock.write_text(" ".join(fields) + "\n")


def assert_lock_is_broken(f: Any, lock: Path, arg: int, expected: Any, within: float) -> None:
    """``f(arg)`` breaks the stale ``lock`` and computes at once (within ``within`` s)."""
    start = time.monotonic()
    assert f(arg) == expected
    assert time.monotonic() - start < within
    assert not lock.exists()
