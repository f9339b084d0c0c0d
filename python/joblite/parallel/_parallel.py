"""Parallel and delayed: one call of many tasks, run by a backend of :mod:`joblite.backends`.

The dispatch loop itself (batching, back-pressure, ordering, errors, timeouts) is in
:mod:`._dispatch`, what the call reports as it goes in :mod:`._progress`.
"""

from __future__ import annotations

import numbers
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any, Callable, Optional, Union

from .. import _core
from ..backends import default_backend, nesting
from ..backends.foreign import JoblibInterfaceBackend, as_driver
from ._config import (
    NONE,
    ONE_MEGABYTE,
    READ_ONLY,
    ZERO,
    backend_from_config,
    check_options,
    get_config,
    given,
    plain,
)
from ._dispatch import AutoBatching, CallListener, CallPlan, Dispatcher

_VALID_RETURN_AS = ("list", "generator", "generator_unordered")


# delayed() is native (rust/bindings/delayed.rs): building the calls is most of the cost
# of a call of many tiny tasks, and is done in the caller, one call per task. Its
# documentation is in _core.pyi.
delayed = _core.delayed
"""Capture a call for Parallel: ``delayed(f)(*args, **kwargs)`` reads as ``(f, args, kwargs)``.

The call is a native ``DelayedCall`` that joblib code unpacks (``f, args, kwargs =
delayed(g)(x)``), indexes, slices, compares with joblib's tuple and pickles as that tuple (it
is not a ``tuple`` itself); each call gets its own ``kwargs`` dict, built on first use.
``delayed(f)`` is a native callable with ``f``'s ``__name__``, ``__qualname__``,
``__wrapped__`` and signature (its ``__doc__`` and ``__module__`` are its own), the same object
for a run of calls of one function, so building a task costs about half of building the tuple
by hand.

Parameters
----------
function : callable
    The function whose calls are captured.

Returns
-------
DelayedFunction
    A callable returning a ``DelayedCall``, read as ``(function, args, kwargs)``.

Examples
--------
>>> from joblite import delayed
>>> delayed(pow)(2, 10)
(<built-in function pow>, (2, 10), {})
"""


def wrap_non_picklable_objects(obj: Any, keep_wrapper: bool = True) -> Any:
    """Pickle ``obj`` (a function or class) with cloudpickle when sent to workers.

    Only needed with a pickler that is not cloudpickle: joblite's process backends already
    send lambdas, closures and ``__main__`` functions with cloudpickle.

    Parameters
    ----------
    obj : callable or type
        The function or class to wrap.
    keep_wrapper : bool, default True
        Keep the wrapper once unpickled in the worker (else the bare object comes back).
    """
    from loky import wrap_non_picklable_objects as wrap

    return wrap(obj, keep_wrapper=keep_wrapper)


