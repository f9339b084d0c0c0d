"""Format 2 (docs/format.md): files that joblib reads, with joblite's checksummed index inside.

The object is pickled by the C pickler (protocol 5, numpy buffers out of band); Rust
(``rust/format2/layout.rs``) then drops the stream's FRAME opcodes and puts, where each
out-of-band buffer goes, a joblib ``NumpyArrayWrapper`` record followed by the buffer's
padded raw bytes, exactly where joblib's own reader expects them. The index (chunk
checksums, offsets, where each buffer is) is a ``bytes`` object that the stream pushes and
pops before the object itself, so joblib reads past it while joblite reads it first and then
decodes any chunk on its own, on all cores.
"""

from __future__ import annotations

import copyreg
import pickle
import sys
from typing import Any, Callable, Optional

from .. import _core
from ..exceptions import CorruptFileError

#: codec name -> id in the index
CODEC_IDS: dict[str, int] = {
    "none": 0,
    "zlib": 1,
    "gzip": 2,
    "bz2": 3,
    "xz": 4,
    "lz4": 5,
    "zstd": 6,
}
_FLAG_MAPPED_WRITABLE = 1
#: bytes of arrays allocated and decoded together when loading (see load_reader)
_WAVE = 256 << 20


def _array_reducer() -> dict:
    """A dispatch table making numpy memmaps and non-contiguous arrays go out of band too."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return {}

    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

    def ndarray(arr: Any) -> Any:
        # numpy gives no out-of-band buffer for datetime64 / timedelta64 (the buffer
        # protocol has no such type), so they would be pickled in band and never mapped;
        # their bytes go out of band as uint8, rebuilt by numpy's own `_frombuffer` (which
        # joblib's reader calls too) with their dtype
        if arr.dtype.kind in "mM" and arr.size:
            if arr.flags.c_contiguous:
                order, flat = "C", arr.reshape(-1)
            elif arr.flags.f_contiguous:
                order, flat = "F", arr.T.reshape(-1)
            else:
                order, flat = "C", np.ascontiguousarray(arr).reshape(-1)
            raw = flat.view(np.uint8)
            return _frombuffer, (pickle.PickleBuffer(raw), arr.dtype, arr.shape, order)
        return arr.__reduce_ex__(5)

    def memmap(arr: Any) -> Any:
        return ndarray(np.asarray(arr))

    table = dict(copyreg.dispatch_table)
    table[np.ndarray] = ndarray
    table[np.memmap] = memmap
    return table


#: polars frames of at least this many bytes are written as numpy columns (below: polars' pickle)
POLARS_COLUMNS_MIN = 1 << 20


def _polars_reducer(polars: Any) -> dict:
    """Dispatch entries writing a large polars frame or series whose columns are all plain
    numbers (integers, floats, booleans; no nulls, no sorted flag) as numpy arrays, out of
    band like any array, rebuilt by ``polars.DataFrame(dict)`` / ``polars.Series(name,
    array)``: polars' own pickle (``serialize``) copies the whole frame into one IPC ``bytes``
    first (2/3 of joblib's dump time), and that byte format is not stable across polars
    versions, while numpy columns are. Both rebuild the same frame: same names, order,
    dtypes and values; polars wraps a numpy column without a copy. Any other frame (strings,
    nulls, dates, nested, a sorted flag to keep, a subclass) keeps polars' pickle."""
    plain = {
        polars.Int8,
        polars.Int16,
        polars.Int32,
        polars.Int64,
        polars.UInt8,
        polars.UInt16,
        polars.UInt32,
        polars.UInt64,
        polars.Float32,
        polars.Float64,
        polars.Boolean,
    }

    def column(s: Any) -> Any:
        """``s`` as a numpy array polars rebuilds exactly, or None."""
        if s.dtype not in plain or s.null_count() or any(s.flags.values()):
            return None
        arr = s.to_numpy()  # no copy for a numeric column in one chunk
        return arr if arr.ndim == 1 and len(arr) == len(s) and not arr.dtype.hasobject else None

    def frame(df: Any) -> Any:
        if df.width and df.estimated_size() >= POLARS_COLUMNS_MIN:
            columns = {}
            for s in df.iter_columns():
                arr = column(s)
                if arr is None:
                    break
                columns[s.name] = arr
            else:
                return polars.DataFrame, (columns,)
        return df.__reduce_ex__(5)

    def series(s: Any) -> Any:
        if s.estimated_size() >= POLARS_COLUMNS_MIN:
            arr = column(s)
            if arr is not None:
                return polars.Series, (s.name, arr)
        return s.__reduce_ex__(5)

    return {polars.DataFrame: frame, polars.Series: series}


class _Pickler(pickle.Pickler):
    pass


class _Parts:
    """A pickler's file that keeps what it is given, by reference: the C pickler hands its
    file each frame and, on its own, every payload of at least 64 KiB (the `bytes` object
    itself), so a large in-band object is never copied to be dumped."""

    __slots__ = ("parts", "write")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.write = self.parts.append


_DISPATCH: Optional[dict] = None
_DISPATCH_POLARS = False

#: `bytes` / `bytearray` / `str` payloads of at least this many bytes (a `str`: its UTF-8
#: bytes) become records of their own (docs/format.md, "In-band objects")
IN_BAND_MIN: int = _core.F2_IN_BAND_MIN

# per kind (0 bytes, 1 bytearray, 2 str): the pickle around such a record, which makes it
# `bytes(arr)`, `bytearray(arr)` or `str(arr, "utf-8", "surrogatepass")` of the uint8 array
# joblib reads, and of the object joblite reads it into (`bytes(b)` is `b` itself)
IN_BAND_PREFIX: tuple[bytes, ...] = _core.F2_IN_BAND_PREFIX
IN_BAND_SUFFIX: tuple[bytes, ...] = _core.F2_IN_BAND_SUFFIX


def _pickle(value: Any, protocol: int = 5) -> tuple[list, list]:
    """The pickle stream of ``value`` as the parts the pickler wrote, and its buffers."""
    global _DISPATCH, _DISPATCH_POLARS
    if _DISPATCH is None:
        _DISPATCH = _array_reducer()
    if not _DISPATCH_POLARS and "polars" in sys.modules:  # never imported here
        polars = sys.modules["polars"]
        if hasattr(polars, "DataFrame") and hasattr(polars, "Series"):  # not half imported
            _DISPATCH = {**_DISPATCH, **_polars_reducer(polars)}
            _DISPATCH_POLARS = True
    buffers: list[pickle.PickleBuffer] = []
    out = _Parts()
    p = _Pickler(out, protocol=5, buffer_callback=buffers.append)
    p.dispatch_table = _DISPATCH
    p.dump(value)
    return out.parts, buffers


def _stream(value: Any) -> tuple[list, list]:
    """:func:`_pickle`, except for a large ASCII ``str``: its stream is written here as the
    C pickler writes it (BINUNICODE, MEMOIZE, STOP), with the string itself as the payload
    part (``f2_dump`` takes a ``str`` part as its UTF-8 bytes, which for ASCII are its
    characters): the pickler would first copy them into a new ``bytes`` object."""
    if type(value) is str and IN_BAND_MIN <= len(value) < 1 << 32 and value.isascii():
        return [b"\x80\x05X" + len(value).to_bytes(4, "little"), value, b"\x94."], []
    return _pickle(value)


def _raw(pb: pickle.PickleBuffer) -> memoryview:
    try:
        return pb.raw()
    except BufferError:  # not contiguous: only a copy can be stored
        return memoryview(memoryview(pb).tobytes())


def _dump(
    value: Any, path: Optional[str], codec: str, level: int, dump_start: int, fsync: bool
) -> Optional[bytes]:
    """Pickle ``value`` and hand the stream and its buffers to Rust, which lays out and
    writes the dump (into ``path``, or returned)."""
    stream, pbufs = _stream(value)
    views = [_raw(pb) for pb in pbufs]
    out: Optional[bytes] = _core.f2_dump(
        path, stream, views, CODEC_IDS[codec], level, dump_start, fsync
    )
    return out


def write_path(value: Any, tmp: str, codec: str, level: int, fsync: bool) -> None:
    """Write one dump into the (existing, empty) temp file ``tmp``."""
    _dump(value, tmp, codec, level, 0, fsync)


def write_bytes(value: Any, codec: str, level: int, dump_start: int = 0) -> bytes:
    """One dump, in memory (``dump_start``: where it will lie in its file)."""
    out = _dump(value, None, codec, level, dump_start, False)
    assert out is not None  # f2_dump returns the bytes when given no path
    return out


# --- reading ---------------------------------------------------------------------------------


def load_reader(
    reader: Any,
    path: Optional[str],
    mmap_mode: Optional[str],
    allow_pickle: bool,
    verify: Optional[bool],
    native: bool = False,
) -> Any:
    """Rebuild the object of an open :class:`_core.F2Reader`; ``native`` swaps arrays to the
    host's byte order (joblib's ``ensure_native_byte_order``)."""
    import numpy as np

    from .unpickle import unpickle_stream

    info = reader.buffers()
    mapped_writable = bool(reader.flags & _FLAG_MAPPED_WRITABLE)
    stream, small = reader.stream(True)  # the stream and small buffers: always verified
    in_band = _in_band_records(reader, info, stream)
    mm = None
    if mmap_mode is not None and path is not None and reader.codec == "none":
        if any(own and n > 0 and k not in in_band for k, (n, own, _) in enumerate(info)):
            mode = "r+" if mmap_mode == "w+" else mmap_mode
            if mode == "r+":
                reader.mark_mapped_writable()
                mapped_writable = True
            mm = np.memmap(path, dtype=np.uint8, mode=mode)
    buffers: list[Any] = []
    jobs: list[tuple[int, Any]] = []
    for k, (n, own, offset) in enumerate(info):
        if not own and n == 0 and mmap_mode is not None and path is not None:
            if reader.codec == "none":  # a slice of nothing is no longer a memmap
                mode = "r+" if mmap_mode == "w+" else mmap_mode
                buffers.append(np.memmap(path, np.uint8, mode, 0, (0,)))
                continue
        if not own:
            buf: Any = small[k]
            buffers.append(memoryview(buf).toreadonly() if mmap_mode == "r" else buf)
            continue
        if k in in_band:
            # read straight into the object's one buffer (never mapped: a `bytes` cannot
            # be a memory map); the stream makes it `bytes(b)` (`b` itself),
            # `bytearray(b)` or `str(b, "utf-8", "surrogatepass")`
            stale_k = mapped_writable and reader.codec == "none"
            try:
                buffers.append(reader.read_bytes(k, verify is not False and not stale_k))
            except MemoryError as e:
                raise CorruptFileError(
                    path,
                    f"cannot allocate the {n} bytes the file declares for an object (it is "
                    "damaged or hostile, or larger than this machine's memory)",
                ) from e
            continue
        if mm is not None and offset is not None:
            view = mm[offset : offset + n]
            view.offset = offset
            if verify is True and not mapped_writable:
                reader.verify_buffer(k, view)
            buffers.append(view)
            continue
        jobs.append((k, n))
        buffers.append(None)
    # Arrays are allocated a wave at a time, each wave decoded before the next is allocated:
    # an index declaring more than its chunks hold fails on its first wave, never asking
    # for the whole declared size at once (and a size no allocator grants is a damaged file).
    stale = mapped_writable and reader.codec == "none"
    wave: list[tuple[int, Any]] = []
    size = 0
    for i, (k, n) in enumerate(jobs):
        try:
            dst = np.empty(n, dtype=np.uint8)
        except MemoryError as e:
            raise CorruptFileError(
                path,
                f"cannot allocate the {n} bytes the file declares for an array (it is "
                "damaged or hostile, or larger than this machine's memory)",
            ) from e
        wave.append((k, dst))
        buffers[k] = memoryview(dst).toreadonly() if mmap_mode == "r" else dst
        size += n
        if size >= _WAVE or i == len(jobs) - 1:
            reader.read_buffers(wave, verify is not False and not stale)
            wave, size = [], 0
    return unpickle_stream(stream, buffers, path, allow_pickle, mmap_mode, native)


def _in_band_records(reader: Any, info: list, stream: bytes) -> set[int]:
    """The buffers that are in-band objects' records: those owning chunks whose NEXT_BUFFER
    sits between one of :data:`IN_BAND_PREFIX` and the matching suffix. The stream passed
    its checksum; and since ``bytes(x)``, ``bytearray(x)`` and ``str(x, "utf-8",
    "surrogatepass")`` give the same object whether ``x`` is an array or a ``bytes``,
    reading such a buffer as ``bytes`` never changes what the stream builds."""
    found: set[int] = set()
    if not info:
        return found
    for k, at in enumerate(reader.buffer_positions()):
        n, own, _ = info[k]
        if not own or n == 0 or stream[at - 1 : at] != b"\x93":
            continue
        for pre, suf in zip(IN_BAND_PREFIX, IN_BAND_SUFFIX):
            if (
                at >= len(pre)
                and stream[at - len(pre) : at] == pre
                and stream[at + 1 : at + 1 + len(suf)] == suf
            ):
                found.add(k)
                break
    return found


def open_file(path: str, offset: int = 0) -> Any:
    """The :class:`_core.F2Reader` of the dump at ``offset`` of ``path``, or None."""
    return _core.F2Reader.open(path, offset)


def open_bytes(data: Any, name: Optional[str] = None) -> Any:
    """The :class:`_core.F2Reader` of the dump at the start of ``data``, or None."""
    return _core.F2Reader.from_buffer(data, name)


# --- single-stream codecs (lzma, registered compressors) -------------------------------------


def write_stream(value: Any, sink: Any, compressor: Callable[[Any], Any]) -> None:
    """Write an uncompressed dump through a compressor file object (``compressor(sink)``)."""
    data = write_bytes(value, "none", 0)
    f = compressor(sink)
    try:
        f.write(data)
    finally:
        f.close()


def read_stream(fobj: Any, name: Optional[str]) -> Optional[bytearray]:
    """The uncompressed dump a decompressor file object yields, or None if it is not format 2
    (see :func:`read_one_dump`)."""
    data, is_dump = read_one_dump(fobj, name)
    return data if is_dump else None


def read_one_dump(fobj: Any, name: Optional[str]) -> tuple[bytearray, bool]:
    """Read the dump a stream (a socket, a decompressor) starts with, and never past it:
    ``(bytes read, True)``; ``(bytes read, False)`` when the stream does not start with a
    dump whose header unit is stored as is (every codec but bz2 and xz, whose length is not
    known before decoding; the caller decides what the rest is).

    No declared size is believed before it is checked: the index's fixed part bounds the
    index's length, and the verified index the dump's (``_core.f2_stream_len``); memory grows
    only with the bytes the stream really delivers. A stream that ends early returns what it
    gave (the reader then reports the truncation); a size past its bound raises
    :class:`joblite.CorruptFileError` naming ``name``.
    """
    data = bytearray()
    want = 11 + 64  # uncompressed: PROTO, BINBYTES8, the index length, the index's fixed part
    while True:
        if not _read_into(fobj, data, want - len(data)):
            return data, _core.f2_stream_len(data, name) is not None
        want = _core.f2_stream_len(data, name)
        if want is None:
            return data, False
        if want <= len(data):
            return data, True


def _read_into(fobj: Any, data: bytearray, n: int) -> bool:
    """Append up to ``n`` bytes of ``fobj`` to ``data``, 16 MiB at a time (memory grows
    with what arrives); False when the stream ended first."""
    while n > 0:
        block = fobj.read(min(n, 16 << 20))
        if not block:
            return False
        data += block
        n -= len(block)
    return True
