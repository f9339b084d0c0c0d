"""The ``compress`` argument of dump/dumps: which codec at which level, and the stdlib codecs.

lz4 is done in Rust (chunked, all cores, GIL released). zlib/gzip, bz2 and lzma/xz are the
stdlib modules applied per chunk on a thread pool: they release the GIL, so chunks still
compress in parallel. Codecs registered with :func:`joblite.register_compressor` run the same
way, per chunk on that pool; the file's header names them.
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Optional

from .. import _core

# codec ids of the container format (docs/format.md)
NONE, LZ4, ZLIB, BZ2, LZMA, EXTERNAL = 0, 1, 2, 3, 4, 5

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


class ChunkCodec(NamedTuple):
    """A registered compressor, as the container uses it: one call per chunk."""

    compress: Callable[[memoryview, int], bytes]
    decompress: Callable[[bytes], bytes]
    extension: str
    prefix: bytes
    #: ``reader(fileobj)``: a file object reading the decompressed data (joblib's interface)
    reader: Optional[Callable[[Any], Any]] = None


#: codecs added with :func:`joblite.register_compressor`, by name
REGISTERED: dict[str, ChunkCodec] = {}
#: longest registered codec name (it is stored in the container header)
MAX_NAME_LEN: int = _core.MAX_CODEC_NAME_LEN


class Choice(NamedTuple):
    """What a ``compress`` argument resolves to."""

    codec: int
    level: int
    #: the registered codec's name when ``codec`` is EXTERNAL
    name: Optional[str] = None


def _accepted() -> str:
    names = sorted(CODEC_IDS) + sorted(REGISTERED)
    return (
        "compress must be False/0 (no compression), True or an int 1-9 (lz4 at that level), "
        f"a codec name among {names}, or a (name, level) tuple with level 0-9"
    )


def resolve(compress: Any, filename: Optional[str] = None) -> Choice:
    """Turn a ``compress`` argument into a :class:`Choice`; codec NONE means none.

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
            raise ValueError(f"{_accepted()}; got codec name {name!r}")
    else:
        raise ValueError(f"{_accepted()}; got {compress!r}")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"{_accepted()}; got level {level!r}")
    if name is not None and name.lower() not in CODEC_IDS and name not in REGISTERED:
        raise ValueError(f"{_accepted()}; got unknown codec {name!r}")
    if level == 0 or name is None:
        if filename is not None and (compress == 0 or compress is False):
            ext = os.path.splitext(filename)[1].lower()
            if ext in EXTENSIONS:
                return Choice(CODEC_IDS[EXTENSIONS[ext]], DEFAULT_LEVEL)
            for reg_name, reg in REGISTERED.items():
                if reg.extension and filename.lower().endswith(reg.extension.lower()):
                    return Choice(EXTERNAL, DEFAULT_LEVEL, reg_name)
        return Choice(NONE, 0)
    if name in REGISTERED:
        return Choice(EXTERNAL, level, name)
    return Choice(CODEC_IDS[name.lower()], level)


def registered(name: Optional[str], path: Optional[str] = None) -> ChunkCodec:
    """The registered codec ``name`` (a file's header names it), or a clear ValueError."""
    reg = REGISTERED.get(name) if name is not None else None
    if reg is None:
        where = f"{path}: " if path else ""
        raise ValueError(
            f"{where}the data was compressed with the codec {name!r}, which is not registered "
            f"in this process; call joblite.register_compressor({name!r}, ...) before loading"
        )
    return reg


def _compressor(codec: int, level: int, name: Optional[str] = None) -> Callable[[Any], bytes]:
    if codec == EXTERNAL:
        reg = registered(name)

        def external(chunk: Any) -> bytes:
            out = reg.compress(chunk, level)
            if not isinstance(out, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"the compressor {name!r} returned {type(out).__name__} from compress(), "
                    "not bytes"
                )
            return bytes(out)

        return external
    if codec == ZLIB:
        return lambda chunk: zlib.compress(chunk, level)
    if codec == BZ2:
        return lambda chunk: bz2.compress(chunk, level)
    if codec == LZMA:
        return lambda chunk: lzma.compress(chunk, format=lzma.FORMAT_XZ, preset=level)
    raise ValueError(f"codec {codec} is not a stdlib codec")


