"""The ``compress`` argument of dump/dumps (joblib's grammar: which codec at which level, which
file name ending picks one) and the compressors added with :func:`joblite.register_compressor`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional


class ChunkCodec(NamedTuple):
    """A registered compressor: whole-buffer ``compress``/``decompress`` and joblib's file
    interface."""

    compress: Callable[[memoryview, int], bytes]
    decompress: Callable[[bytes], bytes]
    extension: str
    prefix: bytes
    #: ``reader(fileobj)``: a file object reading the decompressed data (joblib's interface)
    reader: Optional[Callable[[Any], Any]] = None


#: codecs added with :func:`joblite.register_compressor`, by name
REGISTERED: dict[str, ChunkCodec] = {}
#: longest name a compressor may be registered under
MAX_NAME_LEN = 47


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
