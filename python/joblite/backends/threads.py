"""The threading backend: batches run on the Rust thread pool of ``joblite._core``.

Workers hold the GIL only while they run Python code, so tasks that release it (numpy,
I/O, compiled code) run truly in parallel, and queueing a batch costs one lock round-trip.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from concurrent.futures import Future
from time import perf_counter
from typing import Any, Optional

from .base import BatchedCalls, ParallelBackendBase

# (n_threads, nesting level) -> pool: an inner call never queues behind the outer
# batches that wait for it.
_pools: dict[tuple[int, int], Any] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_groups = itertools.count(1)


def get_thread_pool(n_threads: int, nesting_level: int = 0) -> Any:
    """The process-wide Rust pool with ``n_threads`` workers for one nesting level."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():  # after a fork the worker threads do not exist
            _pools.clear()
            _pools_pid = os.getpid()
        key = (n_threads, nesting_level)
        pool = _pools.get(key)
        if pool is None or pool.closed:
            from .._core import TaskPool

            pool = _pools[key] = TaskPool(n_threads, name="joblite-thread")
        return pool


@atexit.register
def _shutdown_pools() -> None:
    # Join the workers before the interpreter starts tearing itself down, so no
    # worker ever tries to take the GIL of a finalizing interpreter.
    with _pools_lock:
        pools = list(_pools.values()) if _pools_pid == os.getpid() else []
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True)


class ThreadingBackend(ParallelBackendBase):
    """Runs batches on native threads of this process (tasks share memory)."""

    name = "threading"
    uses_threads = True
    supports_sharedmem = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: Optional[Any] = None
        self._group = next(_groups)

    def configure(self, n_jobs: int = 1, **kwargs: Any) -> int:
        self.n_jobs = self.effective_n_jobs(n_jobs)
        self._pool = get_thread_pool(self.n_jobs, self.nesting_level)
        return self.n_jobs

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        pool = self._pool
        if pool is None:
            raise RuntimeError("ThreadingBackend.submit called before configure")
        future: Future = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            start = perf_counter()
            try:
                result = batch()
            except BaseException as error:  # handed to the caller through the future
                future.set_exception(error)
            else:
                future.duration = perf_counter() - start  # type: ignore[attr-defined]
                future.set_result(result)

        pool.submit(job, self._group)
        return future

    def cancel(self, futures: list[Future]) -> None:
        for future in futures:
            future.cancel()
        if self._pool is not None:
            self._pool.cancel(self._group)

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.cancel(self._group)
        self._pool = None
