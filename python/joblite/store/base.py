"""The store interface: what Memory asks of the place where cache entries live."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from .._files import parse_age, parse_bytes

__all__ = [
    "ClearedWhileStoring",
    "EntryInfo",
    "StoreBackendBase",
    "parse_age",
    "parse_bytes",
    "parse_metadata",
    "select_for_removal",
]


class ClearedWhileStoring(FileNotFoundError):
    """A store kept losing the entry it was writing to a concurrent ``clear`` (another
    process clearing the cache in a loop): the result is returned and not cached, which is
    what a clear just after the write would have left, so it is no failure worth a warning."""


@dataclass
class EntryInfo:
    """One cache entry as a store describes it (for eviction and the ``cache`` CLI).

    Attributes
    ----------
    func_id : str
        ``"<module>/<qualname>"`` of the cached function.
    key : str
        The argument hash of the call.
    size : int
        Bytes the entry takes on the store.
    created : float
        When the result was stored (unix time).
    last_access : float
        When the entry was last written or read (unix time), as far as it is tracked.
    hits : int
        Reads recorded for this entry (0 when not tracked).
    duration : float or None
        How long the computation took, from the metadata.
    metadata_ok : bool
        ``False`` when the entry's metadata is missing or unreadable.
    """

    func_id: str
    key: str
    size: int
    created: float
    last_access: float
    hits: int = 0
    duration: Optional[float] = None
    metadata_ok: bool = True
    extra: dict = field(default_factory=dict)


def parse_metadata(raw: bytes, path: str) -> dict:
    """An entry's metadata from the bytes of its JSON file; ``CorruptFileError`` if unreadable."""
    from ..exceptions import CorruptFileError

    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CorruptFileError(path, f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CorruptFileError(path, "metadata is not a JSON object")
    return meta


def select_for_removal(
    entries: Iterable[EntryInfo],
    bytes_limit: Optional[int] = None,
    items_limit: Optional[int] = None,
    age_limit: Optional[float] = None,
    now: Optional[float] = None,
) -> list[EntryInfo]:
    """The entries to remove so the rest meets the limits, least recently used first."""
    now = time.time() if now is None else now
    by_age = sorted(entries, key=lambda e: e.last_access)
    remove = []
    keep = []
    for e in by_age:
        if age_limit is not None and now - e.last_access > age_limit:
            remove.append(e)
        else:
            keep.append(e)
    total = sum(e.size for e in keep)
    count = len(keep)
    i = 0
    while i < len(keep) and (
        (bytes_limit is not None and total > bytes_limit)
        or (items_limit is not None and count > items_limit)
    ):
        remove.append(keep[i])
        total -= keep[i].size
        count -= 1
        i += 1
    return remove


class StoreBackendBase(ABC):
    """Where cache entries live. Subclass it and pass it to :func:`register_store_backend`.

    An entry is addressed by ``func_id`` (``"<module>/<qualname>"``) and ``key`` (the argument
    hash, a short hexadecimal string). A store must make each entry appear atomically: a reader
    sees a complete entry or none. Methods that read an entry raise ``KeyError`` when it is
    absent; any other exception from :meth:`load_output` means the entry is corrupt (Memory
    warns, recomputes and replaces it).

    The locking methods are optional: a store that does not support them leaves
    :attr:`supports_locking` ``False`` and Memory's compute-once mode is off for it.
    """

    #: whether :meth:`try_lock` / :meth:`release_lock` give real mutual exclusion
    supports_locking: bool = False
    #: the store's root (for display)
    location: str = ""

    @abstractmethod
    def configure(
        self, location: Any, verbose: int = 0, backend_options: Optional[dict] = None
    ) -> None:
        """Attach the store to ``location`` (create it if needed)."""

    @abstractmethod
    def load_output(self, func_id: str, key: str, mmap_mode: Optional[str] = None) -> Any:
        """The stored result; ``KeyError`` if absent, any other exception if corrupt."""

    @abstractmethod
    def store_entry(
        self, func_id: str, key: str, output: Any, metadata: dict, compress: Any = False
    ) -> dict:
        """Store ``output`` and ``metadata`` atomically (replacing an existing entry).

        Returns the metadata as stored. On any error nothing of the entry stays visible.
        """

    @abstractmethod
    def contains_entry(self, func_id: str, key: str) -> bool:
        """Whether a complete entry exists."""

    @abstractmethod
    def load_metadata(self, func_id: str, key: str) -> dict:
        """The entry's metadata; ``KeyError`` if absent, ``CorruptFileError`` if unreadable."""

    @abstractmethod
    def clear_entry(self, func_id: str, key: str) -> None:
        """Remove one entry (no error if it is absent)."""

    @abstractmethod
    def clear_func(self, func_id: str) -> None:
        """Remove every entry of one function (and its stored code)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove everything under the store's location."""

    @abstractmethod
    def load_func_code(self, func_id: str) -> Optional[str]:
        """The code text stored for a function, or ``None``."""

    @abstractmethod
    def store_func_code(self, func_id: str, code: str) -> None:
        """Store a function's code text (for invalidation when it changes)."""

    @abstractmethod
    def iter_entries(self, func_id: Optional[str] = None) -> Iterator[EntryInfo]:
        """Every entry (of one function when given). May be slow: a full listing."""

    def describe_missing(self, func_id: str, key: str) -> Optional[str]:
        """Why a missing entry is missing, when something of it remains (else ``None``)."""
        return None

    def record_access(self, func_id: str, key: str) -> None:
        """Note a read of an entry (for least-recently-used eviction); may be buffered."""
        return None

    def flush(self, wait: bool = False) -> None:
        """Write buffered bookkeeping (access records) out (``wait``: even if that means
        waiting for another process's lock)."""
        return None

    def try_lock(self, func_id: str, key: str) -> Optional[Any]:
        """Take the compute lock of an entry: a token, or ``None`` if someone else holds it."""
        return True

    def release_lock(self, token: Any) -> None:
        """Release a lock taken with :meth:`try_lock`."""
        return None

    def remove_entries(self, entries: Iterable[EntryInfo]) -> None:
        """Remove the given entries."""
        for e in entries:
            self.clear_entry(e.func_id, e.key)

    def cleanup(self) -> int:
        """Remove leftovers of interrupted writes; returns how many were removed."""
        return 0

    def reduce_size(
        self,
        bytes_limit: Optional[int] = None,
        items_limit: Optional[int] = None,
        age_limit: Optional[float] = None,
    ) -> tuple[list[EntryInfo], list[EntryInfo]]:
        """Remove least recently used entries until the limits hold: ``(removed, kept)``."""
        self.flush()
        self.cleanup()
        entries = list(self.iter_entries())
        removed = select_for_removal(entries, bytes_limit, items_limit, age_limit)
        self.remove_entries(removed)
        gone = {(e.func_id, e.key) for e in removed}
        return removed, [e for e in entries if (e.func_id, e.key) not in gone]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={self.location!r})"
