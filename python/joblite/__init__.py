"""joblite: joblib's API on a Rust core.

Transparent disk caching of function results (:class:`Memory`), easy parallel computing
(:class:`Parallel`, :func:`delayed`), fast compressed persistence of large data
(:func:`dump`, :func:`load`) and stable array-aware content hashing (:func:`hash`).
``import joblite as joblib`` keeps a joblib user's code working.

Public names are imported lazily, so ``import joblite`` stays fast and never imports
numpy, loky or dask until they are needed.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The Rust core (1-2 ms, no numpy) reads its thread limit from the environment as it is
# now, at import, as BLAS libraries do: a library that changes os.environ later for the
# processes it starts (dask's LocalCluster sets OMP_NUM_THREADS=1) must not make this
# process's core single-threaded. See joblite.core_threads.
from . import _core as _core

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use
    from . import logger as logger
    from .alias import install_as_joblib as install_as_joblib
    from .backends import ParallelBackendBase as ParallelBackendBase
    from .backends import cpu_count as cpu_count
    from .backends import register_parallel_backend as register_parallel_backend
    from .core_threads import get_thread_limit as get_thread_limit
    from .core_threads import thread_limits as thread_limits
    from .exceptions import CacheWarning as CacheWarning
    from .exceptions import CorruptFileError as CorruptFileError
    from .exceptions import JobliteError as JobliteError
    from .exceptions import UnhashableError as UnhashableError
    from .exceptions import UnsafeLoadError as UnsafeLoadError
    from .exceptions import WorkerCrashedError as WorkerCrashedError
    from .hashing import hash as hash
    from .hashing import register_hash_handler as register_hash_handler
    from .hashing import register_hash_handler_lazy as register_hash_handler_lazy
    from .hashing import unregister_hash_handler as unregister_hash_handler
    from .logger import Logger as Logger
    from .logger import PrintTime as PrintTime
    from .logger import logging_enabled as logging_enabled
    from .logger import use_logging as use_logging
    from .memory import MemorizedFunc as MemorizedFunc
    from .memory import MemorizedResult as MemorizedResult
    from .memory import Memory as Memory
    from .memory import expires_after as expires_after
    from .memory import register_store_backend as register_store_backend
    from .parallel import Parallel as Parallel
    from .parallel import delayed as delayed
    from .parallel import effective_n_jobs as effective_n_jobs
    from .parallel import parallel_backend as parallel_backend
    from .parallel import parallel_config as parallel_config
    from .parallel import wrap_non_picklable_objects as wrap_non_picklable_objects
    from .persistence import dump as dump
    from .persistence import dumps as dumps
    from .persistence import load as load
    from .persistence import loads as loads
    from .persistence import register_compressor as register_compressor
    from .store import StoreBackendBase as StoreBackendBase

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # hashing
    "hash": ".hashing",
    "register_hash_handler": ".hashing",
    "register_hash_handler_lazy": ".hashing",
    "unregister_hash_handler": ".hashing",
    # persistence
    "dump": ".persistence",
    "load": ".persistence",
    "dumps": ".persistence",
    "loads": ".persistence",
    "register_compressor": ".persistence",
    # on-disk caching
    "Memory": ".memory",
    "MemorizedFunc": ".memory",
    "MemorizedResult": ".memory",
    "expires_after": ".memory",
    "register_store_backend": ".memory",
    "StoreBackendBase": ".store",
    "PrintTime": ".logger",
    "Logger": ".logger",
    "use_logging": ".logger",
    "logging_enabled": ".logger",
    # parallel computing
    "Parallel": ".parallel",
    "delayed": ".parallel",
    "cpu_count": ".backends",
    "effective_n_jobs": ".parallel",
    "wrap_non_picklable_objects": ".parallel",
    "parallel_config": ".parallel",
    "parallel_backend": ".parallel",
    "register_parallel_backend": ".backends",
    "ParallelBackendBase": ".backends",
    # threads of the Rust core
    "thread_limits": ".core_threads",
    "get_thread_limit": ".core_threads",
    # errors
    "JobliteError": ".exceptions",
    "CorruptFileError": ".exceptions",
    "UnsafeLoadError": ".exceptions",
    "WorkerCrashedError": ".exceptions",
    "CacheWarning": ".exceptions",
    "UnhashableError": ".exceptions",
    # joblite as ``joblib`` for the whole process (see docs/alias.md)
    "install_as_joblib": ".alias",
}

# submodules reachable as attributes without importing them first (``joblite.logger.use_logging``)
_SUBMODULES = frozenset(
    {"alias", "backends", "cli", "compressor", "core_threads", "exceptions", "hashing", "logger",
     "memory", "parallel", "persistence", "store"}
)  # fmt: skip

__all__ = sorted([*_EXPORTS, "__version__"])


if not TYPE_CHECKING:  # hidden from checkers, which would otherwise type unknown names as Any

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            if name in _SUBMODULES:
                return importlib.import_module(f".{name}", __name__)
            raise AttributeError(f"module 'joblite' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return __all__


# JOBLITE_AS_JOBLIB=1: joblite stands in for joblib here too (set by install_as_joblib() for
# the worker processes it starts; they import joblite before the task's libraries).
if _os.environ.get("JOBLITE_AS_JOBLIB"):
    importlib.import_module(".alias", __name__).install_from_environment()
