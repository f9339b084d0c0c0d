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
import weakref
from concurrent.futures import Future
from time import perf_counter
from typing import Any, Optional

from .base import BatchedCalls, ParallelBackendBase


class _Pool:
    """One shared pool: the Rust job queue and the Python threads working on it.

    ``lock`` orders submissions against :func:`retire_thread_pool`: once ``retired`` is set
    under it, no job is queued behind the exit markers that end the workers. A forked child
    sees every pool of its parent as retired (their threads do not exist there).
    """

    __slots__ = ("__weakref__", "core", "lock", "pid", "retired", "threads")

    def __init__(self, core: Any, threads: list[threading.Thread]) -> None:
        self.core = core
        self.threads = threads
        self.lock = threading.Lock()
        self.retired = False
        self.pid = os.getpid()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)


# (n_threads, nesting level) -> pool: an inner call never queues behind the outer batches
# that wait for it.
_pools: dict[tuple[int, int], _Pool] = {}
_pools_lock = threading.Lock()
# pools taken out of service by retire_thread_pool whose workers may still be running the
# batches of an aborted call; each worker ends once the jobs queued before it was retired
# are done (at exit the idle ones are waited for a moment, as the others)
_retired: list[_Pool] = []
_groups = itertools.count(1)
# every pool of this process, for the fork handler below
_every_pool: weakref.WeakSet[_Pool] = weakref.WeakSet()
# a forked child's pools of its parent, never freed there (see _after_fork_in_child)
_inherited: list[_Pool] = []


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's worker threads, and the locks they or other
    threads held at the fork stay held for good: start afresh, touching none of them.

    The parent's pools are kept alive, unused, for good: freeing one closes its Rust queue,
    whose lock a parent's worker may have held at the fork.
    """
    global _pools_lock
    _pools_lock = threading.Lock()
    _inherited.extend(_every_pool)
    _every_pool.clear()
    for pool in _inherited:
        pool.lock = threading.Lock()
        pool.retired = True  # a call holding one moves to a pool of this process
    _pools.clear()
    _retired.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _exit_marker() -> None:
    """Queued once per worker of a retired pool: the worker that takes it ends."""


def get_thread_pool(n_threads: int, nesting_level: int = 0) -> _Pool:
    """The process-wide pool with ``n_threads`` workers for one nesting level."""
    with _pools_lock:
        key = (n_threads, nesting_level)
        entry = _pools.get(key)
        if entry is None or entry.retired or entry.core.closed:
            from .._core import TaskPool

            core = TaskPool(n_threads, name="joblite-thread", threads=False)
            threads = [
                threading.Thread(
                    target=_work,
                    args=(core.next_job,),
                    name=f"joblite-thread-{i}" + (f"-{nesting_level}" if nesting_level else ""),
                    daemon=True,
                )
                for i in range(n_threads)
            ]
            for thread in threads:
                thread.start()
            entry = _pools[key] = _Pool(core, threads)
            _every_pool.add(entry)
        return entry


def retire_thread_pool(pool: _Pool) -> None:
    """Stop handing ``pool`` to new calls: its workers are stuck with batches of an aborted
    call (threads cannot be killed), so a call queued behind them would wait for those, or
    forever if they hang.

    Never waits. The jobs already queued still run (those of other calls sharing the pool),
    then each worker ends: one exit marker per worker is queued behind them, and a call that
    submits afterwards is moved to a fresh pool (:meth:`ThreadingBackend.submit`).
    """
    with _pools_lock:
        for key, current in list(_pools.items()):
            if current is pool:
                del _pools[key]
        # workers of pools retired earlier that have all ended are forgotten
        _retired[:] = [old for old in _retired if old.alive()]
        with pool.lock:
            if pool.retired:
                return
            pool.retired = True
            if pool.core.closed:  # shut down at exit: its workers are leaving already
                return
            pool.core.submit_many([_exit_marker] * len(pool.threads), 0)
        _retired.append(pool)


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
    """A worker: run queued jobs until the pool is shut down or retired."""
    _name_native_thread(threading.current_thread().name)
    job = next_job()
    while job is not None and job is not _exit_marker:
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
        entries = list(_pools.values()) + _retired
        _pools.clear()
        _retired.clear()
    deadline = perf_counter() + _EXIT_GRACE_SECONDS
    for pool in entries:
        pool.core.shutdown(wait=False)
    for pool in entries:
        for thread in pool.threads:
            thread.join(max(deadline - perf_counter(), 0.0))


class ThreadingBackend(ParallelBackendBase):
    """Runs batches on native threads of this process (tasks share memory)."""

    name = "threading"
    uses_threads = True
    supports_sharedmem = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: Optional[_Pool] = None
        # pools this backend queued batches on before another call retired them
        self._earlier: list[_Pool] = []
        self._group = next(_groups)

    def configure(self, n_jobs: int = 1, **kwargs: Any) -> int:
        self.n_jobs = self.effective_n_jobs(n_jobs)
        self._pool = get_thread_pool(self.n_jobs, self.nesting_level)
        self._earlier = []
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

        while True:
            with pool.lock:
                if not pool.retired:
                    pool.core.submit(job, self._group)
                    return future
            # Another call sharing the pool was aborted and retired it: its workers end
            # once the jobs queued so far are done, so later batches go to fresh workers.
            self._earlier.append(pool)
            pool = self._pool = get_thread_pool(self.n_jobs, self.nesting_level)

    def _withdraw(self) -> None:
        """Withdraw this call's batches that no worker has started."""
        pid = os.getpid()
        for pool in [*self._earlier, self._pool]:
            # never a parent's queue in a forked child (its lock may be held for good)
            if pool is not None and pool.pid == pid:
                pool.core.cancel(self._group)

    def cancel(self, futures: list[Future]) -> None:
        for future in futures:
            future.cancel()
        self._withdraw()

    def terminate(self) -> None:
        self._withdraw()
        self._earlier = []
        self._pool = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Batches of the aborted call still run on the workers: later calls get a fresh pool
        (as joblib's next call gets fresh threads) instead of queueing behind them, and the
        workers of the retired pool end as soon as they are done with what they run."""
        pool = self._pool
        self.terminate()
        if pool is not None:
            retire_thread_pool(pool)
        if ensure_ready:  # the next call of a `with Parallel(...)` block
            self._pool = get_thread_pool(self.n_jobs, self.nesting_level)
