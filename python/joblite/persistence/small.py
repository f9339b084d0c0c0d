"""The small-result record: how the local cache stores a result of at most 64 KiB of pickle
with no out-of-band buffer (a number, a short string, a small dict: most cache hits).

Layout (``docs/format.md``): the 10-byte magic ``JLTSMALL1\\n``, the 16-byte BLAKE2b digest of
the pickle, then the pickle (protocol 5). Decoding it costs about a microsecond, where a
format-2 dump of the same value costs tens (its index and plan are built for large arrays).
:func:`joblite.load` and :func:`joblite.loads` recognise it by its magic.
"""

from __future__ import annotations

import hashlib
import pickle
import pickletools
from typing import Any, Optional

from ..exceptions import CorruptFileError
from .unpickle import unpickle_stream

MAGIC = b"JLTSMALL1\n"
#: the largest pickle stored as a small record
LIMIT = 64 * 1024
_DIGEST = 16
#: the largest a valid record can be
MAX_RECORD = len(MAGIC) + _DIGEST + LIMIT


class _NotSmall(Exception):
    """Raised inside the pickler to stop as soon as a value is known not to be small."""


class _CappedBuffer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        self.size += len(data)
        if self.size > LIMIT:
            raise _NotSmall
        self.parts.append(bytes(data))
        return len(data)


def _refuse_buffer(buffer: Any) -> None:
    raise _NotSmall  # arrays go to a format-2 dump (aligned, mmap-able, chunked)


def encode(value: Any) -> Optional[bytes]:
    """The record holding ``value``, or None when it is not small (or not picklable: the
    caller's ``dump`` then raises its clearer error)."""
    out = _CappedBuffer()
    try:
        pickle.Pickler(out, protocol=5, buffer_callback=_refuse_buffer).dump(value)
    except Exception:
        return None
    data = b"".join(out.parts)
    return MAGIC + hashlib.blake2b(data, digest_size=_DIGEST).digest() + data


def decode(data: bytes, path: Optional[str], allow_pickle: bool = True) -> Any:
    """The value of the record ``data`` (read from ``path``, None for bytes in memory).

    Raises
    ------
    joblite.CorruptFileError
        The record is truncated, too large or fails its checksum.
    joblite.UnsafeLoadError
        ``allow_pickle=False`` and the pickle holds something the safe mode refuses.
    """
    start = len(MAGIC)
    digest, body = data[start : start + _DIGEST], data[start + _DIGEST :]
    if len(data) > MAX_RECORD:
        raise CorruptFileError(path, "small-result record is larger than such a record can be")
    if len(digest) != _DIGEST or hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise CorruptFileError(path, "small-result record is truncated or damaged (checksum)")
    if allow_pickle:
        return pickle.loads(body)  # checksummed: the fastest path for the most common hit
    _check_memo(body, path)
    return unpickle_stream(body, [], path, allow_pickle, None, False)


def _check_memo(body: bytes, path: Optional[str]) -> None:
    """Refuse a forged pickle whose PUT / LONG_BINPUT names a memo index beyond the memo
    operations before it: the C unpickler would grow (and zero) its memo to twice that
    index, gigabytes from five bytes. A pickler numbers its memo entries in order."""
    if b"r" not in body and b"p" not in body:  # no LONG_BINPUT / PUT opcode can be there
        return
    made = 0
    try:
        for op, arg, _ in pickletools.genops(body):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and (
                not isinstance(arg, int) or arg > made
            ):
                break
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                made += 1
        else:
            return
    except ValueError as e:  # pickletools on bytes that are no pickle
        raise CorruptFileError(path, f"small-result record is not a pickle ({e})") from e
    raise CorruptFileError(path, f"small-result record stores memo entry {arg} out of order")
