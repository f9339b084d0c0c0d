"""Execution backends of Parallel behind one interface, and their registry.

Backend classes are imported only when first used, so ``import joblite`` never pays
for loky or the thread pool.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import BatchedCalls, ParallelBackendBase

__all__ = ["BACKENDS", "BatchedCalls", "ParallelBackendBase", "get_backend_factory"]

# name -> factory (a class, or "module:Class" imported on first use)
BACKENDS: dict[str, Any] = {
    "sequential": ".sequential:SequentialBackend",
    "threading": ".threads:ThreadingBackend",
    "loky": ".processes:LokyBackend",
    "multiprocessing": ".processes:MultiprocessingBackend",
    "dask": ".dask:DaskDistributedBackend",
}


def get_backend_factory(name: str) -> Callable[..., ParallelBackendBase]:
    """The factory registered under ``name``; ValueError naming the known ones if none."""
    try:
        factory = BACKENDS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"Invalid backend: {name!r}, expected one of {known}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = BACKENDS[name] = getattr(importlib.import_module(module, __name__), attr)
    return factory
