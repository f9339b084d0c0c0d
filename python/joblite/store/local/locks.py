"""The local store's compute-once locks: one lock file per entry being computed, created with
``O_EXCL``, broken when its owner (a process of this host that no longer runs, or any owner
after ``stale_lock_after``) cannot finish."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from typing import Any, Optional

from ... import _files
from .layout import LocalLayout

_HOST = socket.gethostname()
#: lock files this process holds, by (device, inode), counted (an owner pid equal to ours on
#: any other lock file is a previous process that had our pid: a restarted container's, say).
#: A count, not a set: a released lock's inode can be reused at once by the next lock file.
_held: Counter[tuple[int, int]] = Counter()
_held_lock = threading.Lock()


def _start_marker(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, with the boot's id), or ``"-"``
    where ``/proc`` cannot say: a live process with the pid of a lock's dead owner (pids are
    reused, soon in a container) started at another time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(1024)
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read(64).strip()
    except OSError:
        return "-"
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return "-"
    return f"{fields[19].decode('ascii', 'replace')}@{boot[:8].decode('ascii', 'replace')}"


_markers: dict[int, str] = {}


def _own_marker() -> str:
    """This process's start marker (computed once per process: a forked child has its own)."""
    pid = os.getpid()
    marker = _markers.get(pid)
    if marker is None:
        marker = _markers[pid] = _start_marker(pid)
    return marker


def _after_fork() -> None:
    # a lock held by another thread at the fork would stay locked in the child forever
    global _held, _held_lock
    _held = Counter()
    _held_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _hold(st: os.stat_result) -> tuple[int, int]:
    ident = (st.st_dev, st.st_ino)
    with _held_lock:
        _held[ident] += 1
    return ident


def _unhold(ident: tuple[int, int]) -> None:
    with _held_lock:
        if _held[ident] <= 1:
            del _held[ident]
        else:
            _held[ident] -= 1


def _create_whole(path: str, content: bytes) -> os.stat_result:
    """Create ``path`` holding ``content``, never visible without it; ``FileExistsError``
    when it exists. Where the file system has no hard links, ``O_EXCL`` then a write.

    The file is counted among this process's locks (``_held``) *before* it can be seen under
    its name: another thread of this process that finds it must never take our pid in it
    for a previous process's and break it (the lock would then be taken twice).
    """
    tmp = _files.temp_name(path)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        try:
            os.write(fd, content)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        ident = _hold(st)
        try:
            os.link(tmp, path)
            return st
        except FileExistsError:
            _unhold(ident)
            raise
        except OSError:  # no hard links here (some network and FUSE file systems)
            _unhold(ident)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        st = os.fstat(fd)
        _hold(st)  # before the owner is written: an empty lock file is never judged ours
        os.write(fd, content)
        return os.fstat(fd)
    finally:
        os.close(fd)


class LocalLocks(LocalLayout):
    """Compute-once locks of the local store."""

    def _lock_path(self, func_id: str, key: str) -> str:
        return os.path.join(self.func_dir(func_id), key[:3], key[3:] + ".lock")

    def try_lock(self, func_id: str, key: str) -> Optional[str]:
        """Create the entry's lock file; break it first if its owner is gone.

        The lock is written whole under a temporary name, then linked to its name (a link,
        like ``O_EXCL``, fails when the name exists): a writer killed at any instant leaves
        no lock without its owner in it, which nobody could tell from a live one's.
        """
        path = self._lock_path(func_id, key)
        owner = f"{os.getpid()} {_HOST} {time.time():.3f} {_own_marker()}\n".encode()
        for _ in range(3):
            try:
                _create_whole(path, owner)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                continue
            except FileExistsError:
                if self._lock_is_stale(path):
                    break_lock(path)
                    continue
                return None
            return path  # counted in _held by _create_whole: the file, however it is spelled
        return None

    def _lock_is_stale(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                text = f.read(256).decode("utf-8", "replace")
            st = os.stat(path)
            age = time.time() - st.st_mtime
        except OSError:
            return False  # released meanwhile: simply retry later
        if age > self.stale_lock_after:
            return True
        parts = text.split()
        if not parts:  # no owner written (joblite before 0.2, or a file system that lost it)
            return age > 5.0
        if len(parts) >= 2 and parts[1] == _HOST:
            try:
                pid = int(parts[0])
            except ValueError:
                return age > 5.0
            if pid == os.getpid():
                # ours only if this process took it; otherwise a previous process with our
                # pid (a restarted container) died holding it: waiting would wait on itself
                with _held_lock:
                    return _held[(st.st_dev, st.st_ino)] == 0
            if not _files.pid_alive(pid):
                return True
            if len(parts) >= 4 and parts[3] != "-":
                # the pid runs, but is it the process that took the lock? (pid reuse)
                now = _start_marker(pid)
                return now != "-" and now != parts[3]
            return False
        return False

    def release_lock(self, token: Any) -> None:
        """Remove a lock file this process created."""
        if isinstance(token, str):
            # removed while still counted as ours, so that no thread of this process can take
            # it for a dead process's lock and break it meanwhile (whose next lock we would
            # then remove here)
            try:
                st = os.stat(token)
            except OSError:
                return
            try:
                os.unlink(token)
            except OSError:
                pass
            _unhold((st.st_dev, st.st_ino))


def break_lock(path: str) -> None:
    # rename first so that only one of several breakers removes this very lock file
    stale = f"{path}.stale-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(path, stale)
        os.unlink(stale)
    except OSError:
        pass
