"""Custom compressors for :func:`joblite.dump` and :func:`joblite.load`.

Two interfaces are accepted by :func:`joblite.register_compressor`:

- joblib's: a :class:`CompressorWrapper` (or any object with ``compressor_file`` and
  ``decompressor_file`` methods) around a file-object class such as ``bz2.BZ2File``. Code
  written for ``joblib.register_compressor`` works unchanged.
- joblite's own, simpler and faster: a :class:`ChunkCompressor` with ``compress(data, level)``
  and ``decompress(data)`` working on bytes.

Either way joblite compresses each chunk of a file separately (1 MiB of an array or of the
pickle stream), on a thread pool, and names the codec in the file's header; loading such a file
needs the same name registered in the loading process.
"""

from __future__ import annotations

import abc
import io
from typing import Any, Callable, Optional

from .persistence import codecs

__all__ = ["ChunkCompressor", "CompressorWrapper", "register_compressor"]


class CompressorWrapper:
    """A compressor given as a file-object factory (joblib's interface).

    Parameters
    ----------
    obj : callable
        Called as ``obj(fileobj, "wb", compresslevel=level)`` to compress into ``fileobj``
        and ``obj(fileobj, "rb")`` to read decompressed data from it, like ``bz2.BZ2File``.
    prefix : bytes, default b""
        The magic bytes its streams start with: joblib files compressed with it are
        recognised by them.
    extension : str, default ""
        A file name ending that selects this compressor when ``dump`` is called with the
        default ``compress=0`` (for example ``".zst"``).
    """

    def __init__(self, obj: Callable[..., Any], prefix: bytes = b"", extension: str = "") -> None:
        self.fileobj_factory = obj
        self.prefix = prefix
        self.extension = extension

    def compressor_file(self, fileobj: Any, compresslevel: Optional[int] = None) -> Any:
        """A file object that compresses what is written to it into ``fileobj``."""
        if compresslevel is None:
            return self.fileobj_factory(fileobj, "wb")
        return self.fileobj_factory(fileobj, "wb", compresslevel=compresslevel)

    def decompressor_file(self, fileobj: Any) -> Any:
        """A file object that reads the decompressed data of ``fileobj``."""
        return self.fileobj_factory(fileobj, "rb")


class ChunkCompressor(abc.ABC):
    """Base class of joblite's chunk interface for custom compressors.

    Subclasses implement :meth:`compress` and :meth:`decompress`; both are called from
    several threads at once (one chunk each), so they must be thread-safe. Codecs that
    release the GIL (most C compressors do) then compress chunks in parallel.

    Attributes
    ----------
    extension : str
        A file name ending that selects this compressor when ``dump`` gets ``compress=0``;
        empty for none.
    """

    extension: str = ""
    prefix: bytes = b""

    @abc.abstractmethod
    def compress(self, data: memoryview, level: int) -> bytes:
        """Compress one chunk at ``level`` (1-9) and return the compressed bytes."""

    @abc.abstractmethod
    def decompress(self, data: bytes) -> bytes:
        """Return the bytes that :meth:`compress` turned into ``data``."""


class _KeepOpen(io.BytesIO):
    """A BytesIO whose contents survive ``close()`` (compressor files close their sink)."""

    def close(self) -> None:
        pass


def _through_a_file(wrapper: Any, data: memoryview, level: Optional[int]) -> bytes:
    import os
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".joblite-compress-")
    os.close(fd)
    try:
        f = wrapper.compressor_file(name, compresslevel=level)
        try:
            f.write(data)
        finally:
            f.close()
        with open(name, "rb") as g:
            return g.read()
    finally:
        os.unlink(name)


