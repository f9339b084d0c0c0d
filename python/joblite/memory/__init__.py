"""Memory: transparent disk caching of function results, with joblib's API.

``Memory(location).cache(f)`` returns a :class:`MemorizedFunc` that computes ``f`` once per
distinct arguments and serves later calls from the store (see ``docs/memory.md``).

One job per module: :mod:`.identity` (a function's identity and code fingerprint),
:mod:`.arguments` (the key of a call), :mod:`.chain` (O(1) keys of chained steps),
:mod:`.protocol` (a function's cache state and the one call protocol), :mod:`.explain` (why a
call misses), :mod:`.functions` (its sync and async drivers),
:mod:`.result` (the shelved result), :mod:`.limits`, :mod:`.stats` and :mod:`.cache`
(:class:`Memory`).
"""

from __future__ import annotations

from ..exceptions import CacheWarning
from ..logger import Logger, format_time
from ..store import StoreBackendBase, register_store_backend
from .arguments import ArgumentError
from .cache import Memory, expires_after
from .explain import MissExplanation
from .functions import AsyncMemorizedFunc, AsyncNotMemorizedFunc, MemorizedFunc, NotMemorizedFunc
from .identity import JobLibCollisionWarning
from .result import MemorizedResult, NotMemorizedResult
from .stats import CacheStats, FunctionStats

__all__ = [
    "ArgumentError",
    "AsyncMemorizedFunc",
    "AsyncNotMemorizedFunc",
    "CacheStats",
    "CacheWarning",
    "FunctionStats",
    "JobLibCollisionWarning",
    "Logger",
    "MemorizedFunc",
    "MemorizedResult",
    "Memory",
    "MissExplanation",
    "NotMemorizedFunc",
    "NotMemorizedResult",
    "StoreBackendBase",
    "expires_after",
    "format_time",
    "register_store_backend",
]
