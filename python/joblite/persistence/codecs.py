"""The ``compress`` argument of dump/dumps: which codec at which level, and the stdlib codecs.

lz4 is done in Rust (chunked, all cores, GIL released). zlib/gzip, bz2 and lzma/xz are the
stdlib modules applied per chunk on a thread pool: they release the GIL, so chunks still
compress in parallel.
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

# codec ids of the container format (docs/format.md)
NONE, LZ4, ZLIB, BZ2, LZMA = 0, 1, 2, 3, 4

#: accepted codec names -> container codec id. gzip and zlib are both deflate, xz and lzma
#: both LZMA2: inside the container each chunk is stored in one canonical framing.
CODEC_IDS: dict[str, int] = {
    "lz4": LZ4,
    "zlib": ZLIB,
    "gzip": ZLIB,
    "bz2": BZ2,
    "lzma": LZMA,
    "xz": LZMA,
}

#: file extensions that choose a codec when ``compress`` is left at 0, like joblib
EXTENSIONS: dict[str, str] = {
    ".z": "zlib",
    ".gz": "gzip",
    ".bz2": "bz2",
    ".lzma": "lzma",
    ".xz": "xz",
    ".lz4": "lz4",
}

DEFAULT_CODEC = "lz4"
DEFAULT_LEVEL = 3

_ACCEPTED = (
    "compress must be False/0 (no compression), True or an int 1-9 (lz4 at that level), "
    f"a codec name among {sorted(CODEC_IDS)}, or a (name, level) tuple with level 0-9"
)


def resolve(compress: Any, filename: Optional[str] = None) -> tuple[int, int]:
    """Turn a ``compress`` argument into ``(codec_id, level)``; ``(NONE, 0)`` means none.

    Parameters
    ----------
    compress : bool, int, str or tuple
        As accepted by :func:`joblite.dump`.
    filename : str, optional
        Its extension picks the codec when ``compress`` is 0 or False.

    Raises
    ------
    ValueError
        For an unknown codec name or a level outside 0-9, naming the accepted values.
    """
    name: Optional[str]
    if isinstance(compress, bool) or compress is None:
        name, level = (DEFAULT_CODEC, DEFAULT_LEVEL) if compress else (None, 0)
    elif isinstance(compress, int):
        name, level = DEFAULT_CODEC, compress
    elif isinstance(compress, str):
        name, level = compress, DEFAULT_LEVEL
    elif isinstance(compress, (tuple, list)) and len(compress) == 2:
        name, level = compress
        if not isinstance(name, str):
            raise ValueError(f"{_ACCEPTED}; got codec name {name!r}")
    else:
        raise ValueError(f"{_ACCEPTED}; got {compress!r}")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"{_ACCEPTED}; got level {level!r}")
    if name is not None and name.lower() not in CODEC_IDS:
        raise ValueError(f"{_ACCEPTED}; got unknown codec {name!r}")
    if level == 0 or name is None:
        if filename is not None and (compress == 0 or compress is False):
            ext = os.path.splitext(filename)[1].lower()
            if ext in EXTENSIONS:
                return CODEC_IDS[EXTENSIONS[ext]], DEFAULT_LEVEL
        return NONE, 0
    return CODEC_IDS[name.lower()], level


def _compressor(codec: int, level: int) -> Callable[[Any], bytes]:
    if codec == ZLIB:
        return lambda chunk: zlib.compress(chunk, level)
    if codec == BZ2:
        return lambda chunk: bz2.compress(chunk, level)
    if codec == LZMA:
        return lambda chunk: lzma.compress(chunk, format=lzma.FORMAT_XZ, preset=level)
    raise ValueError(f"codec {codec} is not a stdlib codec")


def decompress(codec: int, stored: bytes, raw_len: int) -> bytes:
    """Decode one stored chunk of a zlib/bz2/lzma segment (checks its decoded size)."""
    if codec == ZLIB:
        out = zlib.decompress(stored, bufsize=max(raw_len, 1))
    elif codec == BZ2:
        out = bz2.decompress(stored)
    elif codec == LZMA:
        out = lzma.decompress(stored, format=lzma.FORMAT_XZ)
    else:
        raise ValueError(f"codec {codec} is not a stdlib codec")
    if len(out) != raw_len:
        raise ValueError(f"chunk decoded to {len(out)} bytes, expected {raw_len}")
    return out


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_PID = 0


def pool() -> ThreadPoolExecutor:
    """A lazily created thread pool for stdlib codecs (they release the GIL).

    One per process: a child made by ``fork()`` inherits the pool object but none of its
    threads, so it builds its own instead of waiting forever on the inherited one.
    """
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="joblite")
        _POOL_PID = os.getpid()
    return _POOL


def compress_chunks(codec: int, level: int, data: memoryview, chunk_size: int) -> list[bytes]:
    """Compress ``data`` in ``chunk_size`` chunks with a stdlib codec, in parallel."""
    fn = _compressor(codec, level)
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    if len(chunks) <= 1:
        return [fn(c) for c in chunks]
    return list(pool().map(fn, chunks))
