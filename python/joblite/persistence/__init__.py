"""dump / load: persistence of Python objects holding large numpy arrays.

Files are in format 2 (``docs/format.md``): joblib files, in the standard framing of their
codec, that carry joblite's checksummed chunk index inside. ``load`` also reads every format
joblib has written, without joblib installed.
"""

from __future__ import annotations

import io
import logging
import lzma
import os
import pickle
import queue
import stat
import struct
import threading
import warnings
from typing import Any, Callable, Optional

from .. import _core, _files
from ..exceptions import CorruptFileError, UnsafeLoadError
from . import codecs, format2, joblib_compat, small
from .files import open_regular

_MMAP_MODES = (None, "r", "r+", "c", "w+")
#: the opening of joblite's pre-release format 1, which no released version wrote or reads
FORMAT1_MAGIC = b"\x93JOBLITE"
_FORMAT1_REASON = (
    "a joblite format-1 file (a pre-release format that no released joblite wrote); "
    "this version reads format 2 and joblib's formats only: write it again with "
    "the version that made it"
)
_log = logging.getLogger("joblite.persistence")


def _stream_compressor(name: str, level: Optional[int]) -> Callable[[Any], Any]:
    """A file-object factory compressing a whole dump (lzma and registered compressors)."""
    if name == "lzma":
        return lambda sink: lzma.LZMAFile(
            sink, "wb", format=lzma.FORMAT_ALONE, preset=6 if level is None else level
        )
    reg = codecs.registered(name)
    if level is None and reg.reader is None:
        level = 3  # joblite's chunk interface takes a level

    class _Writer(io.RawIOBase):
        def __init__(self, sink: Any) -> None:
            self.sink = sink
            self.parts: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.parts.append(bytes(b))
            return len(b)

        def close(self) -> None:
            if self.closed:
                return
            try:
                out = reg.compress(memoryview(b"".join(self.parts)), level)  # type: ignore[arg-type]
                if not isinstance(out, (bytes, bytearray, memoryview)):
                    raise TypeError(f"the compressor {name!r} returned {type(out).__name__}")
                self.sink.write(out)
            finally:  # closed even when compressing fails: the finalizer must not retry it
                super().close()

    return _Writer


def _write_to(value: Any, fobj: Any, name: str, level: Optional[int]) -> None:
    if name in format2.CODEC_IDS:
        try:
            start = fobj.tell()
        except (OSError, AttributeError, ValueError):
            start = 0
        fobj.write(format2.write_bytes(value, name, level or 0, start))
    else:
        format2.write_stream(value, fobj, _stream_compressor(name, level))


