"""Where cache entries live: the store interface, the local filesystem store, the registry."""

from __future__ import annotations

from typing import Any, Optional

from .base import EntryInfo, StoreBackendBase, parse_age, parse_bytes, select_for_removal
from .joblib_style import JOBLIB_STORE_METHODS, JoblibStyleStore, is_joblib_style
from .local import FileSystemStore

__all__ = [
    "EntryInfo",
    "FileSystemStore",
    "JoblibStyleStore",
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
        A subclass of :class:`StoreBackendBase`, or a store written for joblib (a subclass
        of joblib's ``StoreBackendBase``, with its methods ``_open_item``, ``_item_exists``,
        ``_move_item``, ``create_location``, ``clear_location``, ``get_items`` and
        ``configure``), which joblite drives through those methods.

    Raises
    ------
    ValueError
        If the name is not a string or the class is neither kind of store.
    """
    if not isinstance(backend_name, str):
        raise ValueError(f"Store backend name should be a string, got {backend_name!r}")
    if not isinstance(backend, type) or not (
        issubclass(backend, StoreBackendBase) or _inherits_joblib_base(backend)
    ):
        raise ValueError(
            "Store backend should inherit StoreBackendBase (joblite's, or joblib's with "
            f"its methods {', '.join(JOBLIB_STORE_METHODS)}), got {backend!r}"
        )
    _BACKENDS[backend_name] = backend


def _inherits_joblib_base(cls: type) -> bool:
    if any(b.__name__ == "StoreBackendBase" for b in cls.__mro__[1:]):
        return True
    return is_joblib_style(cls)


def make_store(
    backend: Any, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
) -> StoreBackendBase:
    """A configured store for ``location`` (a path) with the named (or given) backend."""
    if isinstance(backend, StoreBackendBase):
        return backend
    if not isinstance(backend, (str, type)) and is_joblib_style(backend):
        return JoblibStyleStore(backend)  # a configured store written for joblib
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a registered name, got {backend!r}")
    if backend == "fsspec" and "fsspec" not in _BACKENDS:
        from .remote import FsspecStore

        _BACKENDS["fsspec"] = FsspecStore
    cls = _BACKENDS.get(backend)
    if cls is None:
        raise TypeError(
            f"Unknown location {location!r} or backend {backend!r}: registered backends are "
            f"{sorted(_BACKENDS)} (add one with joblite.register_store_backend)"
        )
    if issubclass(cls, StoreBackendBase):
        store = cls()
    else:
        store = JoblibStyleStore(cls())
    store.configure(location, verbose=verbose, backend_options=backend_options)
    return store
