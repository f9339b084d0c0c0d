"""Stores written for joblib: a class built on joblib's ``StoreBackendBase`` interface
(``_open_item``, ``_item_exists``, ``_move_item``, ``create_location``, ``clear_location``,
``get_items``, ``configure``) works as a joblite store through :class:`JoblibStyleStore`.

Entries are laid out with those seven operations only::

    <location>/<module>/<qualname>/func_code.py
    <location>/<module>/<qualname>/<key>/output.v1       a joblite container (joblite.dumps)
    <location>/<module>/<qualname>/<key>/metadata.json

An entry's output is written to a temporary file and published with ``_move_item``, one
file moved within its directory, exactly as joblib drives such stores (joblib-s3 and the
like implement nothing else), so it is as atomic as the store's move.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any, Optional

from ..exceptions import CorruptFileError
from ..persistence import dumps, loads
from .base import EntryInfo, StoreBackendBase, parse_metadata

__all__ = ["JOBLIB_STORE_METHODS", "JoblibStyleStore", "is_joblib_style"]

#: what a store written for joblib implements
JOBLIB_STORE_METHODS = (
    "_open_item",
    "_item_exists",
    "_move_item",
    "create_location",
    "clear_location",
    "get_items",
    "configure",
)
OUTPUT_NAME = "output.v1"
METADATA_NAME = "metadata.json"
CODE_NAME = "func_code.py"


def is_joblib_style(obj: Any) -> bool:
    """Whether ``obj`` (a class or an instance) has joblib's store interface."""
    return all(callable(getattr(obj, name, None)) for name in JOBLIB_STORE_METHODS)


class JoblibStyleStore(StoreBackendBase):
    """A joblite store on top of an object implementing joblib's store interface.

    Parameters
    ----------
    backend : object
        The joblib-style store (an instance of a subclass of joblib's ``StoreBackendBase``,
        or any object with the same seven methods), configured or not.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.location = str(getattr(backend, "location", "") or "")

    def configure(
        self, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
    ) -> None:
        """Configure the joblib-style store at ``location`` (its own ``configure``)."""
        self.backend.configure(location, verbose=verbose, backend_options=backend_options or {})
        self.location = str(getattr(self.backend, "location", None) or location)

    # ------------------------------------------------------------------ paths
    def _join(self, *parts: str) -> str:
        root = self.location
        sep = "\\" if "\\" in root and "/" not in root else "/"
        return sep.join([root.rstrip("/\\"), *parts]) if root else posixpath.join(*parts)

    def _func_dir(self, func_id: str) -> str:
        return self._join(*func_id.split("/"))

    def _entry_dir(self, func_id: str, key: str) -> str:
        return self._join(*func_id.split("/"), key)

    def _read(self, path: str) -> bytes:
        if not self.backend._item_exists(path):
            raise KeyError(path)
        with self.backend._open_item(path, "rb") as f:
            return bytes(f.read())

    def _write(self, path: str, data: bytes) -> None:
        with self.backend._open_item(path, "wb") as f:
            f.write(data)

    # ---------------------------------------------------------------- entries
    def load_output(self, func_id: str, key: str, mmap_mode: Optional[str] = None) -> Any:
        """The stored result (memory maps are not available on such stores)."""
        return loads(self._read(self._join(*func_id.split("/"), key, OUTPUT_NAME)))

    def store_entry(
        self, func_id: str, key: str, output: Any, metadata: dict, compress: Any = False
    ) -> dict:
        """Write the entry as joblib does: the output to a temporary file moved into place
        with ``_move_item`` (one file, the only move joblib ever asks of a store), the
        metadata written in place.

        The metadata goes first, so that an output that exists always has its metadata.
        """
        data = dumps(output, compress=compress)
        final = self._entry_dir(func_id, key)
        if not self.backend._item_exists(final):
            self.backend.create_location(final)
        metadata = {**metadata, "format": 1, "output_bytes": len(data)}
        self._write(f"{final}/{METADATA_NAME}", json.dumps(metadata).encode())
        target = f"{final}/{OUTPUT_NAME}"
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            self._write(tmp, data)
            self.backend._move_item(tmp, target)
        except BaseException:
            try:
                if self.backend._item_exists(tmp):
                    self.backend.clear_location(tmp)
            except Exception:
                pass
            raise
        return metadata

    def contains_entry(self, func_id: str, key: str) -> bool:
        """Whether the entry's output exists."""
        return bool(self.backend._item_exists(f"{self._entry_dir(func_id, key)}/{OUTPUT_NAME}"))

    def load_metadata(self, func_id: str, key: str) -> dict:
        """The entry's metadata (``KeyError`` if absent)."""
        path = f"{self._entry_dir(func_id, key)}/{METADATA_NAME}"
        return parse_metadata(self._read(path), path)

    def clear_entry(self, func_id: str, key: str) -> None:
        """Remove one entry."""
        path = self._entry_dir(func_id, key)
        if self.backend._item_exists(path):
            self.backend.clear_location(path)

    def clear_func(self, func_id: str) -> None:
        """Remove a function's entries and code."""
        path = self._func_dir(func_id)
        if self.backend._item_exists(path):
            self.backend.clear_location(path)

    def clear(self) -> None:
        """Remove everything under the location (the store's ``clear_location``)."""
        self.backend.clear_location(self.location)

    def load_func_code(self, func_id: str) -> Optional[str]:
        """The stored code text of a function, or ``None``."""
        try:
            return self._read(f"{self._func_dir(func_id)}/{CODE_NAME}").decode("utf-8")
        except (KeyError, OSError, UnicodeDecodeError):
            return None

    def store_func_code(self, func_id: str, code: str) -> None:
        """Store a function's code text."""
        d = self._func_dir(func_id)
        self.backend.create_location(d)
        self._write(f"{d}/{CODE_NAME}", code.encode("utf-8"))

    def iter_entries(self, func_id: Optional[str] = None) -> Iterator[EntryInfo]:
        """The entries the store's ``get_items`` lists (joblib's ``CacheItemInfo``)."""
        for item in self.backend.get_items():
            path = str(getattr(item, "path", item))
            parts = path.replace("\\", "/").rstrip("/").split("/")
            if len(parts) < 3:
                continue
            fid, key = f"{parts[-3]}/{parts[-2]}", parts[-1]
            if func_id is not None and fid != func_id:
                continue
            last = getattr(item, "last_access", None)
            when = (
                float(last.timestamp()) if last is not None and hasattr(last, "timestamp") else 0.0
            )
            try:
                meta = self.load_metadata(fid, key)
                ok = True
            except (KeyError, CorruptFileError, OSError):
                meta, ok = {}, False
            created = meta.get("time", when)
            yield EntryInfo(
                func_id=fid,
                key=key,
                size=int(getattr(item, "size", 0) or 0),
                created=float(created) if isinstance(created, (int, float)) else when,
                last_access=when,
                duration=meta.get("duration"),
                metadata_ok=ok,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"