def dump(
    value: Any,
    filename: Any,
    compress: Any = 0,
    protocol: Optional[int] = None,
    *,
    fsync: bool = True,
) -> Any:
    """Persist an arbitrary Python object into one file, in a format joblib reads.

    The file is a joblib file (``joblib.load`` reads it, memory-mapping included) that also
    carries joblite's index: XXH3 checksums of every chunk, verified on load, and the
    offsets that let :func:`load` decode all chunks on all cores and memory-map uncompressed
    arrays in O(1) (``docs/format.md``). Writing to a path is atomic: a temporary file in
    the same directory is written, flushed and renamed over ``filename``, so a crash never
    leaves a partial file behind.

    Parameters
    ----------
    value : any Python object
        The object to store.
    filename : str, os.PathLike or binary file object
        Where to store it. With a file object the dump is written at its current position
        (not atomically; several dumps can follow one another) and None is returned.
    compress : bool, int, str or (str, int), default 0
        As in joblib: ``0``/``False`` no compression; ``True`` or ``1``-``9`` zlib at that
        level (``True``: 3); a name, ``"zlib"``, ``"gzip"``, ``"bz2"``, ``"lzma"``, ``"xz"``,
        ``"lz4"``, a name given to :func:`register_compressor`, or joblite's ``"zstd"`` (which
        joblib cannot read), at its default level; a ``(name, level)`` tuple. Unless a tuple
        is given, a file name ending in ``.z``, ``.gz``, ``.bz2``, ``.lzma``, ``.xz``,
        ``.lz4``, ``.zst`` (or a registered compressor's extension) picks that codec, and the
        file is a valid stream of it (``gzip -d`` reads a ``.gz``). zlib, gzip, bz2, xz, lz4
        and zstd compress independent chunks on all cores; lzma (``.lzma``) and registered
        compressors compress the whole stream at once, like joblib.
    protocol : int, optional
        Accepted for joblib compatibility; the stream always uses pickle protocol 5.
    fsync : bool, default True
        Flush the file (and its folder) to the storage device before renaming it into
        place, so that even a power loss leaves the old file or the complete new one.
        ``fsync=False`` skips it (joblib and ``np.save`` never flush) and keeps every
        guarantee against a killed process or a concurrent reader. Ignored for file objects.

    Returns
    -------
    list of str or None
        ``[filename]`` when writing to a path, None for a file object.

    Raises
    ------
    ValueError
        If ``compress`` names an unknown codec or level (joblib's messages), or
        ``filename`` is neither a path nor a file object.

    Examples
    --------
    >>> import numpy as np, joblite, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "data.pkl")
    >>> joblite.dump({"x": np.arange(3)}, path, compress=3)  # doctest: +ELLIPSIS
    ['...data.pkl']
    >>> joblite.load(path)["x"]
    array([0, 1, 2])
    """
    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)
    is_path = isinstance(filename, (str, bytes))
    if not is_path and not hasattr(filename, "write"):
        raise ValueError(
            "Second argument should be a filename or a file-like object, "
            f"{filename} (type {type(filename)}) was given."
        )
    if not is_path:
        name, level = codecs.choose(compress)
        _write_to(value, filename, name, level)
        return None
    if not isinstance(fsync, bool):
        raise TypeError(f"fsync must be True or False, got {fsync!r}")
    path = os.fsdecode(filename)
    name, level = codecs.choose(compress, path)
    write_file(value, path, fsync, name, level)
    return [path]


def write_file(value: Any, path: str, fsync: bool, name: str, level: Optional[int]) -> None:
    """Write a dump to ``path`` atomically (temp file, flush, rename); errors name ``path``."""
    tmp = _files.create_temp(path)
    try:
        if name in format2.CODEC_IDS:
            format2.write_path(value, tmp, name, level or 0, fsync)
        else:
            with open(tmp, "wb") as f:
                format2.write_stream(value, f, _stream_compressor(name, level))
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise _files.user_path_error(e, path) from None
        raise
    old = _hold_replaced(path)
    try:
        _files.publish(tmp, path, fsync)
    finally:
        _release_later(old)


#: files at least this large that a dump replaces are freed by a background thread
_FREE_LATER_BYTES = 32 << 20
_closing: queue.SimpleQueue[int] = queue.SimpleQueue()
_closer: Optional[threading.Thread] = None


def _hold_replaced(path: str) -> Optional[int]:
    """A read-only descriptor of the large regular file ``path`` a dump is about to replace.

    Freeing a large file's pages happens when its last reference goes (0.1 s per GiB on
    tmpfs): holding one across the rename moves that work from the rename, on the caller's
    time, to :func:`_release_later`'s thread. None when there is nothing worth it.
    """
    if os.name != "posix":
        return None
    try:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size >= _FREE_LATER_BYTES:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _release_later(fd: Optional[int]) -> None:
    global _closer
    if fd is None:
        return
    if _closer is None:
        _closer = threading.Thread(target=_close_forever, name="joblite-free", daemon=True)
        _closer.start()
    _closing.put(fd)


def _close_forever() -> None:
    while True:
        fd = _closing.get()
        try:
            os.close(fd)
        except OSError:
            pass


