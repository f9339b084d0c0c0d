"""From what a user passes as ``location`` and ``backend`` to a configured store."""

from __future__ import annotations

import os
from typing import Any, Optional

from ..store import StoreBackendBase, make_store

__all__ = ["store_for"]


def store_for(location: Any, backend: Any, verbose: int, options: Optional[dict]) -> Any:
    """The store of a Memory: ``None`` (no caching), a given store, or one made from a path.

    Paths get ``~`` expanded (as joblib does) and the entries go in ``<location>/joblite``.
    A URL (``s3://bucket/prefix``, ``memory://...``) selects the fsspec store.
    """
    if location is None or isinstance(location, StoreBackendBase):
        return location
    if hasattr(location, "_item_exists") and hasattr(location, "configure"):
        return make_store(location, None)  # a configured joblib-style store object
    if isinstance(location, str) and "://" in location:
        if backend == "local":
            backend = "fsspec"
        return make_store(backend, location.rstrip("/") + "/joblite", verbose, options)
    path = os.path.expanduser(os.fspath(location))
    return make_store(backend, os.path.join(path, "joblite"), verbose, options)
