"""The local store's layout: where a function's entries live, how an entry is written in a
temporary folder and published by one rename, read back, and removed.

Layout under ``<location>/joblite``::

    <module>/<qualname>/func_code.py          the function's code (invalidation)
    <module>/<qualname>/access.log            hit and miss records (LRU, statistics), compacted
    <module>/<qualname>/<k[:3]>/<k[3:]>/      one entry: output.v1 (joblite.dump) + metadata.json
    <module>/<qualname>/<k[:3]>/<k[3:]>.lock  compute-once lock of an entry being computed
    <module>/<qualname>/.writing/             entries being written (renamed into place)

The three-character fan-out keeps every directory small (a million entries of one function give
4096 directories of ~250 entries), and a hit is one path join and one open.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any, Optional

from ... import _files
from ...exceptions import CorruptFileError
from ...persistence import dump, load, loads, small
from ..base import ClearedWhileStoring, StoreBackendBase, parse_metadata

FORMAT_VERSION = 1
OUTPUT_NAME = f"output.v{FORMAT_VERSION}"
METADATA_NAME = "metadata.json"
CODE_NAME = "func_code.py"
ACCESS_LOG = "access.log"
TMP_DIR = ".writing"
#: results up to this size are read in one go and decoded from memory (cheapest hit)
SMALL_RESULT = 1 << 20
_FIRST_READ = 1 << 16
_log = logging.getLogger("joblite.memory")
_LOAD_HAS_VERIFY = "verify" in inspect.signature(load).parameters


def remove_tree(path: str) -> None:
    """Make ``path`` vanish at once (rename), then delete it at leisure."""
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f".trash-{name}-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def fan_out_children(func_dir: str) -> Iterator[tuple[str, os.DirEntry]]:
    """``(prefix, entry)`` for everything inside the three-character fan-out directories of a
    function's directory; unreadable directories are skipped (a concurrent clear, say)."""
    try:
        prefixes = [e for e in os.scandir(func_dir) if e.is_dir() and len(e.name) == 3]
    except OSError:
        return
    for prefix in prefixes:
        try:
            children = list(os.scandir(prefix.path))
        except OSError:
            continue
        for child in children:
            yield prefix.name, child


