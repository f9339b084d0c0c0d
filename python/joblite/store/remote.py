"""A cache store on any fsspec filesystem (S3, GCS, ``memory://``, ...), shared by a cluster.

Layout under the store's root (``<location>/joblite``)::

    <module>/<qualname>/func_code.py                 the function's code (invalidation)
    <module>/<qualname>/access/<time>-<id>.log       access records, one object per flush
    <module>/<qualname>/<k[:3]>/<k[3:]>/output-<id>.v1   the result (a joblite.dumps dump)
    <module>/<qualname>/<k[:3]>/<k[3:]>/metadata.json    the commit marker, written last

Object stores have no rename, so an entry is published by writing its ``metadata.json`` last, in
one PUT (atomic on S3, GCS and Azure): it names the output object it belongs to. A reader that
finds no metadata sees no entry; a writer killed before the metadata leaves only an orphan output
that :meth:`FsspecStore.cleanup` removes. Replacing an entry uploads a new output under a new
name, switches the metadata, then deletes the old output.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from .. import _files, _fork
from ..exceptions import CorruptFileError
from ..hashing import hash as hash_bytes
from ..persistence import dumps, load, loads
from .base import EntryInfo, StoreBackendBase, parse_metadata

__all__ = ["FsspecStore"]

_live_stores: weakref.WeakSet = weakref.WeakSet()


def _flush_all() -> None:
    """Write every store's buffered access records at exit (they would be lost)."""
    for store in list(_live_stores):
        try:
            store.flush()
        except Exception:  # at exit, a failing filesystem must not raise
            pass


atexit.register(_flush_all)