def _after_fork_in_child() -> None:
    # The closing thread does not exist in a forked child: the child starts its own when
    # it needs one, and closes its copies of the descriptors its parent had not closed yet.
    global _closer, _closing
    inherited, _closing, _closer = _closing, queue.SimpleQueue(), None
    while True:
        try:
            fd = inherited.get_nowait()
        except queue.Empty:
            break
        try:
            os.close(fd)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _stream_readers(head: bytes) -> list[tuple[Callable[[Any], Any], bool]]:
    """Decompressor file-object factories that may read a single-stream dump starting with
    ``head``: lzma, registered compressors with that prefix, then those without a prefix
    (a guess: ``False`` in the pair, their failure only means the file is something else)."""
    found: list[tuple[Callable[[Any], Any], bool]] = []
    if head.startswith(b"\x5d\x00"):
        found.append((lambda f: lzma.LZMAFile(f, "rb"), True))
    regs = sorted(codecs.REGISTERED.values(), key=lambda r: not r.prefix)
    for reg in regs:
        if not reg.prefix or head.startswith(reg.prefix):
            if reg.reader is not None:
                opener = reg.reader
            else:
                opener = lambda f, d=reg.decompress: io.BytesIO(d(f.read()))  # noqa: E731
            found.append((opener, bool(reg.prefix)))
    return found


def _try_stream(path: Optional[str], fobj: Any, opener: Callable[[Any], Any], sure: bool) -> Any:
    try:
        return _load_stream(path, fobj, opener)
    except CorruptFileError:
        if sure:
            raise
        return None


def _load_stream(path: Optional[str], fobj: Any, opener: Callable[[Any], Any]) -> Any:
    try:
        try:
            dec = opener(fobj)
        except TypeError:  # a joblib-style factory that wants a file name (gzip.GzipFile)
            if path is None:
                raise
            dec = opener(path)
        with dec as f:
            data = format2.read_stream(f, path)
    except Exception as e:  # a registered decoder may raise anything on damaged data
        if isinstance(e, (CorruptFileError, MemoryError)):
            raise
        raise CorruptFileError(path, f"compressed data is damaged ({type(e).__name__}: {e})") from e
    return data


