"""The local store's cleanup: what interrupted or killed writers left (temporary entry
folders, trash of removed entries) and stale locks."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

from ... import _files
from .layout import TMP_DIR, fan_out_children
from .locks import _HOST, LocalLocks, break_lock

# the tag joblite 0.1 put in entry temp folders (".tmp-<key>-<pid>-<tag>-<random>")
_OLD_HOST_TAG = hashlib.sha256(_HOST.encode()).hexdigest()[:8]


class LocalCleanup(LocalLocks):
    """Removal of leftovers in the local store."""

    def cleanup(self, older_than: float = 60.0) -> int:
        """Remove temporaries and stale locks left by interrupted or killed writers."""
        removed = 0
        now = time.time()
        for _, fdir in list(self._func_dirs_on_disk()):
            try:
                writing = list(os.scandir(os.path.join(fdir, TMP_DIR)))
            except OSError:
                writing = []
            for _prefix, child in [("", c) for c in writing] + list(fan_out_children(fdir)):
                name = child.name
                if name.endswith(".lock"):
                    stale = self._stale_lock(child.path)
                    if stale is not None:
                        break_lock(child.path, stale)
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
