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
wrapper classes to the readers below.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import zlib
from typing import Any, Optional

from .. import _core
from ..exceptions import CorruptFileError, UnsafeLoadError
from . import codecs
from .safe import SafeGlobals, refuse

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
_WRAPPER_MODULES = ("joblib.numpy_pickle", "joblib.numpy_pickle_compat")


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
    if kind == "zlib":
        return zlib.decompress(data)
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "bz2":
        return bz2.decompress(data)
    if kind in ("xz", "lzma"):
        return lzma.decompress(data)
    if kind == "lz4":
        out: bytes = _core.lz4_frame_decompress(data)
        return out
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
    # never pre-allocate the declared length; compare afterwards
    out = zlib.decompress(body)
    if len(out) != length:
        raise ValueError(f"Z-file declares {length} bytes, holds {len(out)}")
    return out


def _is_wrapper_module(module: str) -> bool:
    return any(module == m or module.endswith("." + m) for m in _WRAPPER_MODULES)


def _native(arr: Any) -> Any:
    """The array in the host's byte order (what joblib's default load returns)."""
    dt = arr.dtype
    if dt.fields is None and dt.byteorder not in ("=", "|") and not dt.isnative:
        return arr.byteswap().view(dt.newbyteorder("="))
    return arr


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
        if dtype.hasobject:
            if u.safe is not None:
                raise refuse(f"a numpy array of object dtype ({dtype})")
            return _InnerUnpickler(u.fh, u.find_class).load()
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        if u.mmap_mode is not None and getattr(self, "allow_mmap", False) and u.path:
            return self._read_mmap(u, dtype, shape, order, align, nbytes)
        if align is not None:
            pad = u.fh.read(1)
            if len(pad) != 1:
                raise EOFError("array data ends early")
            u.fh.read(pad[0])
        if nbytes > u.remaining():
            raise EOFError(f"array of {nbytes} bytes declared, fewer left in the file")
        buf = np.empty(nbytes, dtype=np.uint8)
        if u.fh.readinto(buf) != nbytes:
            raise EOFError("array data ends early")
        arr = buf.view(dtype)
        arr = arr.reshape(shape[::-1]).T if order == "F" else arr.reshape(shape)
        return arr if u.mmap_mode is not None else _native(arr)

    def _read_mmap(
        self, u: JoblibUnpickler, dtype: Any, shape: tuple, order: str, align: Any, nbytes: int
    ) -> Any:
        import numpy as np

        offset = u.fh.tell()
        if align is not None:
            pad = u.fh.read(1)
            if len(pad) != 1:
                raise EOFError("array data ends early")
            offset += 1 + pad[0]
        if nbytes > u.size - offset:
            raise EOFError(f"array of {nbytes} bytes declared, fewer left in the file")
        mode = "r+" if u.mmap_mode == "w+" else u.mmap_mode
        arr = np.memmap(u.path, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)
        u.fh.seek(offset + nbytes)
        return arr


class NDArrayWrapper:
    """Stands for joblib <= 0.9's NDArrayWrapper: the array is a ``.npy`` file beside."""

    def _companion(self, u: JoblibUnpickler) -> str:
        name = str(self.filename)
        if u.path is None:
            raise ValueError("this joblib <= 0.9 format keeps arrays in companion files")
        if u.safe is not None and (os.sep in name or "/" in name or name.startswith(".")):
            raise refuse(f"companion file name {name!r}")
        return os.path.join(os.path.dirname(u.path), name)

    def read(self, u: JoblibUnpickler) -> Any:
        import numpy as np

        mmap = u.mmap_mode if getattr(self, "allow_mmap", True) else None
        if mmap == "w+":
            mmap = "r+"
        arr = np.load(self._companion(u), mmap_mode=mmap, allow_pickle=u.safe is None)
        if u.safe is not None and arr.dtype.hasobject:
            raise refuse(f"a numpy array of object dtype ({arr.dtype})")
        return _native(arr)


