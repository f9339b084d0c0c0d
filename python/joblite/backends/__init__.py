"""Execution backends of Parallel behind one interface, and their one registry.

Backend classes are imported only when first used, so ``import joblite`` never pays
for loky or the thread pool.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import threading
from typing import Any, Callable, Optional

from .. import _fork
from .base import BatchedCalls, ParallelBackendBase, cpu_count, nesting
from .foreign import speaks_joblib

__all__ = [
    "BACKENDS",
    "BatchedCalls",
    "ParallelBackendBase",
    "cpu_count",
    "default_backend",
    "get_backend_factory",
    "is_mp_context",
    "make_backend",
    "nesting",
    "register_parallel_backend",
]

# name -> factory (a class, or "module:Class" imported on first use)
BACKENDS: dict[str, Any] = {
    "sequential": ".sequential:SequentialBackend",
    "threading": ".threads:ThreadingBackend",
    "loky": ".processes:LokyBackend",
    "multiprocessing": ".processes:MultiprocessingBackend",
    "dask": ".dask:DaskDistributedBackend",
}
_default = ["loky"]
_lock = threading.Lock()

_fork.renew_in_child(globals(), "_lock")  # a lock another thread held at a fork


def default_backend() -> str:
    """Name of the backend used when neither the call nor :func:`parallel_config` give one.

    Threads where processes cannot start (no working ``_multiprocessing``, as on Pyodide).
    """
    name = _default[0]
    if name in ("loky", "multiprocessing") and not _processes_available():
        return "threading"
    return name


@functools.lru_cache(maxsize=1)
def _processes_available() -> bool:
    try:
        import _multiprocessing  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def get_backend_factory(name: str) -> Callable[..., ParallelBackendBase]:
    """The factory registered under ``name``; ValueError naming the known ones if none.

    A name registered only in joblib's registry (``ray.util.joblib.register_ray()``,
    ``joblibspark.register_spark()``, any ``joblib.register_parallel_backend``) is found
    there: such backends speak joblib's interface, which joblite drives.
    """
    try:
        factory = BACKENDS[name]
    except (KeyError, TypeError):
        factory = _joblib_registered(name)
        if factory is None:
            known = ", ".join(repr(n) for n in sorted({*BACKENDS, *_joblib_registry()}))
            raise ValueError(f"Invalid backend: {name!r}, expected one of {known}") from None
        return factory  # type: ignore[no-any-return]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        loaded = getattr(importlib.import_module(module, __name__), attr)
        with _lock:
            if BACKENDS.get(name) == factory:  # not re-registered meanwhile
                BACKENDS[name] = loaded
        factory = loaded
    return factory


def _joblib_registry() -> dict[str, Any]:
    """joblib's own registry of backends when the real joblib is imported (never imports it)."""
    module = sys.modules.get("joblib.parallel")
    if getattr(module, "__name__", None) != "joblib.parallel":  # absent, or joblite's alias
        return {}
    registry = getattr(module, "BACKENDS", None)
    return registry if isinstance(registry, dict) else {}


def _joblib_registered(name: Any) -> Any:
    """The factory a third party registered in joblib only under ``name``, or None.

    joblib's own backends are not borrowed: joblite has its own under the same names.
    """
    if not isinstance(name, str):
        return None
    factory = _joblib_registry().get(name)
    if factory is None or getattr(factory, "__module__", "").startswith("joblib."):
        return None
    return factory


def make_backend(
    spec: Any,
    nesting_level: int = 0,
    inner_max_num_threads: Optional[int] = None,
    backend_params: Optional[dict[str, Any]] = None,
) -> Any:
    """A backend instance for ``spec``: an instance (kept), or a registered name."""
    if isinstance(spec, ParallelBackendBase) or (not isinstance(spec, str) and speaks_joblib(spec)):
        return spec  # an instance: used as it is (one written for joblib included)
    if is_mp_context(spec):  # backend=multiprocessing.get_context("spawn"), as joblib
        factory = get_backend_factory("multiprocessing")
        backend = factory(
            nesting_level=nesting_level,
            inner_max_num_threads=inner_max_num_threads,
            context=spec,
            **(backend_params or {}),
        )
        _refuse_unknown_options(backend, "multiprocessing")
        return backend
    factory = get_backend_factory(spec)
    backend = factory(
        nesting_level=nesting_level,
        inner_max_num_threads=inner_max_num_threads,
        **(backend_params or {}),
    )
    _refuse_unknown_options(backend, spec)
    return backend


# joblite's own backends consume the options they know in their constructor; whatever
# reaches ParallelBackendBase.backend_kwargs was not understood (joblib's loky and
# multiprocessing backends refuse unknown options too; silently ignoring a misspelt
# ``maxtasksperchild`` hides the bug)
_OWN_BACKEND_MODULES = frozenset(
    __name__ + "." + name for name in ("threads", "sequential", "processes", "dask")
)


def _refuse_unknown_options(backend: Any, name: Any) -> None:
    unknown = getattr(backend, "backend_kwargs", None)
    if not unknown or not isinstance(backend, ParallelBackendBase):
        return
    classes = type(backend).__mro__
    if not any(cls.__module__ in _OWN_BACKEND_MODULES for cls in classes):
        return  # a user's backend: its options are its own business
    accepted = sorted(
        {
            parameter.name
            for cls in classes
            if "__init__" in vars(cls)
            for parameter in inspect.signature(vars(cls)["__init__"]).parameters.values()
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        }
        - {"self", "nesting_level", "inner_max_num_threads"}
    )
    names = ", ".join(repr(key) for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    raise TypeError(
        f"unexpected backend keyword argument{plural} {names} for the {name!r} backend"
        f" ({type(backend).__name__}); it accepts "
        + (", ".join(accepted) if accepted else "no backend keyword arguments")
    )


def is_mp_context(spec: Any) -> bool:
    """Whether ``spec`` is a :mod:`multiprocessing` context (``get_context("spawn")``)."""
    return hasattr(spec, "get_start_method") and hasattr(spec, "Process")


def register_parallel_backend(
    name: str, factory: Callable[..., Any], make_default: bool = False
) -> None:
    """Make a backend available under ``name`` (and the default with ``make_default``).

    Parameters
    ----------
    name : str
        The name given to ``backend=``.
    factory : callable
        Called with ``nesting_level=``, ``inner_max_num_threads=`` and the backend params;
        returns a :class:`ParallelBackendBase` (or a backend written for joblib).
    make_default : bool, default False
        Use it when no backend is given.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    with _lock:
        BACKENDS[name] = factory
        if make_default:
            _default[0] = name
