"""Parallel computing: :class:`Parallel` and :func:`delayed`, and their configuration.

The layer on top of :mod:`joblite.backends`: ``_config`` holds the per-thread defaults
(:class:`parallel_config`), ``_parallel`` the public call, ``_dispatch`` its loop (batching,
back-pressure, ordering, errors, timeouts) and ``_progress`` what it reports as it goes.
"""

from __future__ import annotations

from ..backends import ParallelBackendBase, cpu_count, register_parallel_backend
from ._config import effective_n_jobs, parallel_backend, parallel_config
from ._parallel import BatchCompletionCallBack, Parallel, delayed, wrap_non_picklable_objects
from ._progress import ProgressEvent

__all__ = [
    "BatchCompletionCallBack",
    "Parallel",
    "ParallelBackendBase",
    "ProgressEvent",
    "cpu_count",
    "delayed",
    "effective_n_jobs",
    "parallel_backend",
    "parallel_config",
    "register_parallel_backend",
    "wrap_non_picklable_objects",
]
