"""Crash-safe file writing, shared by persistence and the stores: temporary names that carry
the writer's pid and host, write-then-rename with fsync, the sweep of what dead writers left,
errors that name the user's path, and the size and age arguments of cache limits.

Every temporary file or folder joblite creates is named
``.<name>.<random>.<pid>-<host>.joblite-tmp`` (``<host>``: 8 hex digits of the host's name):
any process of the same host can tell whether its writer still runs, so a leftover of a
killed writer is removed by the next writer into that folder, and the file of a writer that
is still at work is never touched.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
import shutil
import socket
import uuid
from typing import Optional, Union

__all__ = [
    "HOST_TAG",
    "TEMP_SUFFIX",
    "fsync_dir",
    "parse_age",
    "parse_bytes",
    "pid_alive",
    "sweep_dead_temps",
    "temp_name",
    "temp_owner",
    "user_path_error",
    "write_atomic",
]

# dump is the main writer; the stores pass their own logger
_log = logging.getLogger("joblite.persistence")

#: the ending of every temporary file or folder name joblite creates
TEMP_SUFFIX = ".joblite-tmp"
#: this host, as written into temporary names (a pid means something only on its own host)
HOST_TAG = hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()
_TEMP_RE = re.compile(r"^\..*\.[0-9a-f]{8}\.(\d+)-([0-9a-f]{8})" + re.escape(TEMP_SUFFIX) + "$")


def temp_name(path: str) -> str:
    """A fresh temporary name beside ``path`` (same folder: the rename stays atomic)."""
    head, tail = os.path.split(path)
    unique = f"{uuid.uuid4().hex[:8]}.{os.getpid()}-{HOST_TAG}"
    return os.path.join(head, f".{tail[:80]}.{unique}{TEMP_SUFFIX}")


def temp_owner(name: str) -> Optional[tuple[int, str]]:
    """``(pid, host tag)`` of the writer of the temporary ``name`` (a base name), or None
    when ``name`` is not one of joblite's temporary names."""
    m = _TEMP_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie, killed but not reaped,
    does not; another user's process does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
    except OSError:
        return True  # no /proc (macOS): trust kill()
    # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces or parens)
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3] not in (b"Z", b"X")


def writer_is_dead(name: str) -> bool:
    """Whether ``name`` is a temporary name of this host whose writer no longer runs."""
    owner = temp_owner(name)
    if owner is None or owner[1] != HOST_TAG:
        return False
    pid = owner[0]
    return pid != os.getpid() and not pid_alive(pid)


def user_path_error(exc: OSError, path: str) -> OSError:
    """``exc``, raised while writing a temporary file for ``path``, as an error about ``path``.

    The user never asked for the temporary file: the error names the path they gave, and
    keeps its type and errno (``ENOSPC`` for a full disk, ``EACCES``, ...).
    """
    if exc.errno is None:
        out = OSError(f"{path}: {exc}")
    else:
        # OSError(errno, ...) picks the subclass (PermissionError, FileNotFoundError, ...)
        out = OSError(exc.errno, exc.strerror or os.strerror(exc.errno), path)
    out.__cause__ = None
    return out


def fsync_dir(directory: str) -> None:
    """Flush ``directory`` (the names in it, after a rename) to the device; POSIX only,
    best effort."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_temp(path: str) -> str:
    """Create an empty temporary file for ``path`` (``O_EXCL``, mode 0o666 less the umask, as
    ``open`` would) and return its name; errors name ``path``."""
    tmp = temp_name(path)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        os.close(os.open(tmp, flags, 0o666))
    except OSError as exc:
        raise user_path_error(exc, path) from None
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def publish(tmp: str, path: str, fsync: bool) -> None:
    """Rename the complete temporary file ``tmp`` over ``path``, then flush the folder (when
    ``fsync``) and sweep what dead writers left in it. ``tmp`` is removed on failure."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise user_path_error(exc, path) from None
    directory = os.path.dirname(os.path.abspath(path))
    if fsync:
        fsync_dir(directory)
    sweep_dead_temps(directory)