def _from_wrapper(wrapper: Any) -> codecs.ChunkCodec:
    def compress(chunk: memoryview, level: Optional[int]) -> bytes:
        sink = _KeepOpen()
        try:
            f = wrapper.compressor_file(sink, compresslevel=level)
        except TypeError:  # a factory that wants a file name, as joblib gives (GzipFile)
            return _through_a_file(wrapper, chunk, level)
        try:
            f.write(chunk)
        finally:
            f.close()
        return sink.getvalue()

    def decompress(data: bytes) -> bytes:
        f = wrapper.decompressor_file(io.BytesIO(data))
        try:
            return bytes(f.read())
        finally:
            f.close()

    return codecs.ChunkCodec(
        compress,
        decompress,
        str(getattr(wrapper, "extension", "") or ""),
        bytes(getattr(wrapper, "prefix", b"") or b""),
        wrapper.decompressor_file,
    )


def _builtin_names() -> set[str]:
    """Every name ``compress=`` gives to one of joblite's own codecs (``"none"`` included)."""
    from .persistence import format2

    return set(format2.CODEC_IDS) | set(codecs.BUILTIN_DEFAULT_LEVEL)


def register_compressor(compressor_name: str, compressor: Any, force: bool = False) -> None:
    """Make a custom compressor available to ``dump(..., compress=name)`` and ``load``.

    Parameters
    ----------
    compressor_name : str
        The name ``compress=`` uses, 1 to 47 bytes of UTF-8, stored in the header of every
        file compressed with it. The built-in names (``"lz4"``, ``"zlib"``, ``"gzip"``,
        ``"bz2"``, ``"lzma"``, ``"xz"``, ``"zstd"``, ``"none"``) cannot be replaced, not even
        with ``force``: ``dump`` would keep using its own codec for them.
    compressor : CompressorWrapper or ChunkCompressor
        joblib's file-object interface (``compressor_file`` / ``decompressor_file``; joblib's
        own ``CompressorWrapper`` objects work) or joblite's chunk interface
        (``compress(data, level)`` / ``decompress(data)``).
    force : bool, default False
        Replace a compressor registered earlier under the same name.

    Raises
    ------
    ValueError
        The name is not a string, is empty, too long, built in, or already registered
        (without ``force``), or ``compressor`` implements neither interface.

    Examples
    --------
    >>> import bz2, joblite
    >>> from joblite.compressor import CompressorWrapper
    >>> joblite.register_compressor(
    ...     "bz2-file", CompressorWrapper(bz2.BZ2File, prefix=b"BZh"), force=True)
    >>> joblite.loads(joblite.dumps([1, 2, 3], compress="bz2-file"))
    [1, 2, 3]
    """
    if not isinstance(compressor_name, str):
        raise ValueError(f"Compressor name should be a string, '{compressor_name}' given.")
    size = len(compressor_name.encode("utf-8", "surrogatepass"))
    if not compressor_name or size > codecs.MAX_NAME_LEN or not compressor_name.isprintable():
        raise ValueError(
            f"compressor name {compressor_name!r} must be 1 to {codecs.MAX_NAME_LEN} bytes of "
            "printable UTF-8"
        )
    if compressor_name.lower() in _builtin_names():
        # dump would still use its own codec for such a name: the compressor would be
        # accepted and then silently never used
        raise ValueError(f"{compressor_name!r} is a built-in codec of joblite; pick another name")
    if compressor_name in codecs.REGISTERED and not force:
        raise ValueError(
            f"Compressor '{compressor_name}' already registered. (pass force=True to replace it)"
        )
    if callable(getattr(compressor, "compress", None)) and callable(
        getattr(compressor, "decompress", None)
    ):
        codec = codecs.ChunkCodec(
            compressor.compress,
            compressor.decompress,
            str(getattr(compressor, "extension", "") or ""),
            bytes(getattr(compressor, "prefix", b"") or b""),
        )
    elif callable(getattr(compressor, "compressor_file", None)) and callable(
        getattr(compressor, "decompressor_file", None)
    ):
        codec = _from_wrapper(compressor)
    else:
        raise ValueError(
            "Compressor should implement the CompressorWrapper interface, "
            f"'{compressor}' given. (joblite accepts joblib's interface, compressor_file / "
            "decompressor_file, or joblite.compressor.ChunkCompressor's, compress / "
            f"decompress; got {type(compressor).__name__})"
        )
    codecs.REGISTERED[compressor_name] = codec
