"""``joblib._store_backends`` under joblite's alias: the store interface libraries
subclass (joblib-s3 and the like), and joblite's local store as ``FileSystemStoreBackend``."""

from __future__ import annotations

from ...store import FileSystemStore as FileSystemStoreBackend
from ...store import StoreBackendBase

__all__ = ["FileSystemStoreBackend", "StoreBackendBase"]
