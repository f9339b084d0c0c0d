"""What ``import joblib`` gives under :func:`joblite.install_as_joblib`: joblib's names,
on joblite. Names load on first use, as in :mod:`joblite`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .. import JOBLIB_API_VERSION

__version__ = JOBLIB_API_VERSION

if TYPE_CHECKING:
    from ...backends import ParallelBackendBase as ParallelBackendBase
    from ...backends import cpu_count as cpu_count
    from ...backends import register_parallel_backend as register_parallel_backend
    from ...hashing import hash as hash
    from ...logger import Logger as Logger
    from ...logger import PrintTime as PrintTime
    from ...memory import MemorizedResult as MemorizedResult
    from ...memory import Memory as Memory
    from ...memory import expires_after as expires_after
    from ...memory import register_store_backend as register_store_backend
    from ...parallel import Parallel as Parallel
    from ...parallel import delayed as delayed
    from ...parallel import effective_n_jobs as effective_n_jobs
    from ...parallel import parallel_backend as parallel_backend
    from ...parallel import parallel_config as parallel_config
    from ...parallel import wrap_non_picklable_objects as wrap_non_picklable_objects
    from ...persistence import dump as dump
    from ...persistence import load as load
    from ...persistence import register_compressor as register_compressor
    from ...store import StoreBackendBase as StoreBackendBase

# joblib's __all__ (1.6), each from the joblite module that defines it
_EXPORTS = {
    "Memory": "joblite.memory",
    "MemorizedResult": "joblite.memory",
    "expires_after": "joblite.memory",
    "Parallel": "joblite.parallel",
    "delayed": "joblite.parallel",
    "cpu_count": "joblite.backends",
    "effective_n_jobs": "joblite.parallel",
    "wrap_non_picklable_objects": "joblite.parallel",
    "parallel_config": "joblite.parallel",
    "parallel_backend": "joblite.parallel",
    "ParallelBackendBase": "joblite.backends",
    "StoreBackendBase": "joblite.store",
    "register_compressor": "joblite.persistence",
    "register_parallel_backend": "joblite.backends",
    "register_store_backend": "joblite.memory",
    "PrintTime": "joblite.logger",
    "Logger": "joblite.logger",
    "hash": "joblite.hashing",
    "dump": "joblite.persistence",
    "load": "joblite.persistence",
}
# joblib's submodules that are attributes of the package once imported; ``import
# joblib; joblib.parallel`` works in joblib because joblib/__init__ imports them
_SUBMODULES = frozenset(
    {"parallel", "memory", "numpy_pickle", "logger", "hashing", "disk", "compressor",
     "_parallel_backends", "_store_backends", "externals"}
)  # fmt: skip

__all__ = sorted(_EXPORTS)


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            if name in _SUBMODULES:
                return importlib.import_module("." + name, __name__)
            raise AttributeError(f"module 'joblib' (joblite's alias) has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, *_SUBMODULES, "__version__"])
