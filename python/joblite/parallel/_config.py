"""Per-thread defaults of Parallel calls: parallel_config, parallel_backend, effective_n_jobs."""

from __future__ import annotations

import threading
from typing import Any, Optional

from ..backends import (
    BACKENDS,
    ParallelBackendBase,
    default_backend,
    get_backend_factory,
    is_mp_context,
    joblib_bridge,
    make_backend,
    nesting,
)

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


NONE = default(None)
ZERO = default(0)
ONE_MEGABYTE = default("1M")
READ_ONLY = default("r")


def given(value: Any) -> bool:
    """Whether the caller gave ``value`` (not a default left in place)."""
    return not isinstance(value, _Default)


def plain(value: Any) -> Any:
    """The value itself, whether given or a default."""
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


def get_config() -> dict[str, Any]:
    """The configuration active in this thread (the defaults outside any context)."""
    return getattr(_config, "value", _CONFIG_DEFAULTS)


VALID_BACKEND_HINTS = ("processes", "threads", None)
VALID_BACKEND_CONSTRAINTS = ("sharedmem", None)


def check_options(prefer: Any, require: Any, mmap_mode: Any) -> None:
    """ValueError naming the argument when ``prefer``, ``require`` or ``mmap_mode`` is invalid."""
    if prefer not in VALID_BACKEND_HINTS:
        raise ValueError(
            f"prefer={prefer} is not a valid backend hint, expected one of {VALID_BACKEND_HINTS}"
        )
    if require not in VALID_BACKEND_CONSTRAINTS:
        raise ValueError(
            f"require={require} is not a valid backend constraint, expected one of "
            f"{VALID_BACKEND_CONSTRAINTS}"
        )
    if prefer == "processes" and require == "sharedmem":
        raise ValueError(
            "prefer == 'processes' and require == 'sharedmem' are inconsistent settings"
        )
    if mmap_mode not in _VALID_MMAP_MODES:
        raise ValueError(f"mmap_mode={mmap_mode!r} is not valid: use one of {_VALID_MMAP_MODES}")


def _check_backend(backend: Any, inner_max_num_threads: Any, backend_params: dict) -> None:
    """joblib's checks of ``parallel_config(backend, inner_max_num_threads, **params)``."""
    if not given(backend) or backend is None:
        if inner_max_num_threads is not None or backend_params:
            raise ValueError(
                "inner_max_num_threads and other constructor parameters backend_params are"
                " only supported when backend is not None."
            )
        return
    if isinstance(backend, str):
        factory: Any = get_backend_factory(backend)  # unknown names fail here, not later
        check = getattr(factory, "check_available", None)
        if check is not None:
            check()  # e.g. dask not installed: ValueError now, not at every later call
    elif is_mp_context(backend):
        factory = get_backend_factory("multiprocessing")
    else:
        if backend_params:
            raise ValueError(
                "Constructor parameters backend_params are only supported when backend is a string."
            )
        factory = backend
    if inner_max_num_threads is not None and not getattr(
        factory, "supports_inner_max_num_threads", False
    ):
        name = factory.__name__ if isinstance(factory, type) else type(factory).__name__
        raise AssertionError(f"{name} does not accept setting the inner_max_num_threads argument.")


def backend_from_config(spec: Any, level: int, config: dict[str, Any]) -> ParallelBackendBase:
    """A backend for ``spec`` built with the backend parameters of ``config``.

    The instance a ``parallel_config(backend=name)`` built is the one that runs the work
    (as in joblib: what ``parallel_backend`` yields counts the calls), unless the call
    adds backend parameters of its own (``Parallel(**backend_kwargs)``): then a new one.
    """
    if (
        spec is not None
        and spec is config.get("backend")
        and config.get("backend_built_with", config["backend_params"])
        is not config["backend_params"]
    ):
        spec = config["backend_spec"]
    return make_backend(spec, level, config["inner_max_num_threads"], config["backend_params"])