def load(
    filename: Any,
    mmap_mode: Optional[str] = None,
    ensure_native_byte_order: Any = "auto",
    *,
    allow_pickle: bool = True,
    verify: Optional[bool] = None,
) -> Any:
    """Reconstruct a Python object from a file written by :func:`dump` or by joblib.

    .. warning:: With the default ``allow_pickle=True`` this runs pickle, which can execute
       arbitrary code: only load files you trust, or pass ``allow_pickle=False``.

    Parameters
    ----------
    filename : str, os.PathLike or binary file object
        The file. joblite files (format 2) and every joblib format
        (0.8 - 1.6, compressed or not) are recognised by their first bytes. From a file
        object, one dump is read from its current position, which is left after it.
    mmap_mode : {None, 'r', 'r+', 'c', 'w+'}, optional
        Memory-map arrays instead of reading them. Uncompressed arrays come back as
        ``np.memmap`` views of the file, in O(1) (nothing is read). Compressed arrays cannot
        be mapped: they are decompressed in parallel into ordinary in-memory arrays
        (read-only under ``'r'``). ``'w+'`` acts as ``'r+'``, as in joblib. With ``'r+'``
        writes go to the file, which is then marked (in its checksummed index) so later
        loads stop verifying its uncompressed arrays, which the writes change.
    ensure_native_byte_order : bool or 'auto', default 'auto'
        Arrays stored in a byte order other than the host's come back swapped to the host's
        order (a copy), as with joblib. ``'auto'``: when ``mmap_mode`` is None (a memory map
        keeps the file's order). ``True`` with ``mmap_mode`` raises ``ValueError``.
    allow_pickle : bool, default True
        ``False`` is the safe mode: only numpy arrays of non-object dtype and builtin
        containers/scalars are loaded; anything that would import or call other code raises
        :class:`joblite.UnsafeLoadError` naming it.
    verify : bool, optional
        Check the XXH3 checksum of every data chunk. By default everything that is read is
        verified (at memory speed, on all cores, while each chunk is in cache); memory-mapped
        arrays are not unless ``verify=True`` (that reads them); ``verify=False`` skips the
        array checks. The index and the pickle stream are always verified.

    Returns
    -------
    object
        The stored object.

    Raises
    ------
    joblite.CorruptFileError
        The file is empty, truncated, damaged (checksum mismatch), not a joblite/joblib file,
        or not a regular file (a directory, FIFO, device or socket is refused without
        reading it); the message names the file and what is wrong.
    joblite.UnsafeLoadError
        ``allow_pickle=False`` met something it refuses.
    FileNotFoundError
        No such file.
    """
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    native = mmap_mode is None if ensure_native_byte_order == "auto" else ensure_native_byte_order
    if native and mmap_mode is not None:
        raise ValueError(
            "Native byte ordering can only be enforced if 'mmap_mode' parameter "
            f"is set to None, but got 'mmap_mode={mmap_mode}' instead."
        )
    if hasattr(filename, "read") and not isinstance(filename, (str, bytes, os.PathLike)):
        return _load_fileobj(filename, allow_pickle, mmap_mode)
    path = os.fsdecode(os.fspath(filename))
    with open_regular(path) as f:  # a FIFO, device or directory is refused, never read
        head = f.read(16)
    if not head:
        raise CorruptFileError(path, "file is empty")
    if head.startswith(FORMAT1_MAGIC):
        raise CorruptFileError(path, _FORMAT1_REASON)
    if head.startswith(small.MAGIC):  # a cache entry's small result
        with open_regular(path) as f:
            return small.decode(f.read(small.MAX_RECORD + 1), path, allow_pickle)
    reader = format2.open_file(path)
    if reader is not None:
        if mmap_mode is not None and reader.codec != "none":
            _warn_compressed(mmap_mode, path)
        return format2.load_reader(reader, path, mmap_mode, allow_pickle, verify, native)
    for opener, sure in _stream_readers(head):
        with open(path, "rb") as f:
            data = _try_stream(path, f, opener, sure)
        reader = format2.open_bytes(data, path) if data is not None else None
        if reader is not None:
            if mmap_mode is not None:
                _warn_compressed(mmap_mode, path)
            return format2.load_reader(reader, None, mmap_mode, allow_pickle, verify, native)
    _log.debug("load: %s is not a joblite file; reading it as a joblib file", path)
    try:
        return joblib_compat.load(path, None, head, mmap_mode, not allow_pickle, None, native)
    except CorruptFileError as e:
        if joblib_compat.detect(head) is None and not head.startswith(b"\x80"):
            raise CorruptFileError(
                path,
                f"{e.reason}; if it was written with a compressor added by "
                "register_compressor, register it (same name) before loading",
            ) from e
        raise
    except (KeyError, IndexError, EOFError, struct.error, pickle.UnpicklingError) as e:
        if isinstance(e, UnsafeLoadError):
            raise
        raise CorruptFileError(path, f"damaged pickle stream ({type(e).__name__}: {e})") from e


def _warn_compressed(mmap_mode: str, filename: Any) -> None:
    warnings.warn(
        f'mmap_mode "{mmap_mode}" is not compatible with compressed file {filename}. '
        f'"{mmap_mode}" flag will be ignored.',
        stacklevel=3,
    )


def _read_one_dump(fobj: Any, name: Optional[str]) -> Any:
    """One format-2 dump from a stream (a socket: never read past it, nor trust a size
    before it is verified), or, for anything else (a joblib file), everything left."""
    data, is_dump = format2.read_one_dump(fobj, name)
    if not is_dump and not _read_compressed_header_dump(fobj, data, name):
        data += fobj.read()
    return data


