"""The local filesystem store: one directory per entry, published atomically by a rename.

One module a job: ``layout`` (paths, writing and publishing entries, reading them back),
``access`` (the access log and entry listing), ``locks`` (compute-once locks), ``cleanup``
(leftovers of killed writers). The layout is described in :mod:`.layout`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional

from ... import _fork
from .access import ACCESS_COMPACT_BYTES, LocalAccess, live_stores
from .cleanup import LocalCleanup
from .layout import (
    ACCESS_LOG,
    CODE_NAME,
    FORMAT_VERSION,
    METADATA_NAME,
    OUTPUT_NAME,
    SMALL_RESULT,
    TMP_DIR,
)

__all__ = [
    "ACCESS_COMPACT_BYTES",
    "ACCESS_LOG",
    "CODE_NAME",
    "FORMAT_VERSION",
    "METADATA_NAME",
    "OUTPUT_NAME",
    "SMALL_RESULT",
    "TMP_DIR",
    "FileSystemStore",
]


class FileSystemStore(LocalCleanup, LocalAccess):
    """Cache entries as directories on a local (or shared POSIX) filesystem.

    ``backend_options``:

    - ``stale_lock_after`` (seconds, default 3600): a compute lock older than this is broken
      even if its owner cannot be checked (it runs on another host).
    - ``access_flush_interval`` (seconds, default 1.0): how often buffered access records are
      appended to ``access.log``.
    - ``verify`` (default True): check the checksums of large results' data on every load.
      ``False`` loads them at ``np.load`` speed, still checking the dump's index and pickle
      stream (results under 1 MiB are always fully checked).
    """

    supports_locking = True

    def __init__(self) -> None:
        self.location = ""
        self.verbose = 0
        self._func_dirs = {}
        self._pending = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        _fork.renew_in_child(self, "_lock")  # held by a thread at a fork
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
        live_stores.add(self)

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
        live_stores.add(self)
