"""The local store's access log: hit and miss records appended to each function's
``access.log`` under a lock, compacted when it grows, and read back as per-entry statistics
(LRU order for ``reduce_size``, hits and time saved for ``Memory.stats``)."""

from __future__ import annotations

import atexit
import fcntl
import os
import time
import weakref
from collections.abc import Iterator
from typing import Optional

from ... import _files
from ...exceptions import CorruptFileError
from ..base import EntryInfo
from .layout import (
    ACCESS_LOG,
    FORMAT_VERSION,
    METADATA_NAME,
    OUTPUT_NAME,
    LocalLayout,
    fan_out_children,
)

#: compact a function's access log once it is this big and twice its last compacted size
ACCESS_COMPACT_BYTES = 64 * 1024

live_stores: weakref.WeakSet = weakref.WeakSet()


def _flush_all() -> None:
    for store in list(live_stores):
        store.flush(wait=True)


atexit.register(_flush_all)


class LocalAccess(LocalLayout):
    """Access records of the local store, and the entry listing that reports them."""

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

    def iter_entries(self, func_id: Optional[str] = None) -> Iterator[EntryInfo]:
        """Every complete entry, with size, times and hits."""
        self.flush()
        if func_id is not None:
            targets = [(func_id, self.func_dir(func_id))]
        else:
            targets = list(self._func_dirs_on_disk())
        for fid, fdir in targets:
            access = self._read_access(fdir)
            for prefix, child in fan_out_children(fdir):
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
