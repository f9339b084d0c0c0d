"""``joblib.parallel`` under joblite's alias: Parallel and its configuration, joblite's."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable, Optional

from ...backends import (
    BACKENDS as _JOBLITE_BACKENDS,
)
from ...backends import (
    BatchedCalls,
    ParallelBackendBase,
    cpu_count,
    get_backend_factory,
    register_parallel_backend,
)
from ...parallel import (
    BatchCompletionCallBack,
    Parallel,
    delayed,
    effective_n_jobs,
    parallel_backend,
    parallel_config,
    wrap_non_picklable_objects,
)
from ...parallel._config import _CONFIG_DEFAULTS, get_active_backend
from ._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
)


def _multiprocessing() -> Any:
    # joblib's rule (_multiprocessing_helpers): None when JOBLIB_MULTIPROCESSING=0 or
    # when processes cannot start here; libraries test it to skip parallel checks
    if int(os.environ.get("JOBLIB_MULTIPROCESSING", 1) or 0) == 0:
        return None
    try:
        import _multiprocessing  # type: ignore[import-not-found]  # noqa: F401
        import multiprocessing
    except ImportError:
        return None
    return multiprocessing


mp = _multiprocessing()


class _Registry(MutableMapping):
    """joblib's ``BACKENDS`` dict as a view of joblite's registry: reading a name gives
    its factory (imported on first use), writing one registers it."""

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in _JOBLITE_BACKENDS:
            raise KeyError(name)
        return get_backend_factory(name)

    def __setitem__(self, name: str, factory: Callable[..., Any]) -> None:
        register_parallel_backend(name, factory)

    def __delitem__(self, name: str) -> None:
        del _JOBLITE_BACKENDS[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(_JOBLITE_BACKENDS))

    def __len__(self) -> int:
        return len(_JOBLITE_BACKENDS)


BACKENDS = _Registry()
DEFAULT_BACKEND = "loky"
DEFAULT_THREAD_BACKEND = "threading"
DEFAULT_PROCESS_BACKEND = "loky"
MAYBE_AVAILABLE_BACKENDS = {"multiprocessing", "loky"}
EXTERNAL_BACKENDS: dict[str, Callable[[], Any]] = {}
TASK_DONE = "Done"
TASK_ERROR = "Error"
TASK_PENDING = "Pending"
#: joblib's eight settings, with joblite's defaults (one home: parallel/_config.py)
default_parallel_config: dict[str, Any] = {
    name: _CONFIG_DEFAULTS[name]
    for name in (
        "backend",
        "n_jobs",
        "verbose",
        "temp_folder",
        "max_nbytes",
        "mmap_mode",
        "prefer",
        "require",
    )
}
DEFAULT_MP_CONTEXT: Optional[Any] = None

__all__ = [
    "BACKENDS",
    "AutoBatchingMixin",
    "BatchCompletionCallBack",
    "BatchedCalls",
    "FallbackToBackend",
    "LokyBackend",
    "MultiprocessingBackend",
    "Parallel",
    "ParallelBackendBase",
    "SequentialBackend",
    "ThreadingBackend",
    "cpu_count",
    "delayed",
    "effective_n_jobs",
    "get_active_backend",
    "mp",
    "parallel_backend",
    "parallel_config",
    "register_parallel_backend",
    "wrap_non_picklable_objects",
]
