"""The local store's compute-once locks: one lock file per entry being computed, created with
``O_EXCL``, broken when its owner (a process of this host that no longer runs, or any owner
after ``stale_lock_after``) cannot finish."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from typing import Any, NamedTuple, Optional

from ... import _files
from .layout import LocalLayout

_HOST = socket.gethostname()
#: lock files this process holds, by (device, inode), counted (an owner pid equal to ours on
#: any other lock file is a previous process that had our pid: a restarted container's, say).
#: A count, not a set: a released lock's inode can be reused at once by the next lock file.
_held: Counter[tuple[int, int]] = Counter()
_held_lock = threading.Lock()


#: which lock file was looked at: (device, inode, mtime in ns, the owner it names). An inode
#: alone is not enough: a lock broken or released frees its inode, which the next lock file
#: created (a moment later, by any caller) often gets.
Seen = tuple[int, int, int, bytes]
#: how much of a lock file's owner is read (and compared)
_OWNER_READ = 256


class LockToken(NamedTuple):
    """A compute lock this process holds: its file's name and which file that was (a lock
    broken meanwhile and taken by another caller has the same name, another file)."""

    path: str
    seen: Seen


def _look(f: Any) -> tuple[os.stat_result, Seen]:
    """The status and identity of the open lock file ``f``."""
    st = os.fstat(f.fileno())
    return st, (st.st_dev, st.st_ino, st.st_mtime_ns, f.read(_OWNER_READ))


def _seen_at(path: str) -> Optional[Seen]:
    """The identity of the lock file at ``path`` now, ``None`` when there is none."""
    try:
        with open(path, "rb") as f:
            return _look(f)[1]
    except OSError:
        return None


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

    def try_lock(self, func_id: str, key: str) -> Optional[LockToken]:
        """Create the entry's lock file; break it first if its owner is gone.

        The lock is written whole under a temporary name, then linked to its name (a link,
        like ``O_EXCL``, fails when the name exists): a writer killed at any instant leaves
        no lock without its owner in it, which nobody could tell from a live one's.
        """
        path = self._lock_path(func_id, key)
        owner = f"{os.getpid()} {_HOST} {time.time():.3f} {_own_marker()}\n".encode()
        for _ in range(3):
            try:
                st = _create_whole(path, owner)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                continue
            except FileExistsError:
                stale = self._stale_lock(path)
                if stale is not None:
                    break_lock(path, stale)
                    continue
                return None
            # counted in _held by _create_whole: the file, however it is spelled
            return LockToken(path, (st.st_dev, st.st_ino, st.st_mtime_ns, owner[:_OWNER_READ]))
        return None

    def _stale_lock(self, path: str) -> Optional[Seen]:
        """Which file the lock at ``path`` is (:data:`Seen`) when its owner cannot finish
        it, else ``None``. The owner is read from the very file identified (opened once):
        the name may meanwhile be released and taken by a live caller."""
        try:
            with open(path, "rb") as f:
                st, seen = _look(f)
                gone = self._owner_is_gone(seen[3].decode("utf-8", "replace"), st, f.fileno())
        except OSError:
            return None  # released meanwhile: simply retry later
        return seen if gone else None

    def _owner_is_gone(self, text: str, st: os.stat_result, fd: int) -> bool:
        age = time.time() - st.st_mtime
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
                # pid (a restarted container) died holding it: waiting would wait on itself.
                # A thread of ours removes its lock before it stops counting it: one no longer
                # counted but still linked was never ours.
                with _held_lock:
                    if _held[(st.st_dev, st.st_ino)]:
                        return False
                return os.fstat(fd).st_nlink > 0
            if not _files.pid_alive(pid):
                return True
            if len(parts) >= 4 and parts[3] != "-":
                # the pid runs, but is it the process that took the lock? (pid reuse)
                now = _start_marker(pid)
                return now != "-" and now != parts[3]
            return False
        return False

    def release_lock(self, token: Any) -> None:
        """Remove a lock file this process created (not the lock of another caller that
        broke ours as stale and took the entry meanwhile)."""
        if isinstance(token, LockToken):
            # removed while still counted as ours, so that no thread of this process can take
            # it for a dead process's lock and break it meanwhile (whose next lock we would
            # then remove here)
            now = _seen_at(token.path)
            # the time is not compared: our own fstat while writing may differ from what a
            # network file system reports once the file is closed
            if now is not None and (now[:2], now[3]) == (token.seen[:2], token.seen[3]):
                try:
                    os.unlink(token.path)
                except OSError:
                    pass
            _unhold(token.seen[:2])


def break_lock(path: str, seen: Seen) -> None:
    """Remove the lock file at ``path`` if it is still the file judged stale (``seen``),
    never a live caller's lock that replaced it meanwhile (another caller that judged the
    same stale lock broke it first and took the entry)."""
    # renamed first so that only one of several breakers removes this very lock file, and
    # so that the file removed is the one looked at
    stale = f"{path}.stale-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(path, stale)
    except OSError:
        return
    if _seen_at(stale) != seen:
        _put_back(stale, path)
        return
    try:
        os.unlink(stale)
    except OSError:
        pass


def _put_back(stale: str, path: str) -> None:
    """Give back the live lock ``break_lock`` took by mistake, unless yet another caller
    locked the entry in the instant it was away (then two callers compute, as they would
    without compute-once; never a wrong value)."""
    try:
        try:
            os.link(stale, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here: a rename (replaces nothing: looked just before)
            if not os.path.lexists(path):
                os.rename(stale, path)
                return
        os.unlink(stale)
    except OSError:
        pass
