"""The core thread limit: how many threads joblite's Rust core may use in this process.

Hashing large buffers, lz4 compression and checksums run on a pool of native threads
(named ``joblite-core-<i>``). Like a BLAS library's thread pool, its size follows a limit:

1. :class:`thread_limits` (process-wide, like threadpoolctl's limits), else
2. the environment variable ``JOBLITE_NUM_THREADS``, else
3. ``OMP_NUM_THREADS`` (which joblib, loky, dask and job schedulers set in their workers),
4. else every CPU the process may use.

The environment is read once, when ``joblite`` is imported (as BLAS libraries read theirs
when they load): set these variables before the process starts or before ``import joblite``.
Libraries that change ``os.environ`` later for the processes they start (dask's
``LocalCluster`` sets ``OMP_NUM_THREADS=1``) leave this process's limit alone.

joblite's process workers start with ``JOBLITE_NUM_THREADS`` set to their share of the
cores (``cpu_count() // n_jobs``, or ``inner_max_num_threads``), so many workers never start
many times all cores of native threads. The workers of ``Parallel(backend="threading")``
are another pool, sized by ``n_jobs``.
"""

from __future__ import annotations

from typing import Any, Optional

from . import _core

__all__ = ["THREAD_LIMIT_VAR", "get_thread_limit", "thread_limits"]

THREAD_LIMIT_VAR = "JOBLITE_NUM_THREADS"


def _check(limit: Any) -> Optional[int]:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
    return limit


def get_thread_limit() -> int:
    """The number of threads joblite's Rust core may use now in this process.

    Examples
    --------
    >>> import joblite
    >>> with joblite.thread_limits(1):
    ...     joblite.get_thread_limit()
    1
    """
    return int(_core.get_thread_limit())


class thread_limits:
    """Limit the threads of joblite's Rust core (hashing, compression, checksums).

    Takes effect when created and lasts until :meth:`restore` (or the end of the ``with``
    block), for the whole process, like ``threadpoolctl.threadpool_limits``. Loops already
    running finish on the threads they have; the next ones use the new limit.

    Parameters
    ----------
    limit : int or None, default None
        Most threads the core may use (>= 1). ``None``: the default limit
        (``JOBLITE_NUM_THREADS``, else ``OMP_NUM_THREADS``, else all CPUs).

    Examples
    --------
    >>> import numpy as np
    >>> import joblite
    >>> with joblite.thread_limits(2):
    ...     digest = joblite.hash(np.zeros(2**20))  # hashed on at most 2 threads
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = _check(limit)
        self._previous = _core.set_thread_limit(self.limit)
        self._restored = False

    def __enter__(self) -> thread_limits:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def restore(self) -> None:
        """Give back the limit that was in force before this one (once)."""
        if not self._restored:
            self._restored = True
            _core.set_thread_limit(self._previous)

    def __repr__(self) -> str:
        return f"thread_limits({self.limit!r})"
