"""The local filesystem store: one directory per entry, published atomically by a rename.

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

import atexit
import errno
import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, Optional

from .. import _files
from ..exceptions import CorruptFileError
from ..persistence import dump, load, loads, small
from .base import EntryInfo, StoreBackendBase, parse_metadata

__all__ = ["FORMAT_VERSION", "FileSystemStore"]

FORMAT_VERSION = 1
OUTPUT_NAME = f"output.v{FORMAT_VERSION}"
METADATA_NAME = "metadata.json"
CODE_NAME = "func_code.py"
ACCESS_LOG = "access.log"
TMP_DIR = ".writing"
#: compact a function's access log once it is this big and twice its last compacted size
ACCESS_COMPACT_BYTES = 64 * 1024
#: results up to this size are read in one go and decoded from memory (cheapest hit)
SMALL_RESULT = 1 << 20
_FIRST_READ = 1 << 16
_HOST = socket.gethostname()
# the tag joblite < 0.2 put in entry temp folders (".tmp-<key>-<pid>-<tag>-<random>")
_OLD_HOST_TAG = hashlib.sha256(_HOST.encode()).hexdigest()[:8]
_log = logging.getLogger("joblite.memory")
_LOAD_HAS_VERIFY = "verify" in inspect.signature(load).parameters
_live_stores: weakref.WeakSet = weakref.WeakSet()


def _flush_all() -> None:
    for store in list(_live_stores):
        store.flush(wait=True)


atexit.register(_flush_all)


def _remove_tree(path: str) -> None:
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


class FileSystemStore(StoreBackendBase):
    """Cache entries as directories on a local (or shared POSIX) filesystem.

    ``backend_options``:

    - ``stale_lock_after`` (seconds, default 3600): a compute lock older than this is broken
      even if its owner cannot be checked (it runs on another host).
    - ``access_flush_interval`` (seconds, default 1.0): how often buffered access records are
      appended to ``access.log``.
    - ``verify`` (default True): check the checksums of large results' data on every load.
      ``False`` loads them at ``np.load`` speed, still checking the container's pickle stream
      and segment table (results under 1 MiB are always fully checked).
    """

    supports_locking = True

    def __init__(self) -> None:
        self.location = ""
        self.verbose = 0
        self._func_dirs: dict[str, str] = {}
        self._pending: list[tuple[str, str, float, bool]] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.stale_lock_after = 3600.0
        self.flush_interval = 1.0
        self.verify = True

    def configure(
        self, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
    ) -> None:
        """Use ``location`` (the ``joblite`` directory itself) and create it."""
        self.location = os.path.abspath(os.fspath(location))
        self.verbose = verbose
        options = dict(backend_options or {})
        self.stale_lock_after = float(options.pop("stale_lock_after", 3600.0))
        self.flush_interval = float(options.pop("access_flush_interval", 1.0))
        self.verify = bool(options.pop("verify", True))
        options.pop("compress", None)
        if options:
            raise ValueError(f"unknown backend_options for the local store: {sorted(options)}")
        os.makedirs(self.location, exist_ok=True)
        _live_stores.add(self)

    def __getstate__(self) -> dict:
        return {
            "location": self.location,
            "verbose": self.verbose,
            "stale_lock_after": self.stale_lock_after,
            "flush_interval": self.flush_interval,
            "verify": self.verify,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]
        self.location = state["location"]
        self.verbose = state["verbose"]
        self.stale_lock_after = state["stale_lock_after"]
        self.flush_interval = state["flush_interval"]
        self.verify = state["verify"]
        _live_stores.add(self)

    # ----------------------------------------------------------------- paths
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

    # ------------------------------------------------------------- entries
    def load_output(self, func_id: str, key: str, mmap_mode: Optional[str] = None) -> Any:
        """The stored result (``KeyError`` if absent)."""
        fdir = self._func_dirs.get(func_id) or self.func_dir(func_id)
        path = f"{fdir}{os.sep}{key[:3]}{os.sep}{key[3:]}{os.sep}{OUTPUT_NAME}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            # one read answers most hits: a small record or container arrives whole
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
            return loads(data)  # one open, one read: the cheapest hit for a container
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
        for attempt in range(3):
            try:
                return self._store_entry_once(func_id, key, output, metadata, compress)
            except FileNotFoundError:
                if attempt == 2:
                    raise
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
        _remove_tree(final)
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
        _remove_tree(self.entry_dir(func_id, key))

    def clear_func(self, func_id: str) -> None:
        """Remove a function's entries, code and access log."""
        self._pending = [p for p in self._pending if p[0] != func_id]
        _remove_tree(self.func_dir(func_id))

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
                _remove_tree(path)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # ---------------------------------------------------------------- code
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

    # -------------------------------------------------------------- access
    def record_access(self, func_id: str, key: str) -> None:
        """Buffer a hit record; appended to the function's access.log now and then."""
        self._pending.append((func_id, key, time.time(), False))
        if len(self._pending) >= 4096 or time.monotonic() - self._last_flush > self.flush_interval:
            self.flush()

    def record_miss(self, func_id: str, key: str, duration: float) -> None:
        """Buffer a miss record (a computation stored in the cache)."""
        self._pending.append((func_id, key, time.time(), True))

    def last_used(self, func_id: str, key: str) -> Optional[float]:
        """When the entry was last written or read (``None`` if absent)."""
        path = os.path.join(self.entry_dir(func_id, key), OUTPUT_NAME)
        try:
            st = os.stat(path)
        except OSError:
            return None
        return max(st.st_atime, st.st_mtime)

    def touch_entry(self, func_id: str, key: str) -> None:
        """Mark the entry as used now (its access time; the modification time is kept)."""
        path = os.path.join(self.entry_dir(func_id, key), OUTPUT_NAME)
        try:
            st = os.stat(path)
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
        except OSError:
            pass

    def flush(self, wait: bool = False) -> None:
        """Append buffered records (best effort: a failure loses only statistics).

        A log being compacted by another process is not waited for (a hit must not stall):
        its records stay buffered until the next flush, unless ``wait`` (at exit).
        """
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_flush = time.monotonic()
        by_func: dict[str, list[str]] = {}
        for func_id, key, when, miss in pending:
            line = f"{key}\t{when:.6f}\t0\t1\n" if miss else f"{key}\t{when:.6f}\n"
            by_func.setdefault(func_id, []).append(line)
        retry: list[tuple[str, str, float, bool]] = []
        for func_id, lines in by_func.items():
            fdir = self.func_dir(func_id)
            size = _append_locked(os.path.join(fdir, ACCESS_LOG), "".join(lines).encode(), wait)
            if size == _BUSY:  # another process is compacting: keep the records for later
                retry.extend(p for p in pending if p[0] == func_id)
            elif size is not None and size > ACCESS_COMPACT_BYTES:
                self._maybe_compact(fdir, size)
        if retry:
            with self._lock:
                self._pending[:0] = retry

    def _read_access(self, func_dir: str) -> dict[str, list]:
        """``{key: [last access, hits, misses, seconds saved, hits not yet priced]}``."""
        try:
            with open(os.path.join(func_dir, ACCESS_LOG), "rb") as f:
                data = f.read()
        except OSError:
            return {}
        return _parse_access(data)

    def _maybe_compact(self, func_dir: str, size: int) -> None:
        """Rewrite a big access log as one line per entry (its size stays bounded).

        Runs when the log is twice its last compacted size, so the cost per record stays
        constant; holds the log's lock, so no concurrent record is lost.
        """
        path = os.path.join(func_dir, ACCESS_LOG)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return
        try:
            base = _compacted_size(os.pread(fd, 64, 0))
            if size < max(ACCESS_COMPACT_BYTES, 2 * base):
                return  # not doubled since the last compaction: nothing to do yet
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return  # compacted by someone else meanwhile
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
            base = _compacted_size(data)
            if len(data) < max(ACCESS_COMPACT_BYTES, 2 * base):
                return
            stats = _parse_access(data)
            folded = stats.pop("*", [0.0, 0, 0, 0.0, 0])
            lines = []
            for key, (last, hits, misses, saved, unpriced) in stats.items():
                try:
                    meta = self._read_metadata(
                        os.path.join(func_dir, key[:3], key[3:], METADATA_NAME), key
                    )
                except (KeyError, CorruptFileError):
                    meta = None
                if meta is None:  # the entry is gone: keep its counts in the total line
                    folded = [
                        max(folded[0], last),
                        folded[1] + hits,
                        folded[2] + misses,
                        folded[3] + saved,
                        folded[4] + unpriced,
                    ]
                    continue
                duration = meta.get("duration")
                if unpriced and isinstance(duration, (int, float)):
                    saved += unpriced * float(duration)
                lines.append(f"{key}\t{last:.6f}\t{hits}\t{misses}\t{saved:.6f}\n")
            if folded[1] or folded[2]:
                lines.append(f"*\t{folded[0]:.6f}\t{folded[1]}\t{folded[2]}\t{folded[3]:.6f}\n")
            body = "".join(lines).encode()
            header = f"#\t{len(body) + 32}\n".encode()
            _files.write_atomic(path, header + body)
        except OSError:
            pass
        finally:
            os.close(fd)

    def access_stats(self, func_id: str) -> dict[str, list]:
        """Per-key hit and miss counts of a function (``"*"``: entries since removed)."""
        self.flush(wait=True)
        return self._read_access(self.func_dir(func_id))

    # ------------------------------------------------------------- listing
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

    def iter_entries(self, func_id: Optional[str] = None) -> Iterator[EntryInfo]:
        """Every complete entry, with size, times and hits."""
        self.flush()
        if func_id is not None:
            targets = [(func_id, self.func_dir(func_id))]
        else:
            targets = list(self._func_dirs_on_disk())
        for fid, fdir in targets:
            access = self._read_access(fdir)
            for prefix, child in _fan_out_children(fdir):
                if child.name.startswith(".") or not child.is_dir():
                    continue
                info = self._entry_info(fid, prefix + child.name, child.path, access)
                if info is not None:
                    yield info

    def _entry_info(
        self, func_id: str, key: str, path: str, access: dict[str, list]
    ) -> Optional[EntryInfo]:
        size = 0
        mtime = 0.0
        has_output = False
        try:
            for f in os.scandir(path):
                st = f.stat()
                size += st.st_size
                mtime = max(mtime, st.st_mtime)
                has_output = has_output or f.name == OUTPUT_NAME
        except OSError:
            return None
        try:
            meta = self._read_metadata(os.path.join(path, METADATA_NAME), key)
            ok = has_output and meta.get("format") == FORMAT_VERSION
        except (KeyError, CorruptFileError):
            meta, ok = {}, False
        created = meta.get("time", mtime)
        created = float(created) if isinstance(created, (int, float)) else mtime
        last, hits, misses, saved, unpriced = access.get(key, (0.0, 0, 0, 0.0, 0))
        duration = meta.get("duration")
        if unpriced and isinstance(duration, (int, float)):
            saved += unpriced * float(duration)
        return EntryInfo(
            func_id=func_id,
            key=key,
            size=size,
            created=created,
            last_access=max(last, created),
            hits=hits,
            duration=float(duration) if isinstance(duration, (int, float)) else None,
            metadata_ok=ok,
            extra={"misses": misses, "time_saved": saved},
        )

    # --------------------------------------------------------------- locks
    def _lock_path(self, func_id: str, key: str) -> str:
        return os.path.join(self.func_dir(func_id), key[:3], key[3:] + ".lock")

    def try_lock(self, func_id: str, key: str) -> Optional[str]:
        """Create the entry's lock file (O_EXCL); break it first if its owner is gone."""
        path = self._lock_path(func_id, key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                continue
            except FileExistsError:
                if self._lock_is_stale(path):
                    _break_lock(path)
                    continue
                return None
            try:
                os.write(fd, f"{os.getpid()} {_HOST} {time.time():.3f}\n".encode())
            finally:
                os.close(fd)
            return path
        return None

    def _lock_is_stale(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                text = f.read(256).decode("utf-8", "replace")
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            return False  # released meanwhile: simply retry later
        if age > self.stale_lock_after:
            return True
        parts = text.split()
        if len(parts) >= 2 and parts[1] == _HOST:
            try:
                return not _files.pid_alive(int(parts[0]))
            except ValueError:
                return age > 5.0
        return False

    def release_lock(self, token: Any) -> None:
        """Remove a lock file this process created."""
        if isinstance(token, str):
            try:
                os.unlink(token)
            except OSError:
                pass

    # ------------------------------------------------------------- cleanup
    def cleanup(self, older_than: float = 60.0) -> int:
        """Remove temporaries and stale locks left by interrupted or killed writers."""
        removed = 0
        now = time.time()
        for _, fdir in list(self._func_dirs_on_disk()):
            try:
                writing = list(os.scandir(os.path.join(fdir, TMP_DIR)))
            except OSError:
                writing = []
            for _prefix, child in [("", c) for c in writing] + list(_fan_out_children(fdir)):
                name = child.name
                if name.endswith(".lock"):
                    if self._lock_is_stale(child.path):
                        _break_lock(child.path)
                        removed += 1
                    continue
                if not name.startswith((".tmp-", ".trash-")) and not name.endswith(
                    _files.TEMP_SUFFIX
                ):
                    continue
                if not self._leftover_is_dead(name, child, now, older_than):
                    continue
                if child.is_dir():
                    shutil.rmtree(child.path, ignore_errors=True)
                else:
                    try:
                        os.unlink(child.path)
                    except OSError:
                        continue
                removed += 1
        return removed

    @staticmethod
    def _leftover_is_dead(name: str, entry: os.DirEntry, now: float, older_than: float) -> bool:
        # a writer of this host that died cannot finish, and one that runs is left alone
        # however long it takes
        owner = _files.temp_owner(name)
        if owner is not None and owner[1] == _files.HOST_TAG:
            return owner[0] != os.getpid() and not _files.pid_alive(owner[0])
        # ".tmp-<key>-<pid>-<host>-<random>": the entry folders of joblite 0.1
        parts = name.split("-")
        if name.startswith(".tmp-") and len(parts) >= 4 and parts[2].isdigit():
            if len(parts) < 5 or parts[3] == _OLD_HOST_TAG:
                return not _files.pid_alive(int(parts[2]))
        if name.startswith(".trash-"):
            return True
        try:
            return now - entry.stat().st_mtime > older_than
        except OSError:
            return False


_BUSY = -1


def _append_locked(path: str, data: bytes, wait: bool = True) -> Optional[int]:
    """Append to a file under its lock (the compactor replaces it): the size after, ``None``
    on failure, or ``_BUSY`` when the lock is held and ``wait`` is false."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return _BUSY
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            if os.fstat(fd).st_ino != current:
                continue  # replaced by a compaction while we waited: append to the new one
            os.write(fd, data)
            return os.fstat(fd).st_size
        except OSError:
            return None
        finally:
            os.close(fd)
    return None


def _compacted_size(data: bytes) -> int:
    """The size recorded by the last compaction (the log's first line), or 0."""
    if data.startswith(b"#\t"):
        try:
            return int(data[2 : data.index(b"\n")])
        except ValueError:
            return 0
    return 0


def _parse_access(data: bytes) -> dict[str, list]:
    """Access-log lines: ``key time`` (a hit), ``key time hits misses`` (``0 1``: a miss),
    ``key last hits misses saved`` (compacted); ``*`` is the total of removed entries."""
    out: dict[str, list] = {}
    for raw in data.split(b"\n"):
        parts = raw.split(b"\t")
        if len(parts) < 2 or parts[0] == b"#":
            continue
        try:
            key = parts[0].decode()
            when = float(parts[1])
            hits = int(parts[2]) if len(parts) > 2 else 1
            misses = int(parts[3]) if len(parts) > 3 else 0
            saved = float(parts[4]) if len(parts) > 4 else 0.0
        except (ValueError, UnicodeDecodeError):
            continue  # a line torn by a crash
        unpriced = 0 if len(parts) > 4 else hits
        rec = out.get(key)
        if rec is None:
            out[key] = [when, hits, misses, saved, unpriced]
        else:
            rec[0] = max(rec[0], when)
            rec[1] += hits
            rec[2] += misses
            rec[3] += saved
            rec[4] += unpriced
    return out


def _break_lock(path: str) -> None:
    # rename first so that only one of several breakers removes this very lock file
    stale = f"{path}.stale-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(path, stale)
        os.unlink(stale)
    except OSError:
        pass


def _fan_out_children(func_dir: str) -> Iterator[tuple[str, os.DirEntry]]:
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