class Parallel:
    """Run ``delayed`` calls in parallel: ``Parallel(n_jobs=2)(delayed(f)(x) for x in xs)``.

    Parameters
    ----------
    n_jobs : int, optional
        Number of workers: ``-1`` all CPUs, ``-2`` all but one, ``None`` 1 unless
        :func:`parallel_config` says otherwise; 0 is an error.
    backend : str or ParallelBackendBase, optional
        ``"loky"`` (default: processes), ``"threading"`` (the Rust thread pool),
        ``"multiprocessing"``, ``"sequential"``, or a registered name.
    return_as : {"list", "generator", "generator_unordered"}, default "list"
        A list, or a generator of results in input order or in completion order.
    verbose : int, default 0
        Print joblib-style progress lines (to stderr; to stdout from 50 up).
    timeout : float, optional
        Seconds the oldest outstanding batch may take (counted from when it became the
        oldest) before :class:`TimeoutError` is raised, even while other batches keep
        completing. The error is also a ``multiprocessing.TimeoutError``, as joblib's.
    pre_dispatch : int or str, default "2 * n_jobs"
        Batches handed out ahead of consumption: bounds memory for long inputs.
        ``"all"`` consumes the input at once.
    batch_size : int or "auto", default "auto"
        Tasks per batch; ``"auto"`` grows batches of tiny tasks to cut overhead.
    temp_folder : str, optional
        Where large arrays are shared with process workers (default /dev/shm if it
        has room, else the system temp folder).
    max_nbytes : int or str or None, default "1M"
        Arrays above this size go through shared memory files; None disables it.
    mmap_mode : {"r", "c", "r+", "w+", None}, default "r"
        How workers map shared arrays: ``"r"`` read-only, ``"c"`` copy-on-write
        (tasks may write into their inputs, privately).
    prefer : {"processes", "threads"}, optional
        Soft hint used when no backend is given.
    require : {"sharedmem"}, optional
        Hard constraint: tasks must share memory with the caller (threads).
    progress : bool, default False
        Show a progress bar (tqdm when installed, else a plain stderr line).
    total : int, optional
        Number of tasks, for the progress bar and :class:`~joblite.parallel.ProgressEvent`
        when the input has no ``len()`` (a generator); default ``len(iterable)``.
    desc : str, optional
        Label of the progress bar (default ``"Parallel"``).
    callback : callable, optional
        Called with a :class:`~joblite.parallel.ProgressEvent` after each completed
        batch, in the calling thread.
    return_exceptions : bool, default False
        Put the exception raised by a task in its result slot instead of aborting.
    **backend_kwargs
        Passed to the backend's constructor.

    Examples
    --------
    >>> from math import sqrt
    >>> from joblite import Parallel, delayed
    >>> Parallel(n_jobs=2, backend="threading")(delayed(sqrt)(i**2) for i in range(4))
    [0.0, 1.0, 2.0, 3.0]
    """

    def __init__(
        self,
        n_jobs: Any = NONE,
        backend: Any = NONE,
        return_as: str = "list",
        verbose: Any = ZERO,
        timeout: Optional[float] = None,
        pre_dispatch: Union[int, str] = "2 * n_jobs",
        batch_size: Union[int, str] = "auto",
        temp_folder: Any = NONE,
        max_nbytes: Any = ONE_MEGABYTE,
        mmap_mode: Any = READ_ONLY,
        prefer: Any = NONE,
        require: Any = NONE,
        *,
        progress: bool = False,
        total: Optional[int] = None,
        desc: Optional[str] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        return_exceptions: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        config = get_config()

        def pick(value: Any, key: str) -> Any:
            return value if given(value) else plain(config[key]) if key in config else value

        self.verbose = int(pick(verbose, "verbose") or 0)
        self.temp_folder = pick(temp_folder, "temp_folder")
        self.max_nbytes = pick(max_nbytes, "max_nbytes")
        self.mmap_mode = pick(mmap_mode, "mmap_mode")
        self.prefer = pick(prefer, "prefer")
        self.require = pick(require, "require")
        check_options(self.prefer, self.require, self.mmap_mode)
        if return_as not in _VALID_RETURN_AS:
            raise ValueError(f"return_as={return_as!r} is not valid: use one of {_VALID_RETURN_AS}")
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size must be 'auto' or an int > 0, got {batch_size!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be None or > 0, got {timeout!r}")
        from ..backends._transport import parse_nbytes

        parse_nbytes(self.max_nbytes)
        self.return_as = return_as
        self.timeout = timeout
        self.pre_dispatch = pre_dispatch
        self.batch_size = batch_size
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 0
        ):
            raise ValueError(f"total must be None or an int >= 0, got {total!r}")
        self.progress = progress
        self.total = total
        self.desc = desc
        self.callback = callback
        # joblib's counters, kept current during a call (read by print_progress overrides)
        self.n_dispatched_tasks = 0
        self.n_completed_tasks = 0
        self.n_dispatched_batches = 0
        self.n_completed_batches = 0
        self.return_exceptions = return_exceptions

        # n_jobs=None means "not given": parallel_config's value applies (joblib #1473)
        self._n_jobs_arg = n_jobs = NONE if n_jobs is None else n_jobs
        n_jobs = pick(n_jobs, "n_jobs")
        if isinstance(n_jobs, str):
            # joblib converts with int(): n_jobs="2" (read from an environment variable or a
            # command line) runs unchanged
            try:
                n_jobs = int(n_jobs)
            except ValueError:
                raise ValueError(f"n_jobs could not be converted to int: {n_jobs!r}") from None
        if n_jobs is not None and (
            isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Real) or n_jobs == 0
        ):
            raise ValueError(f"n_jobs must be a non-zero int or None, got {n_jobs!r}")
        self._backend, self.n_jobs = self._choose_backend(backend, config, backend_kwargs, n_jobs)
        if batch_size == "auto" and getattr(self._backend, "maxtasksperchild", None):
            # workers recycled after N tasks: one task a batch, so that N means tasks
            self.batch_size = 1
        self._managed = False
        self._running = False
        self._auto = AutoBatching()  # what batch_size="auto" learnt, kept across calls
        self._call: Any = None  # the Dispatcher of the current call
        # the class that replaced BatchCompletionCallBack for the current call, if any
        self._completion: Optional[type] = None

    def _choose_backend(
        self, backend: Any, config: dict[str, Any], backend_kwargs: dict, n_jobs: Any
    ) -> tuple[Any, int]:
        # joblib's rules: an explicit backend= wins (and must meet require=); else the
        # parallel_config one, or inside a worker the nested default, where prefer= is
        # ignored and require="sharedmem" falls back to threads; else the default, which
        # prefer= and require= may switch between processes and threads.
        inner = nesting()
        level = inner[2] if inner else 0
        if backend_kwargs:
            config = {**config, "backend_params": {**config["backend_params"], **backend_kwargs}}
        if given(backend) and backend is not None:
            chosen = backend_from_config(backend, level, config)
            if self.require == "sharedmem" and not getattr(chosen, "supports_sharedmem", False):
                raise ValueError(f"Backend {chosen} does not support shared memory")
        else:
            explicit = True
            if config["backend"] is not None:
                spec = config["backend"]
            elif inner is not None:
                spec = inner[0]
            else:
                spec, explicit = default_backend(), False
            chosen = backend_from_config(spec, level, config)
            uses_threads = getattr(chosen, "uses_threads", False)
            if self.require == "sharedmem" and not getattr(chosen, "supports_sharedmem", False):
                threads = backend_from_config("threading", level, config)
                if self.verbose >= 10 and explicit:
                    print(
                        f"Using {type(threads).__name__} as joblib backend instead of"
                        f" {type(chosen).__name__} as the latter does not provide shared"
                        " memory semantics."
                    )
                chosen = threads
                if not given(self._n_jobs_arg):
                    n_jobs = 1
            elif not explicit and self.prefer == "threads" and not uses_threads:
                chosen = backend_from_config("threading", level, config)
            elif not explicit and self.prefer == "processes" and uses_threads:
                chosen = backend_from_config(default_backend(), level, config)
        driver = as_driver(chosen)
        if n_jobs is None:
            n_jobs = driver.default_n_jobs  # 1, but -1 (the whole cluster) for dask
        else:
            try:
                n_jobs = int(n_jobs)
            except (TypeError, ValueError):
                raise ValueError("n_jobs could not be converted to int") from None
            if n_jobs == 0:
                raise ValueError("n_jobs must be a non-zero int or None, got 0")
        n_jobs = driver.effective_n_jobs(n_jobs)
        if inner is not None and inner[1] is not None:
            n_jobs = min(n_jobs, inner[1])
        if isinstance(driver, JoblibInterfaceBackend):
            driver.parallel = self
        self._driver = driver
        return chosen, n_jobs

    def __repr__(self) -> str:
        return f"Parallel(n_jobs={self.n_jobs})"

    def __getstate__(self) -> dict[str, Any]:
        # A copy is a Parallel that is not running and not inside a ``with`` block: its
        # backend (without this process's pool) is configured by its own first call.
        state = self.__dict__.copy()
        state.update(_managed=False, _running=False, _call=None, _completion=None)
        return state

    def __enter__(self) -> Parallel:
        self._configure()
        self._managed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._managed = False
        self._driver.terminate()

    def print_progress(self) -> None:
        """Called after each completed batch; prints the ``verbose`` lines.

        Override it to report progress another way: ``self.n_completed_tasks`` and
        ``self.n_dispatched_tasks`` are current when it is called (as in joblib).
        """
        call = self._call
        if call is not None:
            call.reporter.print_progress(self.n_completed_tasks, call.shown_total)

    def _is_completed(self) -> bool:
        """Whether every task of the current call has completed.

        joblib's private helper, which joblib's documented ``print_progress`` override
        (``examples/parallel/parallel_with_tqdm.py``) calls to close its progress bar: true
        once the input is exhausted and all its tasks are done, and after the call.
        """
        call = self._call
        if call is None:
            return bool(self.n_completed_tasks == self.n_dispatched_tasks)
        return call.n_total is not None and self.n_completed_tasks >= call.n_total

    def _driver_options(self) -> dict[str, Any]:
        return {
            "temp_folder": self.temp_folder,
            "max_nbytes": self.max_nbytes,
            "mmap_mode": self.mmap_mode,
            "timeout": self.timeout,
        }

    def _configure(self) -> int:
        if self.n_jobs == 1:
            return 1
        return self._driver.configure(n_jobs=self.n_jobs, **self._driver_options())

    def _plan(self) -> CallPlan:
        """This call's plan: the options as they are now, fixed for the whole call."""
        # overridden by a subclass, on the instance, or patched on the class itself
        # (joblib_progress assigns ``Parallel.print_progress``)
        hook = self.print_progress
        overridden = getattr(hook, "__func__", hook) is not _DEFAULT_PRINT_PROGRESS
        self._completion = _replaced_completion_callback()
        overridden = overridden or self._completion is not None
        return CallPlan(
            n_jobs=self.n_jobs,
            batch_size=self.batch_size,
            pre_dispatch=self.pre_dispatch,
            timeout=self.timeout,
            return_as=self.return_as,
            return_exceptions=self.return_exceptions,
            verbose=self.verbose,
            progress=self.progress,
            callback=self.callback,
            total=self.total,
            desc=self.desc,
            label=repr(self),
            backend_name=type(self._backend).__name__,
            managed=self._managed,
            driver_options=MappingProxyType(self._driver_options()),
            print_hook=bool(self.verbose) or overridden,
        )

    def __call__(self, iterable: Iterable[Any]) -> Any:
        """Run the ``delayed`` calls of ``iterable``; see ``return_as`` for the result."""
        return self._run(iterable, None)

    def map(self, function: Callable[..., Any], *iterables: Iterable[Any]) -> Any:
        """``function`` applied to every item of ``iterables``, as the builtin :func:`map`.

        The same call as ``self(delayed(function)(*args) for args in zip(*iterables))``,
        with the same ``return_as``, errors, ``timeout``, progress, batching and
        back-pressure, but no ``delayed`` call is built per item: the items travel to the
        workers as :meth:`multiprocessing.pool.Pool.map` sends them. (A joblite addition.)

        Examples
        --------
        >>> from joblite import Parallel
        >>> Parallel(n_jobs=2, backend="threading").map(pow, [1, 2, 3], [2, 2, 2])
        [1, 4, 9]
        """
        if not callable(function):
            raise TypeError(f"Parallel.map needs a callable, got {function!r}")
        if not iterables:
            raise TypeError("Parallel.map needs at least one iterable")
        if self.n_jobs == 1:  # the sequential path runs delayed calls one by one anyway
            calls = (delayed(function)(*args) for args in zip(*iterables))
            return self(calls)
        single = len(iterables) == 1
        items: Iterable[Any] = iterables[0] if single else zip(*iterables)
        return self._run(items, (function, single))

    def _run(self, iterable: Iterable[Any], mapped: Optional[tuple]) -> Any:
        if self._running:
            raise RuntimeError(
                "This Parallel instance is already running: consume or close the generator"
                " of the previous call first."
            )
        dispatcher = Dispatcher(
            self._plan(), self._driver, iterable, _Listener(self), self._auto, mapped
        )
        self._running = True
        try:
            if self.return_as == "list":
                return dispatcher.run_to_list()
            generator = dispatcher.run_generator()
            next(generator)  # start: dispatch the first batches now, like joblib
            return generator
        except BaseException:
            self._running = False
            raise