def _read_compressed_header_dump(fobj: Any, data: bytearray, name: Optional[str]) -> bool:
    """Read the rest of the bz2 / xz dump whose first bytes are ``data`` into ``data``, and
    never past it: False when it is none (nothing more read). Their header unit is the
    first compressed stream, so ``_core.F2HeadStream`` decodes it as it arrives: each read
    takes at most what a valid dump still holds (with ``peek``, what is already buffered,
    of which only the dump's bytes are consumed), and the dump's length is believed once its
    index is verified. A stream that ends early leaves ``data`` short (the reader then
    reports the truncation)."""
    head = _core.F2HeadStream.start(data, name)
    first: Any = data
    repaired = False
    if head is None:
        # an opening one or two bits off bz2's / xz's: decoded with the magic restored, so
        # that a damaged dump is refused at its header stream instead of read to the end
        # of the stream (on a socket kept open, that never comes)
        first = _restored_opening(data)
        head = _core.F2HeadStream.start(first, name) if first is not None else None
        if head is None:
            return False
        repaired = True
    try:
        _read_header_stream(fobj, data, head, first, name)
    except CorruptFileError:
        if not repaired:
            raise
        data += fobj.read()  # no dump's header stream: whatever it is, read as before
        return True
    if repaired and head.dump_len is not None:
        raise CorruptFileError(
            name, "it holds a joblite format-2 index but its opening bytes are damaged"
        )
    return True


#: the openings of bz2 and xz streams (a dump of those codecs starts with one)
_STREAM_OPENINGS = (b"BZh", b"\xfd7zXZ\x00")


def _restored_opening(data: bytearray) -> Optional[bytes]:
    """``data`` with its first bytes set to bz2's or xz's opening when they are one or two
    bits off it (None otherwise)."""
    for opening in _STREAM_OPENINGS:
        head = data[: len(opening)]
        if len(head) < len(opening):
            continue
        off = sum(bin(a ^ b).count("1") for a, b in zip(head, opening))
        if 0 < off <= 2:
            fixed = bytearray(data)
            fixed[: len(opening)] = opening
            if opening == b"BZh" and not 0x31 <= fixed[3] <= 0x39:
                fixed[3] = 0x39  # the block size digit, if that was the damaged bit
            return bytes(fixed)
    return None


def _read_header_stream(
    fobj: Any, data: bytearray, head: Any, first: Any, name: Optional[str]
) -> None:
    """The loop of :func:`_read_compressed_header_dump`: ``first`` is fed for ``data``."""
    want = head.feed(first)
    peek = getattr(fobj, "peek", None)
    while want is not None and want > len(data):
        if head.dump_len is not None or peek is None:
            at = len(data)
            if not format2._read_into(fobj, data, want - at):
                return
            if head.dump_len is None:
                with memoryview(data) as view:
                    want = head.feed(view[at:])
            continue
        ahead = peek(1)  # what is buffered (waits for one byte when nothing is)
        if not ahead:
            return
        want = head.feed(ahead)
        take = len(ahead) if want is None else min(len(ahead), want - len(data))
        if not format2._read_into(fobj, data, take):  # the bytes peek showed
            return
    if want is None:
        data += fobj.read()  # a stream that is no dump's header: a joblib file, read whole
    elif head.dump_len is not None and head.dump_len < len(data):
        # no valid dump is that short after its header stream (each read assumed one chunk)
        raise CorruptFileError(name, "the dump ends inside the bytes its header stream needed")