class ZNDArrayWrapper(NDArrayWrapper):
    """Stands for joblib <= 0.9's ZNDArrayWrapper: array bytes in a zlib Z-file beside."""

    def read(self, u: JoblibUnpickler) -> Any:
        import numpy as np

        subclass, shape, dtype_code = self.init_args
        if u.safe is not None and subclass is not np.ndarray:
            raise refuse(f"array subclass {subclass!r}")
        arr = np.ndarray.__new__(np.ndarray, shape, dtype_code)
        with open(self._companion(u), "rb") as f:
            data = read_zfile(f.read())
        state = (*tuple(self.state), data)
        if u.safe is not None:
            for item in state:
                if isinstance(item, np.dtype) and item.hasobject:
                    raise refuse(f"a numpy array of object dtype ({item})")
        arr.__setstate__(state)
        return arr


_WRAPPERS = {
    "NumpyArrayWrapper": NumpyArrayWrapper,
    "NDArrayWrapper": NDArrayWrapper,
    "ZNDArrayWrapper": ZNDArrayWrapper,
}


class _InnerUnpickler(pickle.Unpickler):
    """Reads the nested pickle of an object-dtype array, resolving globals like the outer."""

    def __init__(self, fh: Any, find_class: Any) -> None:
        super().__init__(fh)
        self._find = find_class

    def find_class(self, module: str, name: str) -> Any:
        return self._find(module, name)


class JoblibUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler, replacing joblib's array wrappers by the arrays they stand
    for as soon as their state is set (BUILD)."""

    dispatch = pickle._Unpickler.dispatch.copy()  # type: ignore[attr-defined]

    def __init__(
        self, fh: Any, path: Optional[str], size: int, mmap_mode: Optional[str], safe: bool
    ) -> None:
        super().__init__(fh)
        self.fh = fh
        self.path = path
        self.size = size
        self.mmap_mode = mmap_mode
        self.safe = SafeGlobals() if safe else None

    def remaining(self) -> int:
        return self.size - self.fh.tell()

    def find_class(self, module: str, name: str) -> Any:
        if _is_wrapper_module(module) and name in _WRAPPERS:
            return _WRAPPERS[name]
        if self.safe is not None:
            if module == "numpy" and name == "memmap":
                return _MemmapClass
            return self.safe.find_class(module, name)
        return super().find_class(module, name)

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        top = self.stack[-1]
        if isinstance(top, (NumpyArrayWrapper, NDArrayWrapper)):
            self.stack[-1] = top.read(self)

    dispatch[pickle.BUILD[0]] = load_build

    def load_checked(self) -> Any:
        value = self.load()
        if self.safe is not None:
            self.safe.check()
        return value


def load(
    path: Optional[str], data: Optional[bytes], head: bytes, mmap_mode: Optional[str], safe: bool
) -> Any:
    """Load a joblib file (``path``) or joblib bytes (``data``), whatever its version."""
    kind = detect(head)
    try:
        if kind is None and path is not None:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                return JoblibUnpickler(fh, path, size, mmap_mode, safe).load_checked()
        if data is None:
            assert path is not None
            with open(path, "rb") as f:
                data = f.read()
        if kind == "zfile":
            data = read_zfile(data)
        elif kind is not None:
            data = _decompress(kind, data)
        # a decompressed stream cannot be memory-mapped: arrays are read into memory
        mmap = None if kind is not None else mmap_mode
        fh = io.BytesIO(data)
        return JoblibUnpickler(fh, path, len(data), mmap, safe).load_checked()
    except (pickle.UnpicklingError, EOFError, ValueError, zlib.error, OSError, lzma.LZMAError) as e:
        if isinstance(e, (CorruptFileError, FileNotFoundError, UnsafeLoadError)):
            raise
        what = "joblib file" if kind is not None or head[:1] == b"\x80" else "joblite/joblib file"
        raise CorruptFileError(path, f"not a valid {what} ({type(e).__name__}: {e})") from e
    except (AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        if head[:1] != b"\x80" and kind is None:
            raise CorruptFileError(path, "not a joblite or joblib file (unknown format)") from e
        raise


__all__ = ["detect", "load", "read_zfile"]