FORMAT_VERSION = 1
METADATA_NAME = "metadata.json"
FUNC_CODE_NAME = "func_code.py"
ACCESS_DIR = "access"
# an output object without metadata older than this is the leftover of a killed writer
ORPHAN_AGE = 3600.0
# merge a function's access logs into one once there are more than this many
ACCESS_LOGS_TO_COMPACT = 64
# filesystems that cache directory listings unless told not to
_LISTING_CACHED = {"s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "http", "https"}


class FsspecStore(StoreBackendBase):
    """Cache entries on an fsspec filesystem: ``Memory("s3://bucket/prefix")``.

    Options (``Memory(..., backend_options={...})``):

    - ``storage_options`` (dict): passed to ``fsspec.url_to_fs``, e.g.
      ``{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}, "key": ..., "secret": ...}``.
      Other unknown options are passed to fsspec as well.
    - ``local_cache`` (str): folder where results loaded with ``mmap_mode`` are downloaded
      (default: ``<tempdir>/joblite-remote-cache``). A memory map needs a local file, so a
      memory-mapped load downloads the result once per entry and maps the local copy.
    - ``access_flush_interval`` (seconds, default 5): how often access records are written.

    Compute-once locking is not available on object stores (no atomic create-if-absent in
    every backend), so concurrent callers of a missing entry may compute it more than once;
    they never see a partial entry.
    """

    supports_locking = False

    def configure(
        self, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
    ) -> None:
        try:
            import fsspec
        except ImportError as exc:
            raise ImportError(
                f"a cache at {location!r} needs fsspec (and s3fs for s3://): "
                "pip install 'joblite[s3]'"
            ) from exc
        options = dict(backend_options or {})
        self._configured_with = (location, verbose, dict(options))
        storage_options = dict(options.pop("storage_options", None) or {})
        self.local_cache = options.pop(
            "local_cache", os.path.join(tempfile.gettempdir(), "joblite-remote-cache")
        )
        self.flush_interval = float(options.pop("access_flush_interval", 5.0))
        options.pop("compress", None)  # a Memory option some callers pass along
        storage_options.update(options)
        protocol = fsspec.core.split_protocol(str(location))[0]
        if protocol in _LISTING_CACHED:
            # Other machines add and remove entries: a cached listing would hide them.
            storage_options.setdefault("use_listings_cache", False)
        self.location = str(location)
        self.fs, root = fsspec.core.url_to_fs(self.location, **storage_options)
        self.root = root.rstrip("/")
        self.verbose = verbose
        self._local_fs = type(self.fs).__name__ == "LocalFileSystem"
        self.fs.makedirs(self.root, exist_ok=True)
        self._lock = threading.Lock()
        _fork.renew_in_child(self, "_lock")  # held by a thread at a fork
        self._pending: dict[str, list[tuple[str, float]]] = {}
        self._last_flush = time.monotonic()
        _live_stores.add(self)

    def __getstate__(self) -> dict:
        # the filesystem object holds locks and sessions: send how to make it instead
        self.flush()
        return {"configured_with": self._configured_with}

    def __setstate__(self, state: dict) -> None:
        location, verbose, options = state["configured_with"]
        self.configure(location, verbose=verbose, backend_options=options)

    # ------------------------------------------------------------------ paths
    def func_dir(self, func_id: str) -> str:
        return f"{self.root}/{func_id}"

    def entry_dir(self, func_id: str, key: str) -> str:
        return f"{self.func_dir(func_id)}/{key[:3]}/{key[3:]}"

    def _put(self, path: str, data: bytes) -> None:
        """Write one object so that readers see all of it or nothing."""
        if self._local_fs:  # a plain file: write aside, then rename
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
            _files.write_atomic(path, data)
        else:  # one PUT: atomic on object stores
            self.fs.pipe_file(path, data)

    def _cat(self, path: str) -> bytes:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise KeyError(path) from None

    # ------------------------------------------------------------------ entries
    def store_entry(
        self, func_id: str, key: str, output: Any, metadata: dict, compress: Any = False
    ) -> dict:
        """Upload the output under a fresh name, then publish the metadata that names it."""
        edir = self.entry_dir(func_id, key)
        data = dumps(output, compress=compress)
        name = f"output-{uuid.uuid4().hex[:16]}.v{FORMAT_VERSION}"
        try:
            previous = self.load_metadata(func_id, key).get("output")
        except (KeyError, CorruptFileError):
            previous = None
        self._put(f"{edir}/{name}", data)
        metadata = {
            **metadata,
            "format": FORMAT_VERSION,
            "output": name,
            "output_bytes": len(data),
            "output_blake3": _digest(data),
        }
        try:
            self._put(f"{edir}/{METADATA_NAME}", json.dumps(metadata).encode())
        except BaseException:
            self._remove(f"{edir}/{name}")
            raise
        if isinstance(previous, str) and previous != name:
            self._remove(f"{edir}/{previous}")
        return metadata

    def load_metadata(self, func_id: str, key: str) -> dict:
        """The entry's metadata (``KeyError`` if absent, ``CorruptFileError`` if unreadable)."""
        path = f"{self.entry_dir(func_id, key)}/{METADATA_NAME}"
        raw = self._cat(path)
        return parse_metadata(raw, path)

    def load_output(self, func_id: str, key: str, mmap_mode: Optional[str] = None) -> Any:
        """Fetch the result: one GET for the metadata, one for the output object.

        With ``mmap_mode`` the output is downloaded once into ``local_cache`` (named by its
        checksum, so a replaced entry never maps stale data) and memory-mapped from there.
        """
        meta = self.load_metadata(func_id, key)
        edir = self.entry_dir(func_id, key)
        name = meta.get("output")
        if meta.get("format") != FORMAT_VERSION or not isinstance(name, str):
            raise CorruptFileError(f"{edir}/{METADATA_NAME}", "unknown entry format")
        path = f"{edir}/{name}"
        digest = meta.get("output_blake3")
        if mmap_mode is not None and isinstance(digest, str):
            local = os.path.join(self.local_cache, f"{digest}.v{FORMAT_VERSION}")
            if not os.path.exists(local):
                data = self._fetch(path, digest)
                os.makedirs(self.local_cache, exist_ok=True)
                _files.write_atomic(local, data)
            return load(local, mmap_mode=mmap_mode)
        return loads(self._fetch(path, digest))

    def _fetch(self, path: str, digest: Any) -> bytes:
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise CorruptFileError(
                path, "the output object named by the metadata is missing"
            ) from None
        if isinstance(digest, str) and _digest(data) != digest:
            raise CorruptFileError(path, "the output object does not match its checksum")
        return data

    def contains_entry(self, func_id: str, key: str) -> bool:
        return bool(self.fs.exists(f"{self.entry_dir(func_id, key)}/{METADATA_NAME}"))

    def _remove(self, path: str, recursive: bool = False) -> None:
        try:
            self.fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    def clear_entry(self, func_id: str, key: str) -> None:
        # metadata first: the entry disappears at once, the output follows
        edir = self.entry_dir(func_id, key)
        self._remove(f"{edir}/{METADATA_NAME}")
        self._remove(edir, recursive=True)

    def clear_func(self, func_id: str) -> None:
        self._remove(self.func_dir(func_id), recursive=True)

    def clear(self) -> None:
        self._remove(self.root, recursive=True)
        self.fs.makedirs(self.root, exist_ok=True)

    def load_func_code(self, func_id: str) -> Optional[str]:
        try:
            return self._cat(f"{self.func_dir(func_id)}/{FUNC_CODE_NAME}").decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return None

    def store_func_code(self, func_id: str, code: str) -> None:
        self._put(f"{self.func_dir(func_id)}/{FUNC_CODE_NAME}", code.encode("utf-8"))

    # ------------------------------------------------------------------ listing
    def _listing(self, func_id: Optional[str]) -> dict[str, dict]:
        base = self.func_dir(func_id) if func_id else self.root
        try:
            return self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}

    def _split(self, path: str) -> Optional[tuple[str, str, str]]:
        """``(func_id, key, name)`` of an object inside an entry, else None."""
        rel = path[len(self.root) + 1 :] if path.startswith(self.root + "/") else None
        if rel is None:
            return None
        parts = rel.split("/")
        if len(parts) < 5 or ACCESS_DIR == parts[-2]:
            return None
        return "/".join(parts[:-3]), parts[-3] + parts[-2], parts[-1]

    def iter_entries(self, func_id: Optional[str] = None) -> Iterator[EntryInfo]:
        """Every entry, from one listing plus a batched read of the metadata objects."""
        self.flush()
        listing = self._listing(func_id)
        entries: dict[tuple[str, str], dict[str, Any]] = {}
        for path, info in listing.items():
            split = self._split(path)
            if split is None:
                continue
            fid, key, name = split
            entry = entries.setdefault((fid, key), {"size": 0, "mtime": 0.0, "names": set()})
            entry["size"] += int(info.get("size") or 0)
            entry["mtime"] = max(entry["mtime"], _mtime(info))
            entry["names"].add(name)
        meta_paths = [
            f"{self.entry_dir(fid, key)}/{METADATA_NAME}"
            for (fid, key), e in entries.items()
            if METADATA_NAME in e["names"]
        ]
        raw = self.fs.cat(meta_paths, on_error="return") if meta_paths else {}
        access = self._read_access({fid for fid, _ in entries})
        for (fid, key), e in entries.items():
            data = raw.get(f"{self.entry_dir(fid, key)}/{METADATA_NAME}")
            try:
                meta = json.loads(data) if isinstance(data, bytes) else {}
            except ValueError:
                meta = {}
            ok = meta.get("format") == FORMAT_VERSION and meta.get("output") in e["names"]
            created = meta.get("time", e["mtime"])
            created = float(created) if isinstance(created, (int, float)) else e["mtime"]
            last, hits = access.get((fid, key), (0.0, 0))
            duration = meta.get("duration")
            yield EntryInfo(
                func_id=fid,
                key=key,
                size=e["size"],
                created=created,
                last_access=max(last, created),
                hits=hits,
                duration=float(duration) if isinstance(duration, (int, float)) else None,
                metadata_ok=ok,
            )

    def list_functions(self) -> list[str]:
        """The ``func_id`` of every function with an entry or stored code."""
        found = set()
        for path in self._listing(None):
            rel = path[len(self.root) + 1 :]
            parts = rel.split("/")
            if parts[-1] == FUNC_CODE_NAME and len(parts) >= 3:
                found.add("/".join(parts[:-1]))
            split = self._split(path)
            if split is not None:
                found.add(split[0])
        return sorted(found)

    def remove_entries(self, entries: Iterable[EntryInfo]) -> None:
        for e in entries:
            self.clear_entry(e.func_id, e.key)

    def cleanup(self) -> int:
        """Remove outputs that no metadata names and that are older than an hour."""
        removed = 0
        now = time.time()
        by_entry: dict[tuple[str, str], list[tuple[str, dict]]] = {}
        for path, info in self._listing(None).items():
            split = self._split(path)
            if split is not None:
                by_entry.setdefault(split[:2], []).append((split[2], info))
        for (fid, key), objects in by_entry.items():
            try:
                current = self.load_metadata(fid, key).get("output")
            except (KeyError, CorruptFileError):
                current = None
            for name, info in objects:
                stale = now - _mtime(info) > ORPHAN_AGE
                if name.startswith("output-") and name != current and stale:
                    self._remove(f"{self.entry_dir(fid, key)}/{name}")
                    removed += 1
        return removed

    # ------------------------------------------------------------------ access records
    def record_access(self, func_id: str, key: str) -> None:
        with self._lock:
            self._pending.setdefault(func_id, []).append((key, time.time()))
            due = time.monotonic() - self._last_flush > self.flush_interval
        if due:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Write buffered access records: one new object per function (no appends on S3)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        for func_id, records in pending.items():
            text = "".join(f"{key}\t{when:.3f}\n" for key, when in records)
            name = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}.log"
            try:
                self._put(f"{self.func_dir(func_id)}/{ACCESS_DIR}/{name}", text.encode())
            except OSError:
                pass  # best effort: losing records only makes eviction less precise

    def _read_access(self, func_ids: set[str]) -> dict[tuple[str, str], tuple[float, int]]:
        stats: dict[tuple[str, str], tuple[float, int]] = {}
        for fid in func_ids:
            adir = f"{self.func_dir(fid)}/{ACCESS_DIR}"
            try:
                logs = sorted(self.fs.ls(adir, detail=False))
            except FileNotFoundError:
                continue
            contents = self.fs.cat(logs, on_error="omit") if logs else {}
            for data in contents.values():
                for line in data.decode("utf-8", "replace").splitlines():
                    key, _, when = line.partition("\t")
                    try:
                        t = float(when)
                    except ValueError:
                        continue
                    last, hits = stats.get((fid, key), (0.0, 0))
                    stats[(fid, key)] = (max(last, t), hits + 1)
            if len(logs) > ACCESS_LOGS_TO_COMPACT:
                merged = "".join(
                    f"{key}\t{last:.3f}\n" * hits
                    for (f, key), (last, hits) in stats.items()
                    if f == fid
                )
                self._put(f"{adir}/0-compacted-{uuid.uuid4().hex[:8]}.log", merged.encode())
                for path in logs:
                    self._remove(path)
        return stats


def _digest(data: bytes) -> str:
    return hash_bytes(data)[:32]


def _mtime(info: dict) -> float:
    for field in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(field)
        if isinstance(value, (int, float)):
            return float(value)
        if value is not None and hasattr(value, "timestamp"):
            return float(value.timestamp())
    return 0.0
