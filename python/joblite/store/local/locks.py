"""The local store's compute-once locks: one lock file per entry being computed, created with
``O_EXCL``, broken when its owner (a process of this host that no longer runs, or any owner
after ``stale_lock_after``) cannot finish."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Optional

from ... import _files
from .layout import LocalLayout

_HOST = socket.gethostname()


class LocalLocks(LocalLayout):
    """Compute-once locks of the local store."""

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
                    break_lock(path)
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


def break_lock(path: str) -> None:
    # rename first so that only one of several breakers removes this very lock file
    stale = f"{path}.stale-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(path, stale)
        os.unlink(stale)
    except OSError:
        pass