class LocalLayout(StoreBackendBase):
    """Paths, entries and function code of the local store (the state every part shares)."""

    location: str
    verbose: int
    verify: bool
    stale_lock_after: float
    flush_interval: float
    _func_dirs: dict[str, str]
    _pending: list[tuple[str, str, float, bool]]
    _last_flush: float
    _lock: threading.Lock

    def func_dir(self, func_id: str) -> str:
        """Directory of one function's entries."""
        d = self._func_dirs.get(func_id)
        if d is None:
            d = os.path.join(self.location, *func_id.split("/"))
            self._func_dirs[func_id] = d
        return d

    def entry_dir(self, func_id: str, key: str) -> str:
        """Directory of one entry."""
        return os.path.join(self.func_dir(func_id), key[:3], key[3:])

    def load_output(self, func_id: str, key: str, mmap_mode: Optional[str] = None) -> Any:
        """The stored result (``KeyError`` if absent)."""
        fdir = self._func_dirs.get(func_id) or self.func_dir(func_id)
        path = f"{fdir}{os.sep}{key[:3]}{os.sep}{key[3:]}{os.sep}{OUTPUT_NAME}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            # one read answers most hits: a small record or a small dump arrives whole
            data = os.read(fd, _FIRST_READ)
            if len(data) == _FIRST_READ:
                size = os.fstat(fd).st_size
                if mmap_mode is None and size <= SMALL_RESULT:
                    data += os.read(fd, max(0, size - len(data)))
                    if len(data) != size:
                        data = b""  # changed under us: let load() judge the file
                else:
                    data = data if data.startswith(small.MAGIC) else b""
                    if data:
                        data += os.read(fd, max(0, size - len(data)))
        finally:
            os.close(fd)
        if data.startswith(small.MAGIC):
            return small.decode(data, path)
        if data and mmap_mode is None:
            return loads(data)  # one open, one read: the cheapest hit for a dump
        try:
            if self.verify or not _LOAD_HAS_VERIFY:
                return load(path, mmap_mode=mmap_mode)
            return load(path, mmap_mode=mmap_mode, verify=False)
        except FileNotFoundError:
            raise KeyError(key) from None

    def contains_entry(self, func_id: str, key: str) -> bool:
        """Whether the entry's output exists."""
        return os.path.exists(os.path.join(self.entry_dir(func_id, key), OUTPUT_NAME))

    def describe_missing(self, func_id: str, key: str) -> Optional[str]:
        """A reason when an entry directory exists but has no readable output."""
        d = self.entry_dir(func_id, key)
        try:
            names = set(os.listdir(d))
        except OSError:
            return None
        if OUTPUT_NAME in names:
            return None  # appeared meanwhile
        if METADATA_NAME in names:
            try:
                meta = self.load_metadata(func_id, key)
            except (KeyError, CorruptFileError):
                meta = {}
            version = meta.get("format")
            if version != FORMAT_VERSION:
                return f"entry {d!r} was written by an older format version ({version})"
        if "output.pkl" in names:
            return f"entry {d!r} was written by an older format version (joblib layout)"
        return f"entry {d!r} is missing its output file"

    def store_entry(
        self, func_id: str, key: str, output: Any, metadata: dict, compress: Any = False
    ) -> dict:
        """Write the entry in a temporary directory, then rename it into place.

        A concurrent ``clear`` (another process removing the function's directory while the
        entry is written) is normal operation: the write is simply redone.
        """
        attempts = 8  # a clear in a loop (another process's) can hit a few writes in a row
        for attempt in range(attempts):
            try:
                return self._store_entry_once(func_id, key, output, metadata, compress)
            except FileNotFoundError as exc:
                if attempt == attempts - 1:
                    raise ClearedWhileStoring(str(exc)) from exc
        raise AssertionError("unreachable")

    def _store_entry_once(
        self, func_id: str, key: str, output: Any, metadata: dict, compress: Any
    ) -> dict:
        fdir = self.func_dir(func_id)
        tmp_root = os.path.join(fdir, TMP_DIR)
        os.makedirs(tmp_root, exist_ok=True)
        _files.sweep_dead_temps(tmp_root, log=_log)
        tmp = _files.temp_name(os.path.join(tmp_root, key[3:]))
        os.mkdir(tmp)
        try:
            record = small.encode(output) if not compress else None
            if record is not None:
                with open(os.path.join(tmp, OUTPUT_NAME), "wb") as f:
                    f.write(record)
            else:
                # no flush to the device, as for every other file of an entry (docs/memory.md):
                # a power cut can only leave a damaged entry, which loads as a miss
                dump(output, os.path.join(tmp, OUTPUT_NAME), compress=compress, fsync=False)
            size = 0
            for entry in os.scandir(tmp):
                size += entry.stat().st_size
            metadata = {**metadata, "format": FORMAT_VERSION, "output_bytes": size}
            with open(os.path.join(tmp, METADATA_NAME), "w", encoding="utf-8") as f:
                json.dump(metadata, f)
            parent = os.path.join(fdir, key[:3])
            os.makedirs(parent, exist_ok=True)
            self._publish(tmp, os.path.join(parent, key[3:]))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return metadata

    def _publish(self, tmp: str, final: str) -> None:
        try:
            os.rename(tmp, final)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        # an entry is already there (corrupt, or written by a concurrent caller): replace it
        remove_tree(final)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a third writer won; its entry is complete

    def load_metadata(self, func_id: str, key: str) -> dict:
        """The entry's metadata (``KeyError`` if absent, ``CorruptFileError`` if unreadable)."""
        path = os.path.join(self.entry_dir(func_id, key), METADATA_NAME)
        return self._read_metadata(path, key)

    @staticmethod
    def _read_metadata(path: str, key: str) -> dict:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise KeyError(key) from None
        return parse_metadata(raw, path)

    def clear_entry(self, func_id: str, key: str) -> None:
        """Remove one entry."""
        remove_tree(self.entry_dir(func_id, key))

    def clear_func(self, func_id: str) -> None:
        """Remove a function's entries, code and access log."""
        self._pending = [p for p in self._pending if p[0] != func_id]
        remove_tree(self.func_dir(func_id))

    def clear(self) -> None:
        """Remove everything under the location."""
        self._pending = []
        try:
            names = os.listdir(self.location)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.location, name)
            if os.path.isdir(path):
                remove_tree(path)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def load_func_code(self, func_id: str) -> Optional[str]:
        """The stored code text of a function, or ``None``."""
        try:
            with open(os.path.join(self.func_dir(func_id), CODE_NAME), encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            return None

    def store_func_code(self, func_id: str, code: str) -> None:
        """Store a function's code text atomically."""
        d = self.func_dir(func_id)
        os.makedirs(d, exist_ok=True)
        _files.write_atomic(os.path.join(d, CODE_NAME), code.encode("utf-8"))

    def _func_dirs_on_disk(self) -> Iterator[tuple[str, str]]:
        try:
            modules = [e for e in os.scandir(self.location) if e.is_dir()]
        except FileNotFoundError:
            return
        for mod in modules:
            if mod.name.startswith("."):
                continue
            for fn in os.scandir(mod.path):
                if fn.is_dir() and not fn.name.startswith("."):
                    yield f"{mod.name}/{fn.name}", fn.path

    def list_functions(self) -> list[str]:
        """The ``func_id`` of every function with a directory in the store."""
        return sorted(fid for fid, _ in self._func_dirs_on_disk())
