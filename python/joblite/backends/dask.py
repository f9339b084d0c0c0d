"""The dask backend: batches run as tasks of a ``distributed.Client``.

``with parallel_config(backend="dask"): Parallel(...)(...)`` sends each batch of calls to the
current client (or one given as ``client=`` / ``scheduler_host=``). Large numpy arguments are
scattered to the cluster once per Parallel call and shared by every task that uses them,
instead of travelling inside each task. dask itself is imported only when this backend is used.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from concurrent.futures import CancelledError, Future
from typing import Any, Optional

from . import _transport
from .base import BatchedCalls, ParallelBackendBase, RemoteError

_tokens = itertools.count()


class _Scattered:
    """Placeholder for a scattered argument: the position of its future in the task."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple:
        return (_Scattered, (self.index,))


def _replace(value: Any, resolved: tuple) -> Any:
    if isinstance(value, _Scattered):
        return resolved[value.index]
    if type(value) in (list, tuple):
        return type(value)(_replace(v, resolved) for v in value)
    if type(value) is dict:
        return {k: _replace(v, resolved) for k, v in value.items()}
    return value


def _run_batch(batch: BatchedCalls, *resolved: Any) -> tuple[bool, Any, float]:
    """Task body on a dask worker: put the scattered data back in place and run the batch."""
    if resolved:
        batch.items = [
            (f, _replace(args, resolved), _replace(kwargs, resolved))
            for f, args, kwargs in batch._calls()
        ]
    start = time.perf_counter()
    try:
        return (True, batch(RemoteError.capture), time.perf_counter() - start)
    except BaseException as error:  # handed to the caller with its traceback
        return (False, RemoteError.capture(error), time.perf_counter() - start)


def _is_large_array(value: Any, max_nbytes: int) -> bool:
    nbytes = getattr(value, "nbytes", None)
    return (
        isinstance(nbytes, int)
        and nbytes > max_nbytes
        and type(value).__module__.split(".")[0] == "numpy"
    )


