"""O(1) keys for chained steps: an argument that is a read-only memory map of a cached result
is keyed by the digest stored with that result, instead of being read and hashed again.

It applies exactly when all of these hold (otherwise the argument is hashed as usual, with
the same key):

- the argument itself (not an element of a list or dict argument) is a ``numpy.memmap``
  object that a ``Memory`` with ``mmap_mode="r"`` returned, at the top level of the result or
  one level down in a tuple, list or dict, and is at least ``DIGEST_MIN_BYTES`` big;
- the memory map is read-only (``mode="r"``, not writeable) and is that very object, not a
  slice or a view of it, with the shape, dtype and strides it was loaded with (a read-only
  array's ``shape``, ``dtype`` and ``strides`` can still be set in place);
- the entry file it maps still has the same identity (device, inode, size, modification time)
  as when it was loaded: entries are immutable, and a replaced entry is a new file.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from typing import Any, Optional

from .. import _core, _fork

__all__ = [
    "DIGEST_MIN_BYTES",
    "ArrayDigest",
    "array_digest",
    "digests_of",
    "has_maps",
    "plain_arrays",
    "register_loaded",
]

#: arrays smaller than this are simply hashed (no digest is stored for them)
DIGEST_MIN_BYTES = 1 << 20

_lock = threading.Lock()

_fork.renew_in_child(globals(), "_lock")  # a lock another thread held at a fork
# id(memmap) -> (weak reference, digest, filename, file identity, array layout)
_known: dict[int, tuple[Any, str, str, tuple, tuple]] = {}


class ArrayDigest:
    """Stands for a numpy array argument in a key: the array's own content digest.

    Every top-level array argument is keyed this way, so a plain array and a memory map of a
    stored result with equal content give the same key.
    """

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __reduce__(self) -> tuple:
        return (ArrayDigest, (self.digest,))


def _layout(array: Any) -> tuple:
    """What the stored digest covers besides the file's bytes: shape, dtype, strides and
    where the data starts (all can be changed on the same object without a write)."""
    return (array.shape, array.dtype, array.strides, array.__array_interface__["data"][0])


def _file_identity(path: str) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _arrays(output: Any) -> list[tuple[str, Any]]:
    """``(path, array)`` for the output itself and the values one level down."""
    np = sys.modules.get("numpy")
    if np is None:
        return []
    found: list[tuple[str, Any]] = []
    if isinstance(output, np.ndarray):
        found.append(("", output))
    elif isinstance(output, (tuple, list)):
        found.extend((f"[{i}]", v) for i, v in enumerate(output) if isinstance(v, np.ndarray))
    elif isinstance(output, dict):
        found.extend(
            (f"[{k!r}]", v)
            for k, v in output.items()
            if isinstance(k, (str, int)) and isinstance(v, np.ndarray)
        )
    return [(p, a) for p, a in found if a.nbytes >= DIGEST_MIN_BYTES and not a.dtype.hasobject]


def plain_arrays(output: Any) -> Any:
    """``output`` with its ``np.memmap`` arrays (top level, or one level down in a tuple, list
    or dict) viewed as plain ndarrays, as joblib stores them: a memmap that a computation made
    from another one (``np.empty_like(mapped)``) is not backed by a file, and would otherwise
    be stored in-band and loaded by copying instead of mapping."""
    np = sys.modules.get("numpy")
    if np is None:
        return output
    memmap = np.memmap

    def plain(v: Any) -> Any:
        return v.view(np.ndarray) if type(v) is memmap else v

    if type(output) is memmap:
        return plain(output)
    if type(output) in (tuple, list) and any(type(v) is memmap for v in output):
        return type(output)(plain(v) for v in output)
    if type(output) is dict and any(type(v) is memmap for v in output.values()):
        return {k: plain(v) for k, v in output.items()}
    return output


def has_maps(output: Any) -> bool:
    """Whether a loaded result holds memory maps that :func:`register_loaded` could use."""
    np = sys.modules.get("numpy")
    return np is not None and any(type(a) is np.memmap for _, a in _arrays(output))


def digests_of(output: Any) -> dict[str, str]:
    """The content digests of a result's large arrays, stored in the entry's metadata."""
    return {path: _core.hash(array) for path, array in _arrays(output)}


def register_loaded(output: Any, digests: dict) -> None:
    """Remember the read-only memory maps of a loaded result with their stored digests."""
    np = sys.modules.get("numpy")
    if np is None or not digests:
        return
    for path, array in _arrays(output):
        digest = digests.get(path)
        if (
            not isinstance(digest, str)
            or type(array) is not np.memmap
            or array.mode != "r"
            or array.flags.writeable
            or not array.filename
        ):
            continue
        identity = _file_identity(array.filename)
        if identity is None:
            continue
        ident = id(array)
        ref = weakref.ref(array, functools.partial(_forget, ident))
        with _lock:
            _known[ident] = (ref, digest, array.filename, identity, _layout(array))


def _forget(ident: int, _ref: Any = None) -> None:
    with _lock:
        entry = _known.get(ident)
        if entry is not None and entry[0]() is None:
            del _known[ident]


def _digest_of(value: Any) -> str:
    entry = _known.get(id(value))
    if entry is not None and entry[0]() is value and not value.flags.writeable:
        _, digest, filename, identity, layout = entry
        if _layout(value) == layout and _file_identity(filename) == identity:
            return digest
    return _core.hash(value)


def array_digest(array: Any) -> ArrayDigest:
    """How a top-level numpy array argument enters a key (its chained or computed digest)."""
    return ArrayDigest(_digest_of(array))
