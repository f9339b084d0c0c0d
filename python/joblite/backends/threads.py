"""The threading backend: batches run on daemon threads fed by the Rust task queue of
``joblite._core``.

Workers hold the GIL only while they run Python code, so tasks that release it (numpy,
I/O, compiled code) run truly in parallel, and queueing a batch costs one lock round-trip.
The workers are Python daemon threads (as joblib's): a Ctrl-C, or the end of the program,
does not wait for the tasks they are running.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
from concurrent.futures import Future
from time import perf_counter
from typing import Any, Optional

from .base import BatchedCalls, ParallelBackendBase

# (n_threads, nesting level) -> (pool, its worker threads): an inner call never queues
# behind the outer batches that wait for it.
_pools: dict[tuple[int, int], tuple[Any, list[threading.Thread]]] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
# pools taken out of service by retire_thread_pool, closed at exit with the others
_retired: list[tuple[Any, list[threading.Thread]]] = []
_groups = itertools.count(1)


def get_thread_pool(n_threads: int, nesting_level: int = 0) -> Any:
    """The process-wide Rust pool with ``n_threads`` workers for one nesting level."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():  # after a fork the worker threads do not exist
            _pools.clear()
            _pools_pid = os.getpid()
        key = (n_threads, nesting_level)
        entry = _pools.get(key)
        if entry is None or entry[0].closed:
            from .._core import TaskPool

            pool = TaskPool(n_threads, name="joblite-thread", threads=False)
            threads = [
                threading.Thread(
                    target=_work,
                    args=(pool.next_job,),
                    name=f"joblite-thread-{i}" + (f"-{nesting_level}" if nesting_level else ""),
                    daemon=True,
                )
                for i in range(n_threads)
            ]
            for thread in threads:
                thread.start()
            entry = _pools[key] = (pool, threads)
        return entry[0]


def retire_thread_pool(pool: Any) -> None:
    """Stop handing ``pool`` to new calls: its workers are stuck with batches of an aborted
    call (threads cannot be killed), so a call queued behind them would wait for those, or
    forever if they hang. Calls still holding it keep using it; it is closed at exit."""
    with _pools_lock:
        for key, (current, threads) in list(_pools.items()):
            if current is pool:
                del _pools[key]
                _retired.append((current, threads))


def _name_native_thread(name: str) -> None:
    # The OS sees the name too (top, py-spy, /proc/<pid>/task/*/comm), as it did the
    # Rust pool's threads; Python before 3.14 only names its own thread object.
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        except (OSError, AttributeError):
            pass


def _work(next_job: Any) -> None:
    """A worker: run queued jobs until the pool is shut down."""
    _name_native_thread(threading.current_thread().name)
    job = next_job()
    while job is not None:
        try:
            job()  # reports its own outcome through its future
        except BaseException:  # a bug of the job wrapper: say so, keep the worker
            sys.excepthook(*sys.exc_info())
        job = None  # do not keep the finished batch alive while waiting
        job = next_job()


# How long the end of the program waits for idle workers to leave (busy ones are not
# waited for: daemon threads, abandoned by the interpreter as it exits).
_EXIT_GRACE_SECONDS = 0.1


@atexit.register
def _shutdown_pools() -> None:
    # Close the queues so that idle workers return before the interpreter finalizes;
    # a worker still running a task is left to the interpreter, as any daemon thread.
    with _pools_lock:
        entries = list(_pools.values()) + _retired if _pools_pid == os.getpid() else []
        _pools.clear()
        _retired.clear()
    deadline = perf_counter() + _EXIT_GRACE_SECONDS
    for pool, _ in entries:
        pool.shutdown(wait=False)
    for _, threads in entries:
        for thread in threads:
            thread.join(max(deadline - perf_counter(), 0.0))


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

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Batches of the aborted call still run on the workers: later calls get a fresh pool
        (as joblib's next call gets fresh threads) instead of queueing behind them."""
        pool = self._pool
        self.terminate()
        if pool is not None:
            retire_thread_pool(pool)
        if ensure_ready:  # the next call of a `with Parallel(...)` block
            self._pool = get_thread_pool(self.n_jobs, self.nesting_level)