def _shared(spec: Any) -> bool:
    """Whether ``parallel_config(backend=spec)`` builds one instance for all its calls.

    So it does for a name registered by a user or a library (in joblite's registry or in
    joblib's), as joblib does. joblite's own backends keep no state between calls, and each
    call gets its own instance of the same settings: two calls running at once in one
    block (two ``return_as="generator"`` calls) then do not share one pool.
    """
    if not isinstance(spec, str):
        return False
    factory = BACKENDS.get(spec)
    own = isinstance(factory, str) or getattr(factory, "__module__", "").startswith(
        "joblite.backends."
    )
    return not own


def get_active_backend(
    prefer: Optional[str] = None, require: Optional[str] = None, verbose: int = 0
) -> tuple[ParallelBackendBase, Any]:
    """The backend a ``Parallel()`` without ``backend=`` would use here, and the n_jobs
    :func:`parallel_config` sets (joblib's ``joblib.parallel.get_active_backend``)."""
    config = get_config()
    prefer = prefer if prefer is not None else plain(config["prefer"])
    require = require if require is not None else plain(config["require"])
    check_options(prefer, require, "r")
    inner = nesting()
    level = inner[2] if inner else 0
    spec = config["backend"]
    explicit = spec is not None
    if spec is None:
        spec = inner[0] if inner is not None else default_backend()
    backend = backend_from_config(spec, level, config)
    if (require == "sharedmem" and not getattr(backend, "supports_sharedmem", False)) or (
        not explicit and prefer == "threads" and not getattr(backend, "uses_threads", False)
    ):
        backend = backend_from_config("threading", level, config)
    return backend, plain(config["n_jobs"])


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
        backend: Any = NONE,
        *,
        n_jobs: Any = NONE,
        verbose: Any = ZERO,
        temp_folder: Any = NONE,
        max_nbytes: Any = ONE_MEGABYTE,
        mmap_mode: Any = READ_ONLY,
        prefer: Any = NONE,
        require: Any = NONE,
        inner_max_num_threads: Any = None,
        **backend_params: Any,
    ) -> None:
        _check_backend(backend, inner_max_num_threads, backend_params)
        self.old_config = get_config()
        new = dict(self.old_config)
        values = {
            "backend": backend,
            "n_jobs": n_jobs,
            "verbose": verbose,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
        }
        for key, value in values.items():
            if given(value):
                new[key] = value
        check_options(plain(new["prefer"]), plain(new["require"]), plain(new["mmap_mode"]))
        if inner_max_num_threads is not None:
            new["inner_max_num_threads"] = inner_max_num_threads
        if backend_params:
            new["backend_params"] = {**self.old_config["backend_params"], **backend_params}
        built: Any = None
        if given(backend):
            new.pop("backend_spec", None)
            new.pop("backend_built_with", None)
        if (given(backend) and is_mp_context(backend)) or (
            isinstance(backend, str) and (_shared(backend) or backend != "dask")
        ):
            # built here, so that wrong backend options fail now, as in joblib (not a
            # throwaway "dask" one: it would connect a client of its own)
            inner = nesting()
            built = backend_from_config(backend, inner[2] if inner else 0, new)
            if _shared(backend):
                # the instance the context yields runs every call inside it (joblib's
                # behaviour), state kept (a client, a counter)
                new["backend"] = built
                new["backend_spec"] = backend
                new["backend_built_with"] = new["backend_params"]
        _config.value = new
        # libraries calling joblib (scikit-learn, ...) follow this configuration too
        given_values = {key: value for key, value in values.items() if given(value)}
        try:
            self._joblib = joblib_bridge.mirror_config(
                given_values, inner_max_num_threads, backend_params, built
            )
        except BaseException:
            _config.value = self.old_config  # never leave a half-entered configuration
            raise

    def __enter__(self) -> parallel_config:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unregister()

    def unregister(self) -> None:
        """Restore the configuration that was active before this one."""
        _config.value = self.old_config
        self._joblib.unregister()


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
        config = get_config()
        return backend_from_config(config["backend"], 0, config), config["n_jobs"]


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
    config = get_config()
    backend = backend_from_config(config["backend"] or default_backend(), 0, config)
    if n_jobs is None:
        n_jobs = plain(config["n_jobs"])
    return backend.effective_n_jobs(1 if n_jobs is None else n_jobs)