def _load_fileobj(fobj: Any, allow_pickle: bool, mmap_mode: Optional[str] = None) -> Any:
    name = getattr(fobj, "name", None)
    name = name if isinstance(name, str) else None
    if isinstance(fobj, io.TextIOBase):
        raise TypeError(
            f"load needs a binary file object; {name or fobj!r} is opened in text mode "
            "(open it with mode 'rb')"
        )
    if mmap_mode is not None:
        if isinstance(fobj, io.BytesIO):
            warnings.warn(
                "In memory persistence is not compatible with "
                f'mmap_mode "{mmap_mode}" flag passed. mmap_mode option will be ignored.',
                stacklevel=3,
            )
        else:
            warnings.warn(
                f'"{fobj!r}" is not a raw file, mmap_mode "{mmap_mode}" flag will be ignored.',
                stacklevel=3,
            )
    if not hasattr(fobj, "peek"):  # as joblib, which seeks such objects back to 0
        try:
            fobj.seek(0)
        except (OSError, AttributeError, ValueError):
            pass
    try:
        start = fobj.tell()
    except (OSError, AttributeError, ValueError):
        start = None
    data = fobj.read() if start is not None else _read_one_dump(fobj, name)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(
            f"load needs a binary file object; {name or fobj!r}.read() returned "
            f"{type(data).__name__}, not bytes"
        )
    view = memoryview(data)
    if view.nbytes == 0:
        raise CorruptFileError(name, "data is empty")
    reader = format2.open_bytes(view, name)
    if reader is not None:
        if start is not None:
            fobj.seek(start + reader.dump_len)
        return format2.load_reader(reader, None, None, allow_pickle, True, True)
    end: list[int] = []
    value = _loads(view, allow_pickle, end)
    if start is not None and end:
        # an uncompressed joblib pickle: left just after it, as joblib's reader leaves a
        # file (several dumps can follow one another)
        fobj.seek(start + end[0])
    return value


def dumps(value: Any, compress: Any = 0) -> bytes:
    """Serialize ``value`` into the bytes :func:`dump` would write to a file (see there).

    Parameters
    ----------
    value : any Python object
        The object to store.
    compress : bool, int, str or (str, int), default 0
        As for :func:`dump` (there is no file name to pick a codec from).

    Returns
    -------
    bytes
        The dump.
    """
    name, level = codecs.choose(compress)
    out = io.BytesIO()
    _write_to(value, out, name, level)
    return out.getvalue()


def loads(data: Any, *, allow_pickle: bool = True) -> Any:
    """Reconstruct an object from :func:`dumps` output (or the bytes of a joblib file).

    .. warning:: With ``allow_pickle=True`` (the default) only load trusted data.

    Parameters
    ----------
    data : bytes-like
        The bytes of a dump (bytes, bytearray, memoryview, mmap).
    allow_pickle : bool, default True
        ``False`` is the safe mode of :func:`load`.

    Returns
    -------
    object
        The stored object; arrays are fresh copies, independent of ``data``.

    Raises
    ------
    joblite.CorruptFileError
        The data is empty, truncated, damaged or not a dump (``path`` is None).
    """
    return _loads(memoryview(data), allow_pickle)


def _loads(view: memoryview, allow_pickle: bool, end: Optional[list] = None) -> Any:
    if view.nbytes == 0:
        raise CorruptFileError(None, "data is empty")
    head = bytes(view[:16])
    if head.startswith(FORMAT1_MAGIC):
        raise CorruptFileError(None, _FORMAT1_REASON)
    if head.startswith(small.MAGIC):  # a cache entry's small result
        return small.decode(bytes(view), None, allow_pickle)
    reader = format2.open_bytes(view)
    if reader is not None:
        return format2.load_reader(reader, None, None, allow_pickle, True, True)
    for opener, sure in _stream_readers(head):
        raw = _try_stream(None, io.BytesIO(view), opener, sure)
        reader = format2.open_bytes(raw) if raw is not None else None
        if reader is not None:
            return format2.load_reader(reader, None, None, allow_pickle, True, True)
    try:
        return joblib_compat.load(None, bytes(view), head, None, not allow_pickle, None, True, end)
    except (KeyError, IndexError, EOFError, struct.error, pickle.UnpicklingError) as e:
        if isinstance(e, UnsafeLoadError):
            raise
        raise CorruptFileError(None, f"damaged pickle stream ({type(e).__name__}: {e})") from e


def register_compressor(compressor_name: str, compressor: Any, force: bool = False) -> None:
    """Register a custom compressor; see :func:`joblite.compressor.register_compressor`."""
    from ..compressor import register_compressor as register

    register(compressor_name, compressor, force)


__all__ = ["dump", "dumps", "load", "loads", "register_compressor"]