_DEFAULT_PRINT_PROGRESS = Parallel.print_progress


class BatchCompletionCallBack:
    """joblib's per-batch completion callback, for code that replaces it.

    joblib builds one per dispatched batch and calls it when the batch completes.
    Progress-bar recipes (``tqdm_joblib`` and its many copies) subclass it and assign the
    subclass to ``joblib.parallel.BatchCompletionCallBack`` for the duration of a call.
    joblite's dispatch loop keeps the counters itself and never builds this class; when the
    name is replaced (in :mod:`joblite.parallel`, or in ``joblib.parallel`` under the alias of
    :func:`joblite.install_as_joblib`) at the start of a call, each batch of that call builds
    one instance of the replacement when it completes and calls it with a done
    :class:`concurrent.futures.Future` holding the batch's results, in the thread that runs
    the call, just before :meth:`Parallel.print_progress`.

    Parameters
    ----------
    dispatch_timestamp : float
        When the batch was dispatched (``time.time()``).
    batch_size : int
        Number of tasks in the batch.
    parallel : Parallel
        The Parallel running the call; its counters already include this batch.
    """

    def __init__(self, dispatch_timestamp: float, batch_size: int, parallel: Parallel) -> None:
        self.dispatch_timestamp = dispatch_timestamp
        self.batch_size = batch_size
        self.parallel = parallel

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """The batch completed: nothing more to do (joblite has counted it already)."""


