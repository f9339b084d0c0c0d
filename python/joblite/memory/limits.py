"""Size, count and age limits of a Memory, enforced without scanning the store on every call."""

from __future__ import annotations

import time
from typing import Any, Optional

__all__ = ["LimitKeeper"]


class LimitKeeper:
    """Enforces a Memory's limits after writes, and its age limit on reads.

    The first write of a process scans once; afterwards the bytes and items written since are
    added to the last scan's totals and a new scan (with eviction down to 90% of the limits,
    so scans stay rare) runs only when an estimate crosses a limit, or now and then to see other
    processes' writes. An entry not used for longer than ``age_limit`` is a miss when read
    (see :meth:`expired`), whether or not a scan has removed it yet.
    """

    def __init__(
        self,
        store: Any,
        bytes_limit: Optional[int],
        items_limit: Optional[int],
        age_limit: Optional[float],
    ) -> None:
        self.store = store
        self.bytes_limit = bytes_limit
        self.items_limit = items_limit
        self.age_limit = age_limit
        self.active = store is not None and not (
            bytes_limit is None and items_limit is None and age_limit is None
        )
        self.known_bytes: Optional[int] = None
        self.known_items = 0
        self.last_scan = 0.0
        self.scan_cost = 0.0
        self.scans = 0

    def expired(self, func_id: str, key: str, touch: bool = True) -> bool:
        """Whether an entry read now is past the age limit (and must be recomputed).

        A fresh entry is marked as used (unless ``touch`` is false: a question about the
        entry is not a use), so its age counts from this read.
        """
        if self.age_limit is None or self.store is None:
            return False
        last_used = getattr(self.store, "last_used", None)
        if last_used is None:
            return False
        when = last_used(func_id, key)
        if when is None:
            return False
        if time.time() - when > self.age_limit:
            return True
        touch_entry = getattr(self.store, "touch_entry", None) if touch else None
        if touch_entry is not None:
            touch_entry(func_id, key)
        return False

    def after_write(self, nbytes: int) -> None:
        """Account for one new entry; scan and evict when an estimate crosses a limit."""
        if not self.active:
            return
        now = time.monotonic()
        if self.known_bytes is None:
            due = True
        else:
            self.known_bytes += nbytes
            self.known_items += 1
            due = (
                (self.bytes_limit is not None and self.known_bytes > self.bytes_limit)
                or (self.items_limit is not None and self.known_items > self.items_limit)
                or (
                    self.age_limit is not None
                    and now - self.last_scan > max(1.0, self.age_limit / 4)
                )
                or now - self.last_scan > max(60.0, 20 * self.scan_cost)
            )
        if due:
            self.enforce()

    def enforce(self) -> None:
        """Scan the store and evict down to 90% of the limits."""
        start = time.monotonic()
        b = self.bytes_limit
        n = self.items_limit
        _, kept = self.store.reduce_size(
            None if b is None else b - b // 10,
            None if n is None else n - n // 10,
            self.age_limit,
        )
        self.known_bytes = sum(e.size for e in kept)
        self.known_items = len(kept)
        self.last_scan = time.monotonic()
        self.scan_cost = self.last_scan - start
        self.scans += 1
