"""Parallel, delayed and their configuration (parallel_config, cpu_count, n_jobs rules).

The execution itself lives in :mod:`joblite.backends`; the dispatch loop (batching,
back-pressure, ordering, errors, timeouts) in :mod:`joblite.backends._dispatch`.
"""

from __future__ import annotations

import ast
import functools
import numbers
import operator
import threading
from collections.abc import Iterable
from typing import Any, Callable, Optional, Union

from .backends import BACKENDS, ParallelBackendBase, get_backend_factory
from .backends._progress import ProgressEvent
from .backends.base import nesting

__all__ = [
    "Parallel",
    "ProgressEvent",
    "cpu_count",
    "delayed",
    "effective_n_jobs",
    "parallel_backend",
    "parallel_config",
    "register_parallel_backend",
    "wrap_non_picklable_objects",
]

DEFAULT_BACKEND = "loky"
_VALID_RETURN_AS = ("list", "generator", "generator_unordered")
_VALID_MMAP_MODES = (None, "r+", "r", "w+", "c")


class _Default:
    """Marks an argument the caller left out, so parallel_config's value applies."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def default(value: Any) -> _Default:
    """Wrap a default value so that an explicit argument can be told from it."""
    return _Default(value)


_NONE = default(None)
_ZERO = default(0)
_ONE_MEGABYTE = default("1M")
_READ_ONLY = default("r")


def _given(value: Any) -> bool:
    return not isinstance(value, _Default)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, _Default) else value


_CONFIG_DEFAULTS: dict[str, Any] = {
    "backend": None,
    "n_jobs": None,
    "verbose": 0,
    "temp_folder": None,
    "max_nbytes": "1M",
    "mmap_mode": "r",
    "prefer": None,
    "require": None,
    "inner_max_num_threads": None,
    "backend_params": {},
}
_config = threading.local()


def _get_config() -> dict[str, Any]:
    return getattr(_config, "value", _CONFIG_DEFAULTS)


class parallel_config:
    """Set the defaults of Parallel calls in this thread: a nestable context manager.

    Parameters
    ----------
    backend : str or ParallelBackendBase, optional
        ``"loky"`` (default), ``"threading"``, ``"multiprocessing"``, ``"sequential"``
        or a name given to :func:`register_parallel_backend`.
    n_jobs : int, optional
        Default number of workers (``-1``: all cores).
    verbose, temp_folder, max_nbytes, mmap_mode, prefer, require
        Defaults for the :class:`Parallel` arguments of the same names.
    inner_max_num_threads : int, optional
        Cap on BLAS/OpenMP threads in each process worker (default: cores // n_jobs).
    **backend_params
        Passed to the backend's constructor.

    Examples
    --------
    >>> from joblite import Parallel, delayed, parallel_config
    >>> with parallel_config(backend="threading", n_jobs=2):
    ...     Parallel()(delayed(abs)(-i) for i in range(3))
    [0, 1, 2]
    """

    def __init__(
        self,
        backend: Any = _NONE,
        *,
        n_jobs: Any = _NONE,
        verbose: Any = _ZERO,
        temp_folder: Any = _NONE,
        max_nbytes: Any = _ONE_MEGABYTE,
        mmap_mode: Any = _READ_ONLY,
        prefer: Any = _NONE,
        require: Any = _NONE,
        inner_max_num_threads: Any = None,
        **backend_params: Any,
    ) -> None:
        self.old_config = _get_config()
        new = dict(self.old_config)
        given = {
            "backend": backend,
            "n_jobs": n_jobs,
            "verbose": verbose,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
        }
        for key, value in given.items():
            if _given(value):
                new[key] = value
        _check_options(_plain(new["prefer"]), _plain(new["require"]), _plain(new["mmap_mode"]))
        if isinstance(new["backend"], str):
            get_backend_factory(new["backend"])  # unknown names fail here, not later
        if inner_max_num_threads is not None:
            new["inner_max_num_threads"] = inner_max_num_threads
        if backend_params:
            new["backend_params"] = {**self.old_config["backend_params"], **backend_params}
        _config.value = new

    def __enter__(self) -> parallel_config:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unregister()

    def unregister(self) -> None:
        """Restore the configuration that was active before this one."""
        _config.value = self.old_config


class parallel_backend(parallel_config):
    """Choose the backend of Parallel calls in this thread (joblib's older spelling).

    Same as :class:`parallel_config` but ``n_jobs`` defaults to -1 and entering the
    context gives ``(backend, n_jobs)``.

    Parameters
    ----------
    backend : str or ParallelBackendBase
        The backend name or instance.
    n_jobs : int, default -1
        Default number of workers.
    inner_max_num_threads : int, optional
        Cap on BLAS/OpenMP threads in each process worker.
    **backend_params
        Passed to the backend's constructor.
    """

    def __init__(
        self,
        backend: Any,
        n_jobs: int = -1,
        inner_max_num_threads: Optional[int] = None,
        **backend_params: Any,
    ) -> None:
        super().__init__(
            backend, n_jobs=n_jobs, inner_max_num_threads=inner_max_num_threads, **backend_params
        )

    def __enter__(self) -> Any:  # type: ignore[override]
        backend = _make_backend(_get_config()["backend"], 0, _get_config())
        return backend, _get_config()["n_jobs"]


def register_parallel_backend(
    name: str, factory: Callable[..., ParallelBackendBase], make_default: bool = False
) -> None:
    """Make a backend available under ``name`` (and the default with ``make_default``).

    Parameters
    ----------
    name : str
        The name given to ``backend=``.
    factory : callable
        Called with ``nesting_level=``, ``inner_max_num_threads=`` and the backend params;
        returns a :class:`ParallelBackendBase`.
    make_default : bool, default False
        Use it when no backend is given.
    """
    global DEFAULT_BACKEND
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    BACKENDS[name] = factory
    if make_default:
        DEFAULT_BACKEND = name


@functools.lru_cache(maxsize=2)
def cpu_count(only_physical_cores: bool = False) -> int:
    """Number of CPUs this process may use: affinity mask and cgroup quota honoured.

    Parameters
    ----------
    only_physical_cores : bool, default False
        Count physical cores, not hyper-threads (when that can be found out).
    """
    from loky import cpu_count as loky_cpu_count

    return max(int(loky_cpu_count(only_physical_cores=only_physical_cores)), 1)


def effective_n_jobs(n_jobs: Optional[int] = -1) -> int:
    """Number of workers Parallel would use for ``n_jobs`` with the active backend.

    Parameters
    ----------
    n_jobs : int or None, default -1
        As in :class:`Parallel`; ``None`` takes :func:`parallel_config`'s value (else 1).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> from joblite import effective_n_jobs
    >>> effective_n_jobs(1)
    1
    """
    if n_jobs == 1:
        return 1
    config = _get_config()
    backend = _make_backend(config["backend"] or DEFAULT_BACKEND, 0, config)
    if n_jobs is None:
        n_jobs = _plain(config["n_jobs"])
    return backend.effective_n_jobs(1 if n_jobs is None else n_jobs)


# The last function given to delayed() and its wrapper: ``delayed(f)(x) for x in xs``
# calls delayed(f) once per item, so this spares building a wrapper every time.
_last_delayed: tuple[Any, Any] = (None, None)


def delayed(function: Callable[..., Any]) -> Callable[..., tuple]:
    """Capture a call for Parallel: ``delayed(f)(*args, **kwargs)`` is ``(f, args, kwargs)``.

    Examples
    --------
    >>> from joblite import delayed
    >>> delayed(pow)(2, 10)
    (<built-in function pow>, (2, 10), {})
    """
    last = _last_delayed
    if last[0] is function:
        return last[1]
    return _make_delayed(function)


def _make_delayed(function: Callable[..., Any]) -> Callable[..., tuple]:
    # Apart from delayed(), so that its fast path above creates no closure cell: it
    # runs once per task in the caller, where every task is produced.
    global _last_delayed

    def delayed_function(*args: Any, **kwargs: Any) -> tuple:
        return function, args, kwargs

    try:
        delayed_function = functools.wraps(function)(delayed_function)
    except AttributeError:  # some callables have no __name__ & co
        pass
    _last_delayed = (function, delayed_function)
    return delayed_function


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


def _check_options(prefer: Any, require: Any, mmap_mode: Any) -> None:
    if prefer not in (None, "processes", "threads"):
        raise ValueError(f"prefer={prefer!r} is not valid: use None, 'processes' or 'threads'")
    if require not in (None, "sharedmem"):
        raise ValueError(f"require={require!r} is not valid: use None or 'sharedmem'")
    if mmap_mode not in _VALID_MMAP_MODES:
        raise ValueError(f"mmap_mode={mmap_mode!r} is not valid: use one of {_VALID_MMAP_MODES}")


def _make_backend(spec: Any, level: int, config: dict[str, Any]) -> ParallelBackendBase:
    if isinstance(spec, ParallelBackendBase):
        return spec
    factory = get_backend_factory(spec)
    return factory(
        nesting_level=level,
        inner_max_num_threads=config["inner_max_num_threads"],
        **config["backend_params"],
    )


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_OPS.update({ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv})


def _eval_pre_dispatch(text: str, n_jobs: int) -> int:
    """Evaluate expressions like ``'2 * n_jobs'`` without ``eval``."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id == "n_jobs":
            return n_jobs
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"pre_dispatch={text!r} is not valid: use 'all', an int or 'k * n_jobs'")

    return max(int(walk(ast.parse(text, mode="eval"))), 1)


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
        Seconds without progress after which :class:`TimeoutError` is raised.
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
        n_jobs: Any = _NONE,
        backend: Any = _NONE,
        return_as: str = "list",
        verbose: Any = _ZERO,
        timeout: Optional[float] = None,
        pre_dispatch: Union[int, str] = "2 * n_jobs",
        batch_size: Union[int, str] = "auto",
        temp_folder: Any = _NONE,
        max_nbytes: Any = _ONE_MEGABYTE,
        mmap_mode: Any = _READ_ONLY,
        prefer: Any = _NONE,
        require: Any = _NONE,
        *,
        progress: bool = False,
        callback: Optional[Callable[[Any], Any]] = None,
        return_exceptions: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        config = _get_config()

        def pick(value: Any, key: str) -> Any:
            return value if _given(value) else _plain(config[key]) if key in config else value

        self.verbose = int(pick(verbose, "verbose") or 0)
        self.temp_folder = pick(temp_folder, "temp_folder")
        self.max_nbytes = pick(max_nbytes, "max_nbytes")
        self.mmap_mode = pick(mmap_mode, "mmap_mode")
        self.prefer = pick(prefer, "prefer")
        self.require = pick(require, "require")
        _check_options(self.prefer, self.require, self.mmap_mode)
        if return_as not in _VALID_RETURN_AS:
            raise ValueError(f"return_as={return_as!r} is not valid: use one of {_VALID_RETURN_AS}")
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size must be 'auto' or an int > 0, got {batch_size!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be None or > 0, got {timeout!r}")
        from .backends._transport import parse_nbytes

        parse_nbytes(self.max_nbytes)
        self.return_as = return_as
        self.timeout = timeout
        self.pre_dispatch = pre_dispatch
        self.batch_size = batch_size
        self.progress = progress
        self.callback = callback
        self.return_exceptions = return_exceptions

        n_jobs = pick(n_jobs, "n_jobs")
        if n_jobs is not None and (
            isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Real) or n_jobs == 0
        ):
            raise ValueError(f"n_jobs must be a non-zero int or None, got {n_jobs!r}")
        self._backend, self.n_jobs = self._choose_backend(backend, config, backend_kwargs, n_jobs)
        self._managed = False
        self._running = False
        self._auto_state: dict[str, Any] = {}

    def _choose_backend(
        self, backend: Any, config: dict[str, Any], backend_kwargs: dict, n_jobs: Any
    ) -> tuple[ParallelBackendBase, int]:
        inner = nesting()
        level = inner[2] if inner else 0
        if backend_kwargs:
            config = {**config, "backend_params": {**config["backend_params"], **backend_kwargs}}
        if _given(backend) and backend is not None:
            chosen = _make_backend(backend, level, config)
            if self.require == "sharedmem" and not chosen.supports_sharedmem:
                raise ValueError(f"Backend {chosen!r} does not support shared memory")
        elif config["backend"] is not None and (
            self.require != "sharedmem" or _backend_shares_memory(config["backend"])
        ):
            chosen = _make_backend(config["backend"], level, config)
        elif inner is not None and self.require != "sharedmem":
            chosen = _make_backend(inner[0], level, config)
        elif self.require == "sharedmem" or self.prefer == "threads":
            chosen = _make_backend("threading", level, config)
        else:
            chosen = _make_backend(DEFAULT_BACKEND, level, config)
        if n_jobs is None:
            n_jobs = chosen.default_n_jobs  # 1, but -1 (the whole cluster) for dask
        else:
            n_jobs = int(n_jobs)
            if n_jobs == 0:
                raise ValueError("n_jobs must be a non-zero int or None, got 0")
        n_jobs = chosen.effective_n_jobs(n_jobs)
        if inner is not None and inner[1] is not None:
            n_jobs = min(n_jobs, inner[1])
        return chosen, n_jobs

    def __repr__(self) -> str:
        return f"Parallel(n_jobs={self.n_jobs})"

    def __enter__(self) -> Parallel:
        self._configure()
        self._managed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._managed = False
        self._backend.terminate()

    def _configure(self) -> int:
        if self.n_jobs == 1:
            return 1
        return self._backend.configure(
            n_jobs=self.n_jobs,
            temp_folder=self.temp_folder,
            max_nbytes=self.max_nbytes,
            mmap_mode=self.mmap_mode,
            timeout=self.timeout,
        )

    def __call__(self, iterable: Iterable[tuple]) -> Any:
        """Run the ``delayed`` calls of ``iterable``; see ``return_as`` for the result."""
        from .backends._dispatch import Dispatcher

        if self._running:
            raise RuntimeError(
                "This Parallel instance is already running: consume or close the generator"
                " of the previous call first."
            )
        dispatcher = Dispatcher(self, iterable)
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


def _backend_shares_memory(spec: Any) -> bool:
    if isinstance(spec, ParallelBackendBase):
        return spec.supports_sharedmem
    return bool(getattr(get_backend_factory(spec), "supports_sharedmem", False))
