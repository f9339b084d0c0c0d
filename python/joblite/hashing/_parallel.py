"""The columns of a tall frame hashed at the same time, on as many threads as the core limit.

Each column is hashed into streams of its own (a pandas column into its own digest, an Arrow
column into its own ``_ColumnStreams``), and the digests are put together in column order
afterwards, so the key is the same whatever the number of threads and however the columns
were scheduled. The work in each column releases the GIL (it runs in the Rust core), so the
threads overlap a column's single-threaded row loops with another column's hashing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

from .. import _core, _fork

__all__ = ["PARALLEL_ROWS", "map_ordered"]

T = TypeVar("T")
R = TypeVar("R")

#: frames (or batches) with fewer rows hash their columns one after another: starting the
#: threads would cost more than it saves
PARALLEL_ROWS = 1 << 17

_worker = threading.local()
_lock = threading.Lock()
_fork.renew_in_child(globals(), "_lock")  # held by a thread at a fork
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, size, executor)


def _mark_worker() -> None:
    _worker.active = True


def _executor(size: int) -> ThreadPoolExecutor:
    """The process's column threads (new after a fork, or when the core limit changed)."""
    global _pool
    with _lock:
        found = _pool
        if found is not None and found[0] == os.getpid() and found[1] == size:
            return found[2]
        if found is not None and found[0] == os.getpid():
            found[2].shutdown(wait=False)
        executor = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="joblite-hash", initializer=_mark_worker
        )
        _pool = (os.getpid(), size, executor)
        return executor


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    rows: int,
    slow: Callable[[T], bool] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, the items run at once on threads when the frame has
    at least :data:`PARALLEL_ROWS` rows and the core limit allows more than one thread.

    The results are in the items' order; an exception raised for an item is raised for the
    first such item in that order (the items not yet started are cancelled). Inside a column
    thread (a frame nested in a column) the items run one after another. Items for which
    ``slow`` is true (columns with single-threaded row loops: strings, dictionaries) are
    started first, so that none of them is left alone at the end while a thread idles.
    """
    work = list(items)
    limit = int(_core.get_thread_limit())
    if len(work) < 2 or rows < PARALLEL_ROWS or limit < 2 or getattr(_worker, "active", False):
        return [fn(item) for item in work]
    executor = _executor(limit)
    order = list(range(len(work)))
    if slow is not None:
        order.sort(key=lambda i: not slow(work[i]))  # stable: slow ones first, in order
    started: dict[int, Future[R]] = {i: executor.submit(fn, work[i]) for i in order}
    futures = [started[i] for i in range(len(work))]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()
