"""The backend interface of Parallel, the batch of calls every backend runs, and
:func:`cpu_count`, the machine's share that ``n_jobs=-1`` means."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import traceback
from concurrent.futures import Future
from typing import Any, Callable, Optional

from .._core import run_call, split_calls

# Per-thread view of the nesting of Parallel calls: inside a worker, the backend name,
# n_jobs and nesting level that an inner Parallel call should use by default.
_nesting = threading.local()
# (default backend name, n_jobs cap, nesting level, name of the backend running the task)
Nesting = tuple
_clock = itertools.count(1)


@functools.lru_cache(maxsize=2)
def cpu_count(only_physical_cores: bool = False) -> int:
    """Number of CPUs this process may use: affinity mask and cgroup quota honoured.

    Parameters
    ----------
    only_physical_cores : bool, default False
        Count physical cores, not hyper-threads (when that can be found out).

    Returns
    -------
    int
        At least 1.
    """
    try:
        from loky import cpu_count as loky_cpu_count
    except ImportError:  # no working multiprocessing (loky needs it): the affinity mask
        getter = getattr(os, "sched_getaffinity", None)
        return max(len(getter(0)) if getter else os.cpu_count() or 1, 1)
    return max(int(loky_cpu_count(only_physical_cores=only_physical_cores)), 1)


def tick() -> int:
    """A number larger than every one given before in this process: orders events.

    The dispatcher stamps each batch with the tick taken after its tasks were read from
    the input; shared-memory transports compare it with the tick at which an array's
    file was last checked against the array.
    """
    return next(_clock)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class RemoteError:
    """An exception raised in a worker process, with its formatted traceback.

    Exceptions lose their traceback when pickled; this carrier keeps the text and gives
    the exception back, with the worker's traceback as its ``__cause__``, in the caller.
    """

    __slots__ = ("error", "text")

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text

    @classmethod
    def capture(cls, error: BaseException) -> RemoteError:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return cls(error, '\n"""\n' + text + '"""')

    def unwrap(self) -> BaseException:
        self.error.__cause__ = RemoteTraceback(self.text)
        return self.error


def nesting() -> Optional[Nesting]:
    """``(backend name, n_jobs, nesting level)`` set by the batch running in this thread."""
    return getattr(_nesting, "value", None)


class BatchedCalls:
    """A batch of ``(function, args, kwargs)`` calls run in one go by a worker.

    Calling the batch runs every call in order and returns the list of results. With
    ``return_exceptions`` an exception takes the place of its result instead of
    stopping the batch. ``nested`` is what an inner Parallel call sees as its defaults.
    """

    __slots__ = ("args", "created", "function", "items", "nested", "return_exceptions", "single")

    def __init__(
        self,
        items: list[tuple[Callable[..., Any], tuple, dict]],
        nested: Optional[Nesting] = None,
        return_exceptions: bool = False,
    ) -> None:
        self.items: Optional[list] = items
        self.function: Any = None
        self.args: Optional[list] = None
        self.single = False
        # The common batch calls one function without keyword arguments: keep the
        # function once and the positional arguments alone, as Pool.map sends them (its
        # pickle is ~4x smaller, ~6x again with one argument a call: no tuple a call),
        # and run it as one map. Done at once (one native pass), so that the task
        # tuples die here instead of waiting in the queue for the cyclic collector.
        common = split_calls(items) if type(items) is list else None
        if common is not None:
            self.items = None
            self.function, self.args, self.single = common
        self.nested = nested
        self.return_exceptions = return_exceptions
        # tick() once every task of the batch existed; None: unknown (not sent along)
        self.created: Optional[int] = None

    @classmethod
    def of_function(
        cls,
        function: Callable[..., Any],
        single: bool,
        args: list,
        nested: Optional[Nesting] = None,
        return_exceptions: bool = False,
    ) -> BatchedCalls:
        """The batch calling ``function`` on each item of ``args`` (``single``: the
        argument itself, else a tuple of arguments), without building the calls."""
        batch = cls([], nested, return_exceptions)
        batch.items = None
        batch.function, batch.args, batch.single = function, args, single
        return batch

    def __len__(self) -> int:
        return len(self.items if self.items is not None else self.args or ())

    def __getstate__(self) -> tuple:
        items = self.items
        if items:  # set again after __init__ (e.g. arguments replaced by the dask backend)
            common = split_calls(items) if type(items) is list else None
            if common is not None:
                function, args, single = common
                return (None, function, args, single, *self._tail())
        return (items, self.function, self.args, self.single, *self._tail())

    def _tail(self) -> tuple:
        return (self.nested, self.return_exceptions)

    def __setstate__(self, state: tuple) -> None:
        (self.items, self.function, self.args, self.single, self.nested) = state[:5]
        self.return_exceptions = state[5]
        self.created = None

    def _calls(self) -> list[tuple[Callable[..., Any], tuple, dict]]:
        if self.items is not None:
            return self.items
        if self.single:
            return [(self.function, (arg,), {}) for arg in self.args or ()]
        return [(self.function, args, {}) for args in self.args or ()]

    def __call__(
        self,
        wrap_errors: Callable[[BaseException], Any] = lambda e: e,
        shared: Optional[set[int]] = None,
    ) -> list:
        """Run the calls; ``shared``: ids of the large shared arrays the batch's arguments
        were mapped to in a process worker (see :meth:`_grouped`)."""
        previous = getattr(_nesting, "value", None)
        _nesting.value = self.nested
        try:
            order = self._grouped(shared) if shared else None
            if order is not None:
                return self._run_in(order, wrap_errors)
            if not self.return_exceptions:
                items = self.items
                if items is None:
                    if self.single:
                        return list(map(self.function, self.args or ()))
                    return list(itertools.starmap(self.function, self.args or ()))
                return [run_call(call) for call in items]
            out = []
            for call in self._calls():
                try:
                    out.append(run_call(call))
                except Exception as error:
                    out.append(wrap_errors(error))
            return out
        finally:
            _nesting.value = previous

    def _grouped(self, shared: set[int]) -> Optional[list[int]]:
        """An order that runs the calls sharing the same large arrays one after another.

        Summing, say, 8 memory-mapped 10 MiB arrays in turn streams them all from memory
        each time; the same calls grouped by array find each one still in the CPU's cache
        after its first use (measured: 1.5x faster on 2 cores, where memory bandwidth is
        the limit). Groups run in the order of their first call, calls within a group in
        their given order; results keep the given order. None: nothing to gain.
        """
        calls = self._calls()
        rank: dict[tuple, int] = {}
        ranks = []
        for _, args, kwargs in calls:
            key = tuple(id(a) for a in args if id(a) in shared)
            if kwargs:
                key += tuple(id(v) for v in kwargs.values() if id(v) in shared)
            ranks.append(rank.setdefault(key, len(rank)))
        if len(rank) < 2:
            return None
        order = sorted(range(len(calls)), key=ranks.__getitem__)
        return None if all(i == k for i, k in enumerate(order)) else order

    def _run_in(self, order: list[int], wrap_errors: Callable[[BaseException], Any]) -> list:
        calls = self._calls()
        out: list[Any] = [None] * len(calls)
        for i in order:
            if not self.return_exceptions:
                out[i] = run_call(calls[i])
                continue
            try:
                out[i] = run_call(calls[i])
            except Exception as error:
                out[i] = wrap_errors(error)
        return out


class ParallelBackendBase:
    """Interface of a Parallel execution backend.

    A backend runs :class:`BatchedCalls` somewhere (this thread, a thread pool, worker
    processes, a cluster) and hands each result back through a
    :class:`concurrent.futures.Future`. To plug in a new one, subclass this, implement
    :meth:`submit` (and :meth:`effective_n_jobs` if joblib's rule for local workers does
    not fit), and register it with
    :func:`joblite.register_parallel_backend`.

    Parameters
    ----------
    nesting_level : int, optional
        How deep in nested Parallel calls this backend runs (0 at the top level).
    inner_max_num_threads : int, optional
        Cap on the threads of BLAS/OpenMP libraries inside process workers.
    **backend_kwargs
        Backend specific options.

    Attributes
    ----------
    default_n_jobs : int
        n_jobs used when neither the call nor :func:`parallel_config` give one.
    uses_threads : bool
        Workers are threads of this process (they share memory).
    supports_sharedmem : bool
        Tasks may share and mutate Python objects of the caller.
    supports_timeout : bool
        ``timeout`` can be enforced.
    supports_inner_max_num_threads : bool
        ``inner_max_num_threads`` is honoured.
    """

    name = "base"
    default_n_jobs = 1
    uses_threads = False
    supports_sharedmem = False
    supports_timeout = True
    supports_inner_max_num_threads = False
    uses_processes = False

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        **backend_kwargs: Any,
    ) -> None:
        self.nesting_level = 0 if nesting_level is None else nesting_level
        self.inner_max_num_threads = inner_max_num_threads
        self.backend_kwargs = backend_kwargs
        self.n_jobs = 1  # set by configure

    def effective_n_jobs(self, n_jobs: int) -> int:
        """Number of tasks this backend would run at once for ``n_jobs`` (>= 1).

        The default is joblib's rule for workers on this machine: ``n_jobs`` as given, and
        ``cpu_count() + 1 + n_jobs`` for negative values (-1: every core).
        """
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs < 0:
            n_jobs = max(cpu_count() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs: int = 1, **kwargs: Any) -> int:
        """Prepare the workers for a call; returns the effective number of workers."""
        self.n_jobs = self.effective_n_jobs(n_jobs)
        return self.n_jobs

    def start_call(self) -> None:
        """A Parallel call starts (after :meth:`configure`)."""

    def stop_call(self) -> None:
        """A Parallel call ended (before :meth:`terminate`, when that is called)."""

    def retrieval_context(self) -> Any:
        """A context manager around the waiting for results (joblib's hook)."""
        return contextlib.nullcontext()

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        """Start running ``batch``; the future gives its list of results or its error."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement submit(batch) returning a"
            " concurrent.futures.Future (joblite's interface), or joblib's"
            " submit(func, callback) / apply_async(func, callback)"
        )

    def retrieve(self, future: Future) -> list:
        """The results of a completed batch (raises the batch's error).

        A backend that knows how long the batch computed may set ``future.duration``
        (seconds); ``batch_size="auto"`` then ignores queueing and transfer time. One that
        spent time sending the batch that does not grow with its number of tasks (shared
        arrays checked or written) may set ``future.send_seconds``: auto batches then grow
        until that cost is a small part of their work. ``future.shared_arrays`` (an int):
        how many shared arrays the batch refers to; from two on, the last batches of a call
        stay whole (their calls run grouped by array, see ``BatchedCalls._grouped``).
        """
        return future.result()

    def cancel(self, futures: list[Future]) -> None:
        """Withdraw the batches of ``futures`` that did not start yet."""
        for future in futures:
            future.cancel()

    def terminate(self) -> None:
        """End of a call (or of a ``with Parallel(...)`` block): release per-call state."""

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Stop running tasks as soon as possible (after an error or an interrupt)."""
        self.terminate()

    def get_nested_backend(self) -> Optional[Nesting]:
        """What an inner Parallel call inside a worker uses by default.

        ``(backend name, n_jobs cap, nesting level, this backend's name)``: threads at the
        first level of
        nesting, sequential below, and at most this worker's share of the cores, so that
        nested calls never multiply the number of busy workers.
        """
        level = self.nesting_level + 1
        cap = max(cpu_count() // max(self.n_jobs, 1), 1)
        return ("threading" if level == 1 else "sequential", cap, level, self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