# the modules where code replacing BatchCompletionCallBack assigns it (looked up by name:
# the alias is above this layer, and imported only where it is installed)
_COMPLETION_MODULES = ("joblite.parallel", "joblite.alias.joblib.parallel")


def _replaced_completion_callback() -> Optional[type]:
    """The class that replaced :class:`BatchCompletionCallBack`, if any."""
    for name in _COMPLETION_MODULES:
        module = sys.modules.get(name)
        replaced = getattr(module, "BatchCompletionCallBack", BatchCompletionCallBack)
        if replaced is not BatchCompletionCallBack:
            return replaced  # type: ignore[no-any-return]
    return None


class _Listener(CallListener):
    """How a call of a :class:`Parallel` reports back to it: joblib's counters on the
    instance, its ``print_progress`` hook, and the end of the call."""

    __slots__ = ("parallel",)

    def __init__(self, parallel: Parallel) -> None:
        self.parallel = parallel

    def started(self, call: Dispatcher) -> None:
        self.parallel._call = call

    def counted(
        self,
        dispatched_tasks: int,
        dispatched_batches: int,
        completed_tasks: int,
        completed_batches: int,
    ) -> None:
        parallel = self.parallel
        parallel.n_dispatched_tasks = dispatched_tasks
        parallel.n_dispatched_batches = dispatched_batches
        parallel.n_completed_tasks = completed_tasks
        parallel.n_completed_batches = completed_batches

    def print_progress(self, size: int, dispatched_at: float, results: list) -> None:
        parallel = self.parallel
        completion = parallel._completion
        if completion is not None:
            # joblib calls its BatchCompletionCallBack with the batch's finished future
            done: Future = Future()
            done.set_result(results)
            dispatch_timestamp = time.time() - (time.monotonic() - dispatched_at)
            completion(dispatch_timestamp, size, parallel)(done)
        parallel.print_progress()

    def input_ended(self) -> None:
        self.parallel.print_progress()

    def ended(self) -> None:
        self.parallel._running = False
        self.parallel._call = None  # do not keep the input alive after the call
        self.parallel._completion = None
