"""Where cache entries live: the store interface, the local filesystem store, the registry."""

from __future__ import annotations

from typing import Any, Optional

from .base import EntryInfo, StoreBackendBase, parse_age, parse_bytes, select_for_removal
from .local import FileSystemStore

__all__ = [
    "EntryInfo",
    "FileSystemStore",
    "StoreBackendBase",
    "make_store",
    "parse_age",
    "parse_bytes",
    "register_store_backend",
    "select_for_removal",
]

_BACKENDS: dict[str, type] = {"local": FileSystemStore}


def register_store_backend(backend_name: str, backend: type) -> None:
    """Make a store class available as ``Memory(..., backend=backend_name)``.

    Parameters
    ----------
    backend_name : str
        The name users pass as ``Memory(backend=...)``.
    backend : type
        A subclass of :class:`StoreBackendBase`.
    """
    if not isinstance(backend_name, str):
        raise ValueError(f"Store backend name should be a string, got {backend_name!r}")
    if not (isinstance(backend, type) and issubclass(backend, StoreBackendBase)):
        raise ValueError(f"Store backend should inherit joblite.StoreBackendBase, got {backend!r}")
    _BACKENDS[backend_name] = backend


def make_store(
    backend: Any, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
) -> StoreBackendBase:
    """A configured store for ``location`` (a path) with the named (or given) backend."""
    if isinstance(backend, StoreBackendBase):
        return backend
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a registered name, got {backend!r}")
    if backend == "fsspec" and "fsspec" not in _BACKENDS:
        from .remote import FsspecStore

        _BACKENDS["fsspec"] = FsspecStore
    cls = _BACKENDS.get(backend)
    if cls is None:
        raise ValueError(
            f"Unknown store backend {backend!r}; registered: {sorted(_BACKENDS)} "
            "(add one with joblite.register_store_backend)"
        )
    store = cls()
    store.configure(location, verbose=verbose, backend_options=backend_options)
    return store