def decompress(codec: int, stored: bytes, raw_len: int, name: Optional[str] = None) -> bytes:
    """Decode one stored chunk of a zlib/bz2/lzma/registered segment (checks its size).

    The stdlib decoders stop one byte past ``raw_len``: a chunk that would decode to more than
    it declares (a decompression bomb) costs no more memory than the declared size.
    """
    if codec == EXTERNAL:
        out = bytes(registered(name).decompress(stored))
    else:
        dec: Any
        if codec == ZLIB:
            dec = zlib.decompressobj()
        elif codec == BZ2:
            dec = bz2.BZ2Decompressor()
        elif codec == LZMA:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        else:
            raise ValueError(f"codec {codec} is not a stdlib codec")
        out = dec.decompress(stored, raw_len + 1)
        if len(out) == raw_len and not dec.eof:
            raise ValueError(f"chunk holds more than the {raw_len} bytes it declares")
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


def compress_chunks(
    codec: int, level: int, data: memoryview, chunk_size: int, name: Optional[str] = None
) -> list[bytes]:
    """Compress ``data`` in ``chunk_size`` chunks with a stdlib or registered codec, in
    parallel (a registered codec's ``compress`` must be thread-safe)."""
    fn = _compressor(codec, level, name)
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    if len(chunks) <= 1:
        return [fn(c) for c in chunks]
    return list(pool().map(fn, chunks))


# --- format 2: what ``compress`` means (exactly as in joblib) --------------------------------

#: built-in codecs of format 2 and the level joblib's compressor file objects default to
BUILTIN_DEFAULT_LEVEL: dict[str, int] = {
    "zlib": 3,
    "gzip": 3,
    "bz2": 9,
    "lzma": 6,
    "xz": 6,
    "lz4": 0,
    "zstd": 1,
}
#: file name endings that pick a codec, in joblib's order (the last match wins)
JOBLIB_EXTENSIONS: list[tuple[str, str]] = [
    ("zlib", ".z"),
    ("gzip", ".gz"),
    ("bz2", ".bz2"),
    ("lzma", ".lzma"),
    ("xz", ".xz"),
    ("lz4", ".lz4"),
    ("zstd", ".zst"),
]


def _names() -> dict[str, Any]:
    names: dict[str, Any] = {n: None for n in BUILTIN_DEFAULT_LEVEL}
    names.update(REGISTERED)
    return names


def choose(compress: Any, filename: Optional[str] = None) -> tuple[str, Optional[int]]:
    """The codec name and level a ``compress`` argument means, exactly as in joblib.

    ``("none", 0)`` means no compression. ``True`` and integers are zlib (``True``: level 3),
    a name alone its library's default level, a ``(name, level)`` tuple that level; with a
    file name and no tuple, an extension (``.z``, ``.gz``, ``.bz2``, ``.lzma``, ``.xz``,
    ``.lz4``, ``.zst``, or a registered compressor's) picks the codec.

    Raises
    ------
    ValueError
        With joblib's messages, for a bad tuple, level or codec name.
    """
    method: Optional[str] = "zlib"
    level: Any
    if compress is True:
        level = None
    elif isinstance(compress, tuple):
        if len(compress) != 2:
            raise ValueError(
                "Compress argument tuple should contain exactly 2 elements: "
                f"(compress method, compress level), you passed {compress}"
            )
        method, level = compress
    elif isinstance(compress, str):
        method, level = compress, None
        compress = (method, level)
    else:
        level = compress
    if level is not None and level is not False and level not in range(10):
        raise ValueError(
            f'Non valid compress level given: "{level}". Possible values are {list(range(10))}.'
        )
    names = _names()
    if method not in names:
        raise ValueError(
            f'Non valid compression method given: "{method}". Possible values are {list(names)}.'
        )
    if filename is not None and not isinstance(compress, tuple):
        method = None
        exts = list(JOBLIB_EXTENSIONS)
        exts += [(n, c.extension) for n, c in REGISTERED.items()]
        for name, ext in exts:
            if ext and filename.endswith(ext):
                method = name
        if method is not None and level == 0:
            level = None
    if level == 0 or level is False:
        return "none", 0
    if method is None:
        method = "zlib"
    if level is None:
        if method in REGISTERED:
            return method, None  # the compressor's own default
        level = BUILTIN_DEFAULT_LEVEL[method]
    return method, int(level)
