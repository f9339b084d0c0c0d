"""Cache statistics: hits, misses, time saved and bytes, per function and in total.

Counts come from the store's access records, which every process that uses the cache writes
(worker processes included, flushed after each call), so they are exact across processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CacheStats", "FunctionStats", "collect_stats"]


@dataclass
class FunctionStats:
    """The statistics of one cached function.

    Attributes
    ----------
    func_id : str
        ``"<module>/<qualname>"`` of the function in the store.
    hits : int
        Calls served from the cache.
    misses : int
        Calls computed and stored.
    entries : int
        Entries in the cache now.
    bytes : int
        Bytes the entries take on the store.
    time_saved : float
        Seconds of computation the hits avoided (each hit counts its entry's duration).
    """

    func_id: str
    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0
    time_saved: float = 0.0


@dataclass
class CacheStats:
    """The statistics of a whole cache (:meth:`joblite.Memory.stats`).

    Attributes
    ----------
    hits, misses, entries, bytes : int
        Totals over every function.
    time_saved : float
        Seconds of computation avoided by hits, in total.
    functions : dict of str to FunctionStats
        Per function, keyed by ``func_id``.
    """

    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0
    time_saved: float = 0.0
    functions: dict[str, FunctionStats] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)`` (0.0 before any call)."""
        calls = self.hits + self.misses
        return self.hits / calls if calls else 0.0


def collect_stats(store: Any) -> CacheStats:
    """Scan a store and add up its records (a full listing: meant for reporting)."""
    store.flush()
    total = CacheStats()
    durations: dict[tuple[str, str], float] = {}
    access_stats = getattr(store, "access_stats", None)
    for e in store.iter_entries():
        fs = total.functions.get(e.func_id)
        if fs is None:
            fs = total.functions[e.func_id] = FunctionStats(e.func_id)
        fs.entries += 1
        fs.bytes += e.size
        durations[(e.func_id, e.key)] = e.duration or 0.0
        if access_stats is None:  # a store without per-key records: what the listing says
            fs.hits += e.hits
            fs.time_saved += e.hits * (e.duration or 0.0)
    if access_stats is not None:
        for func_id in list(getattr(store, "list_functions", lambda: [])()):
            records = access_stats(func_id)
            if not records:
                continue
            fs = total.functions.get(func_id)
            if fs is None:
                fs = total.functions[func_id] = FunctionStats(func_id)
            for key, (_last, hits, misses, saved, unpriced) in records.items():
                fs.hits += hits
                fs.misses += misses
                fs.time_saved += saved + unpriced * durations.get((func_id, key), 0.0)
    for fs in total.functions.values():
        total.hits += fs.hits
        total.misses += fs.misses
        total.entries += fs.entries
        total.bytes += fs.bytes
        total.time_saved += fs.time_saved
    return total