def write_atomic(path: str, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file, no file or
    all of the new one: a temporary file in the same folder, renamed into place. With
    ``fsync`` the file and the folder are flushed to the device (a power loss too)."""
    tmp = create_temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    except BaseException as exc:
        _unlink(tmp)
        if isinstance(exc, OSError):
            raise user_path_error(exc, path) from None
        raise
    publish(tmp, path, fsync)


# folders this process has swept clean (one listing each, not one per write: a folder of 100k
# files would otherwise cost a directory scan on every write into it)
_SWEPT: set[str] = set()
_SWEPT_MAX = 4096


def sweep_dead_temps(
    directory: str, force: bool = False, log: Optional[logging.Logger] = None
) -> list[str]:
    """Remove the temporary files and folders that killed writers left in ``directory``.

    Only names of this host's temporary files (:func:`temp_name`) whose writing process no
    longer runs are removed: a write in progress, in any process, is never touched. A folder
    is scanned once per process (unless ``force``), and again only while it still holds
    another live writer's temporary file. POSIX only.

    Returns
    -------
    list of str
        The paths removed.
    """
    removed: list[str] = []
    if os.name != "posix" or (directory in _SWEPT and not force):
        return removed
    try:
        entries = list(os.scandir(directory or "."))
    except OSError:
        return removed
    me = os.getpid()
    in_use = False
    for entry in entries:
        if not entry.name.endswith(TEMP_SUFFIX):
            continue
        owner = temp_owner(entry.name)
        if owner is None or owner[1] != HOST_TAG:
            continue
        pid = owner[0]
        if pid == me or pid_alive(pid):
            in_use = in_use or pid != me
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.path)
    if removed:  # one record per sweep (logging only: nothing here prints)
        (log or _log).info(
            "removed %d temporary file(s) left by interrupted writers in %s",
            len(removed),
            directory or ".",
        )
    if not in_use:
        if len(_SWEPT) >= _SWEPT_MAX:  # bounded: Memory writes each entry in a new folder
            _SWEPT.clear()
        _SWEPT.add(directory)
    return removed


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_bytes(value: Union[int, str, None]) -> Optional[int]:
    """``1024``, ``"10M"``, ``"1.5G"`` -> bytes (powers of 1024, like joblib); ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"bytes_limit must be an int or a string like '1G', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bytes_limit must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        for suffix in ("IB", "B"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        unit = text[-1:] if text[-1:] in _UNITS else ""
        number = text[: len(text) - len(unit)]
        try:
            amount = float(number)
        except ValueError:
            raise ValueError(
                f"bytes_limit {value!r} is not a size (expected e.g. 1000000, '500M', '2G')"
            ) from None
        if amount < 0 or amount != amount:
            raise ValueError(f"bytes_limit must be >= 0, got {value!r}")
        return int(amount * _UNITS[unit])
    raise TypeError(f"bytes_limit must be an int or a string like '1G', got {value!r}")


def parse_age(value: Union[datetime.timedelta, float, int, str, None]) -> Optional[float]:
    """A ``timedelta``, a number of seconds or a string like ``"90s"``, ``"12h"``, ``"7d"``
    (units s, m, h, d, w) -> seconds; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        factor = _AGE_UNITS.get(text[-1:])
        number = text[:-1] if factor is not None else text
        try:
            seconds = float(number) * (factor or 1)
        except ValueError:
            raise ValueError(
                f"age_limit {value!r} is not an age: use seconds or a number with "
                "s/m/h/d/w, e.g. '7d'"
            ) from None
    else:
        raise TypeError(f"age_limit must be a datetime.timedelta or seconds, got {value!r}")
    if not seconds >= 0:
        raise ValueError(f"age_limit must not be negative, got {value!r}")
    return seconds