class DaskDistributedBackend(ParallelBackendBase):
    """Runs batches as tasks of a dask ``distributed`` cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        The client to use. Default: the current client (``distributed.get_client()``),
        or one connected to ``scheduler_host``.
    scheduler_host : str, optional
        Address of a scheduler to connect to when no client is given.
    scatter : list, optional
        Objects to scatter to the cluster up front (like joblib's ``scatter=``); arrays
        larger than ``max_nbytes`` are scattered automatically anyway.
    wait_for_workers_timeout : float, default 10
        How long to wait for at least one worker before failing.
    **kwargs
        Passed to :class:`ParallelBackendBase`.
    """

    name = "dask"
    default_n_jobs = -1
    supports_timeout = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        client: Any = None,
        scheduler_host: Optional[str] = None,
        scatter: Optional[list] = None,
        wait_for_workers_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(nesting_level, inner_max_num_threads, **kwargs)
        self.check_available()
        import distributed

        self._owns_client = False
        if client is None:
            if scheduler_host is not None:
                client = distributed.Client(scheduler_host, set_as_default=False)
                self._owns_client = True
            else:
                try:
                    client = distributed.get_client()
                except ValueError as error:
                    raise ValueError(
                        "backend='dask' found no dask client: create a distributed.Client "
                        "first, or pass client=... or scheduler_host=... to parallel_config"
                    ) from error
        self.client = client
        self.wait_for_workers_timeout = wait_for_workers_timeout
        self._max_nbytes: Optional[int] = 1024**2
        self._lock = threading.Lock()
        # id(obj) -> (obj, dask future): the object is kept alive so its id stays unique.
        self._scattered: dict[int, tuple[Any, Any]] = {}
        self._tasks: dict[int, Any] = {}  # id(concurrent future) -> dask future
        self.scattered_bytes = 0  # total bytes scattered by this backend (for reports)
        self._prescatter = list(scatter or [])

    @staticmethod
    def check_available() -> None:
        """ValueError (as joblib) when dask's distributed scheduler is not installed."""
        try:
            import distributed  # noqa: F401
        except ImportError as error:
            raise ValueError(
                "You are trying to use 'dask' as a joblib parallel backend but dask is not"
                " installed. Please install dask to fix this error: pip install"
                " 'joblite[dask]'"
            ) from error

    def __repr__(self) -> str:
        return f"DaskDistributedBackend(scheduler={self.client.scheduler.address!r})"

    def effective_n_jobs(self, n_jobs: int) -> int:
        """Positive ``n_jobs`` as given; negative ones count the cluster's worker threads."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is not None and n_jobs > 0:
            return n_jobs
        threads = sum(self.client.nthreads().values())
        if threads == 0:
            self.client.wait_for_workers(1, timeout=self.wait_for_workers_timeout)
            threads = sum(self.client.nthreads().values())
        return max(threads + 1 + (n_jobs if n_jobs is not None else -1), 1)

    def configure(
        self, n_jobs: int = 1, max_nbytes: Any = "1M", timeout: Any = None, **kwargs: Any
    ) -> int:
        self.n_jobs = self.effective_n_jobs(n_jobs)
        self._max_nbytes = _transport.parse_nbytes(max_nbytes)
        for obj in self._prescatter:
            self._scatter(obj)
        return self.n_jobs

    def _scatter(self, obj: Any) -> Any:
        key = id(obj)
        with self._lock:
            known = self._scattered.get(key)
            if known is not None and known[0] is obj:
                return known[1]
        # hash=False: equal data held by distinct objects is scattered separately, and no
        # time is spent hashing large arrays on the client.
        [future] = self.client.scatter([obj], hash=False, broadcast=False)
        with self._lock:
            self._scattered[key] = (obj, future)
            self.scattered_bytes += int(getattr(obj, "nbytes", 0))
        return future

    def _lift(self, value: Any, futures: list) -> Any:
        """``value`` with large arrays (also inside lists/tuples/dicts) made placeholders."""
        if self._max_nbytes is not None and _is_large_array(value, self._max_nbytes):
            futures.append(self._scatter(value))
            return _Scattered(len(futures) - 1)
        if type(value) in (list, tuple):
            return type(value)(self._lift(v, futures) for v in value)
        if type(value) is dict:
            return {k: self._lift(v, futures) for k, v in value.items()}
        return value

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        futures: list = []
        items = [
            (f, self._lift(a, futures), self._lift(kw, futures)) for f, a, kw in batch._calls()
        ]
        task = BatchedCalls(items, batch.nested, batch.return_exceptions)
        # the dashboard names a task after its function (a batch of one function keeps
        # it apart from its arguments)
        first = batch.items[0][0] if batch.items else batch.function
        name = getattr(first, "__name__", "call")
        key = f"joblite-{name}-{uuid.uuid4().hex}-{next(_tokens)}"
        result: Future = Future()
        dask_future = self.client.submit(_run_batch, task, *futures, key=key, pure=False)
        with self._lock:
            self._tasks[id(result)] = dask_future

        def transfer(done: Any) -> None:
            with self._lock:
                self._tasks.pop(id(result), None)
            if not result.set_running_or_notify_cancel():
                return
            try:
                outcome = done.result()
            except CancelledError as error:
                result.set_exception(error)
            except BaseException as error:  # e.g. KilledWorker: the task's worker kept dying
                result.set_exception(error)
            else:
                result.set_result(outcome)

        dask_future.add_done_callback(transfer)
        return result

    def retrieve(self, future: Future) -> list:
        ok, value, duration = future.result()
        future.duration = duration  # type: ignore[attr-defined]
        if not ok:
            raise value.unwrap()
        return value

    def cancel(self, futures: list[Future]) -> None:
        with self._lock:
            tasks = [self._tasks.get(id(f)) for f in futures]
        pending = [t for t in tasks if t is not None]
        for future in futures:
            future.cancel()
        if pending:
            self.client.cancel(pending)

    def terminate(self) -> None:
        with self._lock:
            scattered = [future for _, future in self._scattered.values()]
            self._scattered.clear()
        if scattered:
            self.client.cancel(scattered)  # release the scattered data on the workers

    def abort_everything(self, ensure_ready: bool = True) -> None:
        with self._lock:
            tasks = list(self._tasks.values())
            self._tasks.clear()
        if tasks:
            self.client.cancel(tasks)
        self.terminate()
