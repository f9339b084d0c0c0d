"""Reader for every file format joblib has written, without importing joblib.

- joblib 0.10 - 1.6: one file; the pickle stream holds ``NumpyArrayWrapper`` objects, each
  followed in the file by its array's raw bytes (since 1.2 after an alignment-padding byte);
  the whole file may be compressed (zlib, gzip, bz2, lzma, xz, lz4), recognised by its
  first bytes.
- joblib <= 0.9: ``NDArrayWrapper`` objects pointing to ``.npy`` files beside the pickle, or
  (compressed) ``ZNDArrayWrapper`` objects pointing to zlib "Z-files", with the main pickle
  itself a Z-file (``ZF`` prefix).

The pickle stream is read by the pure-Python unpickler (the C one reads ahead and would
swallow the array bytes that follow each wrapper), with ``find_class`` mapping joblib's
wrapper classes to the readers below. Compressed files are decompressed as a stream that
stops at the pickle's STOP opcode, as joblib does; every size the stream declares is checked
against what is really there before memory is committed to it, and whatever goes wrong with
damaged bytes comes out as :class:`~joblite.CorruptFileError` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import sys
import warnings
import zlib
from typing import Any, BinaryIO, Optional

from .. import _core
from ..exceptions import CorruptFileError, UnsafeLoadError
from . import codecs
from .files import DAMAGE, check_regular, open_regular
from .safe import NDARRAY, SafeGlobals, check_build, check_built, check_dtype, refuse

_ZFILE_PREFIX = b"ZF"
_REGISTERED_KIND = "registered:"
_COMPRESSED_PREFIXES = [
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\xfd\x37\x7a\x58\x5a", "xz"),
    (b"\x5d\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
]
_ZFILE_LEN_FIELD = len(hex(2**64))
# the modules joblib's wrapper classes were pickled from: joblib itself, and the copy that
# scikit-learn < 0.23 shipped (exact names: nothing else maps to our readers)
_WRAPPER_MODULES = frozenset(
    prefix + module
    for prefix in ("", "sklearn.externals.")
    for module in ("joblib.numpy_pickle", "joblib.numpy_pickle_compat")
)
# Largest ratio of decoded to compressed bytes each codec can reach (deflate's is 1032:1, lz4
# frames 255:1, LZMA's about 7000:1; bz2 has none worth using): an array claiming more than the
# compressed file could hold is refused before memory is set aside for it.
_MAX_RATIO = {"zlib": 1100, "gzip": 1100, "lz4": 300, "xz": 1 << 16, "lzma": 1 << 16}
# a decoded stream is read and buffered in pieces of at most this many bytes
_PIECE = 16 << 20
# longest text line (protocol 0 opcodes) accepted from a decompressed stream
_MAX_LINE = 64 << 20
_OLD_FORMAT_WARNING = (
    "The file '%s' has been generated with a joblib version less than 0.10. "
    "Please regenerate this pickle file."
)


def detect(head: bytes) -> Optional[str]:
    """The compression of a joblib file from its first bytes (None: not compressed)."""
    if head.startswith(_ZFILE_PREFIX):
        return "zfile"
    for prefix, name in _COMPRESSED_PREFIXES:
        if head.startswith(prefix):
            return name
    # compressors registered like joblib's, recognised by their magic bytes
    for name, reg in codecs.REGISTERED.items():
        if reg.prefix and head.startswith(reg.prefix):
            return _REGISTERED_KIND + name
    return None


def _decompress(kind: str, data: bytes) -> bytes:
    """A registered compressor's whole stream, decoded (the built-in codecs are read as
    streams by :func:`_open_stream`)."""
    if kind.startswith(_REGISTERED_KIND):
        return codecs.registered(kind[len(_REGISTERED_KIND) :]).decompress(data)
    raise ValueError(kind)


def read_zfile(data: bytes) -> bytes:
    """Decode a joblib <= 0.9 Z-file: ``ZF``, the length in hex padded to 19 chars, zlib."""
    header = data[len(_ZFILE_PREFIX) : len(_ZFILE_PREFIX) + _ZFILE_LEN_FIELD]
    try:
        length = int(header, 16)
    except ValueError as exc:
        raise ValueError(f"bad Z-file length field {header!r}") from exc
    body = data[len(_ZFILE_PREFIX) + _ZFILE_LEN_FIELD :]
    if body[:1] == b" ":  # joblib <= 0.8.4 wrote one more space
        body = body[1:]
    # never pre-allocate the declared length, nor decode past it
    dec = zlib.decompressobj()
    out = dec.decompress(body, length + 1)
    if len(out) != length or not dec.eof:
        raise ValueError(f"Z-file declares {length} bytes, holds {len(out)}")
    return out


class _ZlibReader(io.RawIOBase):
    """A zlib stream (joblib's ``compress="zlib"``) decoded piece by piece."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._dec = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        out = memoryview(buf).cast("B")
        while not self._dec.eof:
            data = self._dec.unconsumed_tail or self._fh.read(1 << 16)
            if not data:
                raise EOFError("compressed data ends before the end of its stream")
            piece = self._dec.decompress(data, len(out))
            if piece:
                out[: len(piece)] = piece
                return len(piece)
        return 0  # bytes after the end of the stream are never interpreted


class _Lz4Reader(io.RawIOBase):
    """An lz4 frame stream decoded piece by piece (in Rust, GIL released), reading the
    compressed file as it goes (never whole)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._frames = _core.Lz4FrameReader(fh)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n: int = self._frames.readinto(buf)
        return n


def _open_stream(kind: str, fh: BinaryIO) -> BinaryIO:
    """A file object decoding the compressed file ``fh`` as it is read."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(fh)  # type: ignore[return-value]
    if kind in ("xz", "lzma"):
        return lzma.LZMAFile(fh)  # type: ignore[return-value]
    if kind == "zlib":
        return io.BufferedReader(_ZlibReader(fh), 1 << 16)  # type: ignore[return-value]
    if kind == "lz4":
        return io.BufferedReader(_Lz4Reader(fh), 1 << 16)  # type: ignore[return-value]
    # registered codecs decode whole buffers only
    data = _decompress(kind, fh.read())
    return io.BytesIO(data)


class _Input:
    """What the unpickler reads from: refuses reads past the known end of a file, and reads
    a decoded stream in bounded pieces, so a declared length costs memory only for the bytes
    that really follow."""

    def __init__(self, fh: Any, size: Optional[int], bound: Optional[int]) -> None:
        self.fh = fh
        self.size = size  # None: a decoded stream of unknown length
        self.bound = bound  # most bytes the stream can decode to, if known
        self.pos = 0

    def remaining(self) -> Optional[int]:
        """Bytes left (exact for a file, an upper bound or None for a stream)."""
        if self.size is not None:
            return self.size - self.tell()
        return None if self.bound is None else self.bound - self.pos

    def tell(self) -> int:
        return self.fh.tell() if self.size is not None else self.pos

    def seek(self, offset: int) -> None:
        self.fh.seek(offset)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise pickle.UnpicklingError("unbounded read")
        left = self.remaining()
        if left is not None and n > left:
            raise EOFError(f"{n} bytes declared, fewer left in the file")
        if n <= _PIECE:
            data = self.fh.read(n)
        else:
            pieces = []
            got = 0
            while got < n:
                piece = self.fh.read(min(_PIECE, n - got))
                if not piece:
                    break
                pieces.append(piece)
                got += len(piece)
            data = b"".join(pieces)
        self.pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        out = memoryview(buf).cast("B")
        left = self.remaining()
        if left is not None and len(out) > left:
            raise EOFError(f"{len(out)} bytes declared, fewer left in the file")
        got = 0
        while got < len(out):
            n = self.fh.readinto(out[got : got + _PIECE])
            if not n:
                break
            got += n
        self.pos += got
        return got

    def readline(self) -> bytes:
        line: bytes = self.fh.readline(_MAX_LINE)
        if len(line) == _MAX_LINE and not line.endswith(b"\n"):
            raise pickle.UnpicklingError(f"a text line longer than {_MAX_LINE} bytes")
        self.pos += len(line)
        return line


def _is_wrapper_module(module: str) -> bool:
    return module in _WRAPPER_MODULES


def _foreign_order(dt: Any) -> bool:
    """joblib's rule: a dtype in the other byte order, or a structured dtype whose fields
    all are (a structured dtype mixing orders, or with a nested one, is kept as it is)."""
    other = ">" if sys.byteorder == "little" else "<"
    if dt.byteorder == other:
        return True
    fields = dt.fields
    return bool(
        dt.byteorder == "|" and fields and all(f[0].byteorder == other for f in fields.values())
    )


def ensure_native(arr: Any) -> Any:
    """The array in the host's byte order (a swapped copy when joblib's rule says so):
    what joblib's ``load`` returns with ``ensure_native_byte_order``."""
    dt = getattr(arr, "dtype", None)
    if dt is not None and _foreign_order(dt):
        return arr.byteswap().view(dt.newbyteorder("="))
    return arr


_native = ensure_native


class _MemmapClass:
    """Stands for ``numpy.memmap`` in a safe load (a wrapper's ``subclass``); never callable."""


class NumpyArrayWrapper:
    """Stands for joblib's NumpyArrayWrapper: array metadata, data follows in the stream."""

    def read(self, u: JoblibUnpickler) -> Any:
        import numpy as np

        dtype = np.dtype(self.dtype)
        shape = tuple(int(x) for x in self.shape)
        order = getattr(self, "order", "C")
        align = getattr(self, "numpy_array_alignment_bytes", None)
        # object fields hidden from `hasobject`, fields outside the items: never read into
        check_dtype(dtype, allow_object=u.safe is None)
        if dtype.hasobject:
            return _InnerUnpickler(u.fh, u.find_class).load()
        count = _checked_count(shape, dtype.itemsize)
        nbytes = count * dtype.itemsize
        if u.mmap_mode is not None and getattr(self, "allow_mmap", False) and u.path:
            return self._read_mmap(u, dtype, shape, order, align, nbytes)
        if align is not None:
            pad = u.fh.read(1)
            if len(pad) != 1:
                raise EOFError("array data ends early")
            if len(u.fh.read(pad[0])) != pad[0]:
                raise EOFError("array data ends early")
        left = u.fh.remaining()
        if left is not None and nbytes > left:
            raise EOFError(f"array of {nbytes} bytes declared, fewer left in the file")
        if u.fh.size is None and nbytes > _PIECE:
            # a decoded stream (bz2 has no useful bound; xz's is 65536x the file): memory
            # grows with the bytes that really arrive, never reserved for a declared size
            buf = np.frombuffer(_read_growing(u.fh, nbytes), dtype=np.uint8)
        else:
            buf = np.empty(nbytes, dtype=np.uint8)  # pages cost memory only once written
            if u.fh.readinto(buf) != nbytes:
                raise EOFError("array data ends early")
        arr = buf.view(dtype)
        arr = arr.reshape(shape[::-1]).T if order == "F" else arr.reshape(shape)
        return _native(arr) if u.native else arr

    def _read_mmap(
        self, u: JoblibUnpickler, dtype: Any, shape: tuple, order: str, align: Any, nbytes: int
    ) -> Any:
        import numpy as np

        offset = start = u.fh.tell()
        if align is not None:
            pad = u.fh.read(1)
            if len(pad) != 1:
                raise EOFError("array data ends early")
            offset += 1 + pad[0]
        if u.size is None or nbytes > u.size - offset:
            raise EOFError(f"array of {nbytes} bytes declared, fewer left in the file")
        mode = "r+" if u.mmap_mode == "w+" else u.mmap_mode
        arr = np.memmap(u.path, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)
        u.fh.seek(offset + nbytes)
        if align is None and start % 16:  # joblib < 1.2 did not align arrays; joblib's words
            warnings.warn(
                f"The memmapped array {arr} loaded from the file {u.path} is not byte "
                "aligned. This may cause segmentation faults if this memmapped array is used "
                "in some libraries like BLAS or PyTorch. To get rid of this warning, "
                "regenerate your pickle file with joblib >= 1.2.0. "
                "See https://github.com/joblib/joblib/issues/563 for more details",
                stacklevel=2,
            )
        return arr


_MAX_INTP = (1 << 63) - 1


def _checked_count(shape: tuple, itemsize: int) -> int:
    """The number of items of ``shape``, refused where numpy refuses to make such an array:
    a negative dimension, or the nonzero dimensions times the itemsize (at least 1) past
    the largest ``intp``. A memory map of a zero-size dtype skips numpy's own check, and
    would give an array whose size wrapped around (numpy then loops on it forever)."""
    count = 1
    nonzero = max(itemsize, 1)
    for n in shape:
        if n < 0:
            raise ValueError(f"negative dimension in shape {shape}")
        count *= n
        nonzero *= n or 1
        if nonzero > _MAX_INTP:
            raise ValueError(f"array of shape {shape} and itemsize {itemsize} is too big")
    return count


def _read_growing(fh: _Input, nbytes: int) -> bytearray:
    """``nbytes`` bytes of ``fh``, read a piece at a time into a growing buffer."""
    out = bytearray()
    while len(out) < nbytes:
        piece = fh.read(min(_PIECE, nbytes - len(out)))
        if not piece:
            raise EOFError(f"array of {nbytes} bytes declared, the stream ends after {len(out)}")
        out += piece
    return out


class NDArrayWrapper:
    """Stands for joblib <= 0.9's NDArrayWrapper: the array is a ``.npy`` file beside."""

    def _companion(self, u: JoblibUnpickler) -> str:
        name = str(self.filename)
        if u.path is None:
            raise ValueError("this joblib <= 0.9 format keeps arrays in companion files")
        if u.safe is not None and (os.sep in name or "/" in name or name.startswith(".")):
            raise refuse(f"companion file name {name!r}")
        companion = os.path.join(os.path.dirname(u.path), name)
        check_regular(companion)
        return companion

    def read(self, u: JoblibUnpickler) -> Any:
        import numpy as np

        mmap = u.mmap_mode if getattr(self, "allow_mmap", True) else None
        if mmap == "w+":
            mmap = "r+"
        arr = np.load(self._companion(u), mmap_mode=mmap, allow_pickle=u.safe is None)
        if u.safe is not None:
            check_dtype(arr.dtype)
        return _native(arr) if u.native else arr


class ZNDArrayWrapper(NDArrayWrapper):
    """Stands for joblib <= 0.9's ZNDArrayWrapper: array bytes in a zlib Z-file beside."""

    def read(self, u: JoblibUnpickler) -> Any:
        import numpy as np

        subclass, shape, dtype_code = self.init_args
        if u.safe is not None and subclass is not NDARRAY:
            raise refuse(f"array subclass {subclass!r}")
        # numpy's reduce always gives (0,): the state brings the real shape, checked against
        # the data; any other shape would allocate what no byte of the file accounts for
        if not isinstance(shape, tuple) or 0 not in shape:
            raise ValueError(f"array reconstructor with non-empty shape {shape!r}")
        arr = np.ndarray.__new__(np.ndarray, shape, dtype_code)
        with open_regular(self._companion(u)) as f:
            data = read_zfile(f.read())
        state = (*tuple(self.state), data)
        for item in state:
            if isinstance(item, np.dtype):
                check_dtype(item, allow_object=u.safe is None)
        arr.__setstate__(state)
        return arr


_WRAPPERS = {
    "NumpyArrayWrapper": NumpyArrayWrapper,
    "NDArrayWrapper": NDArrayWrapper,
    "ZNDArrayWrapper": ZNDArrayWrapper,
}


class _InnerUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Reads the nested pickle of an object-dtype array, resolving globals like the outer.

    The pure-Python unpickler, as for the outer stream: the C one sizes its memo by the
    index a PUT / LONG_BINPUT names, so five damaged bytes could make it ask for (and
    zero) gigabytes; this one keeps the memo in a dict, and reads BYTEARRAY8 as the outer
    does (never allocating a declared length before the bytes are there)."""

    dispatch = pickle._Unpickler.dispatch.copy()  # type: ignore[attr-defined]

    def __init__(self, fh: Any, find_class: Any) -> None:
        super().__init__(fh)
        self._find = find_class

    def find_class(self, module: str, name: str) -> Any:
        return self._find(module, name)

    def load_build(self) -> None:
        inst, state = self.stack[-2:]
        check_build(inst, state, True)  # numpy trusts an array's state: checked first
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        check_built(self.stack[-1], True)

    dispatch[pickle.BUILD[0]] = load_build


class _LookupError(Exception):
    """A global named by the stream could not be imported (re-raised as the original)."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class JoblibUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler, replacing joblib's array wrappers by the arrays they stand
    for as soon as their state is set (BUILD)."""

    dispatch = pickle._Unpickler.dispatch.copy()  # type: ignore[attr-defined]

    def __init__(
        self, fh: _Input, path: Optional[str], mmap_mode: Optional[str], safe: bool
    ) -> None:
        super().__init__(fh)
        self.fh = fh
        self.path = path
        self.size = fh.size
        self.mmap_mode = mmap_mode
        self.safe = SafeGlobals() if safe else None
        self.compat_mode = False
        self.native = mmap_mode is None  # joblib's ensure_native_byte_order="auto"

    def find_class(self, module: str, name: str) -> Any:
        if _is_wrapper_module(module) and name in _WRAPPERS:
            if name != "NumpyArrayWrapper":
                self.compat_mode = True
            return _WRAPPERS[name]
        if self.safe is not None:
            if module == "numpy" and name == "memmap":
                return _MemmapClass
            return self.safe.find_class(module, name)
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as exc:
            raise _LookupError(exc) from exc

    def load_build(self) -> None:
        inst, state = self.stack[-2:]
        check_build(inst, state, self.safe is None)  # before numpy trusts it
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        top = self.stack[-1]
        check_built(top, self.safe is None)
        if isinstance(top, (NumpyArrayWrapper, NDArrayWrapper)):
            arr = top.read(self)
            if self.safe is not None:
                self.safe.arrays.append(arr)
            self.stack[-1] = arr

    dispatch[pickle.BUILD[0]] = load_build

    def load_bytearray8(self) -> None:
        # the stock one allocates (and zero-fills) the declared length before reading
        (n,) = struct.unpack("<Q", self.read(8))
        if n > sys.maxsize:
            raise pickle.UnpicklingError("BYTEARRAY8 exceeds system's maximum size")
        data = self.read(n)
        if len(data) != n:
            raise EOFError("bytearray data ends early")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def load_checked(self) -> Any:
        value = self.load()
        if self.safe is not None:
            self.safe.check()
        return value


# the inner stream reads BYTEARRAY8 as the outer one does
_InnerUnpickler.dispatch[pickle.BYTEARRAY8[0]] = JoblibUnpickler.load_bytearray8


def _drain(stream: BinaryIO, limit: int) -> None:
    """Decode what follows the pickle, up to ``limit`` bytes, so that the codec reaches the
    end of its stream and checks its checksum (gzip's CRC-32, zlib's Adler-32, bz2's and
    xz's block checks). A stream that goes on past ``limit`` is left unread, as joblib does."""
    left = limit
    while left > 0:
        piece = stream.read(min(left, 1 << 20))
        if not piece:
            return
        left -= len(piece)


# a damaged codec name in a py2 pickle (`_codecs.encode(text, "lathn1")`): damage too
_DAMAGE = (*DAMAGE, LookupError)


def load(
    path: Optional[str],
    data: Optional[bytes],
    head: bytes,
    mmap_mode: Optional[str],
    safe: bool,
    fh: Optional[BinaryIO] = None,
    native: Optional[bool] = None,
    end: Optional[list] = None,
) -> Any:
    """Load a joblib file or joblib bytes, whatever its version.

    ``fh`` is the file opened by the caller (a regular file, positioned anywhere), ``data``
    the bytes of an in-memory file; with neither, ``path`` is opened. ``native``: swap arrays
    to the host's byte order (None: when they are not memory-mapped, joblib's "auto").
    ``end``: where the bytes of an uncompressed in-memory file's pickle end is appended to it
    (the position joblib leaves a file object at).
    """
    kind = detect(head)
    what = "joblib file" if kind is not None or head[:1] == b"\x80" else "joblite/joblib file"
    own = None
    try:
        if fh is None:
            fh = own = io.BytesIO(data) if data is not None else open(path, "rb")  # type: ignore[arg-type]
        return _load(fh, path, kind, mmap_mode, safe, native, end)
    except CorruptFileError as exc:
        if exc.path is None and path is not None:
            raise CorruptFileError(path, exc.reason) from exc
        raise
    except UnsafeLoadError:
        raise
    except _LookupError as exc:
        raise exc.original from None
    except Warning:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the system's error (EIO, ...), not damaged bytes
            raise
        raise CorruptFileError(path, f"not a valid {what} ({type(exc).__name__}: {exc})") from exc
    except UnicodeDecodeError as exc:
        raise CorruptFileError(
            path,
            "You may be trying to read with python 3 a joblib pickle generated with python 2. "
            f"This feature is not supported by joblib. ({exc})",
        ) from exc
    except _DAMAGE as exc:
        if kind is None and head[:1] != b"\x80" and not isinstance(exc, pickle.UnpicklingError):
            raise CorruptFileError(path, "not a joblite or joblib file (unknown format)") from exc
        raise CorruptFileError(path, f"not a valid {what} ({type(exc).__name__}: {exc})") from exc
    finally:
        if own is not None:
            own.close()


def _load(
    fh: BinaryIO,
    path: Optional[str],
    kind: Optional[str],
    mmap_mode: Optional[str],
    safe: bool,
    native: Optional[bool],
    end: Optional[list] = None,
) -> Any:
    fh.seek(0)
    if kind == "zfile":
        warnings.warn(_OLD_FORMAT_WARNING % path, DeprecationWarning, stacklevel=4)
        data = read_zfile(fh.read())
        # warned once above, as joblib does (not again for the wrappers inside)
        inp = _Input(io.BytesIO(data), len(data), None)
        return _unpickle(inp, path, None, safe, native, warn_old=False)
    if kind is None:
        _refuse_damaged_format2(fh.read(32), path)
        fh.seek(0)
        size = os.fstat(fh.fileno()).st_size if _has_fileno(fh) else None
        if size is None:  # in-memory bytes
            size = fh.seek(0, io.SEEK_END)
            fh.seek(0)
            value = _unpickle(_Input(fh, size, None), path, None, safe, native, mmap_mode)
            if end is not None:
                end.append(fh.tell())
            return value
        return _unpickle(_Input(fh, size, None), path, mmap_mode, safe, native)
    compressed = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    ratio = _MAX_RATIO.get(kind)
    bound = None if ratio is None else compressed * ratio + (1 << 16)
    with _open_stream(kind, fh) as stream:
        if hasattr(stream, "peek"):
            _refuse_damaged_format2(stream.peek(32)[:32], path)
        inp = _Input(stream, None, bound)
        # joblib: "auto" means native order unless mmap_mode was given (even if ignored)
        value = _unpickle(inp, path, None, safe, mmap_mode is None if native is None else native)
        _drain(stream, max(64 << 20, 4 * inp.pos))
    # joblib's warning, given once the file has loaded (a damaged one raises only its error)
    if mmap_mode is not None:
        warnings.warn(
            f'mmap_mode "{mmap_mode}" is not compatible with compressed file {path}. '
            f'"{mmap_mode}" flag will be ignored.',
            stacklevel=4,
        )
    return value


_F2_MAGIC = b"JOBLITE\x02"
_F2_AT = 11  # after PROTO 5 and the BINBYTES8 opcode + length that hold the index


def _refuse_damaged_format2(start: bytes, path: Optional[str]) -> None:
    """A joblite format-2 file whose index failed to parse is still a valid joblib pickle:
    read as one, it would load with no checksum at all. Its header is recognised even with
    a few bytes damaged, and refused."""
    window = start[_F2_AT : _F2_AT + len(_F2_MAGIC)]
    # an intact magic with an index the format-2 reader declined is a file decompressed by
    # an outside tool (gzip -d): a plain joblib file, read as such
    same = sum(a == b for a, b in zip(window, _F2_MAGIC))
    if len(window) == len(_F2_MAGIC) and 5 <= same < len(_F2_MAGIC):
        raise CorruptFileError(
            path, "damaged joblite format-2 header: its checksummed index cannot be read"
        )


def _has_fileno(fh: Any) -> bool:
    try:
        fh.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _unpickle(
    inp: _Input,
    path: Optional[str],
    mmap_mode: Optional[str],
    safe: bool,
    native: Optional[bool],
    ignored_mmap: Optional[str] = None,
    warn_old: bool = True,
) -> Any:
    if ignored_mmap is not None:
        warnings.warn(
            "In memory persistence is not compatible with "
            f'mmap_mode "{ignored_mmap}" flag passed. mmap_mode option will be ignored.',
            stacklevel=5,
        )
    unpickler = JoblibUnpickler(inp, path, mmap_mode, safe)
    if native is not None:
        unpickler.native = native
    value = unpickler.load_checked()
    if unpickler.compat_mode and warn_old:
        warnings.warn(_OLD_FORMAT_WARNING % path, DeprecationWarning, stacklevel=4)
    return value


__all__ = ["detect", "load", "read_zfile"]
