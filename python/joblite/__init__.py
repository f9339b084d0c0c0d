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
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # hashing
    "hash": ".hashing",
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
    # errors
    "JobliteError": ".exceptions",
    "CorruptFileError": ".exceptions",
    "UnsafeLoadError": ".exceptions",
    "WorkerCrashedError": ".exceptions",
    "CacheWarning": ".exceptions",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'joblite' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
