"""``joblib.numpy_pickle`` under joblite's alias: dump and load are joblite's; the pickler
classes write joblib's own file format for code that drives them directly.

:class:`NumpyPickler` is the pure-Python pickler that joblib's ``dump`` uses (libraries
subclass it to override ``save``, or set its ``dispatch_table``): every numpy array is
written as a ``joblib.numpy_pickle.NumpyArrayWrapper`` followed by the array's bytes,
aligned to 16 bytes when the file can tell its position. Both joblib and joblite read it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Optional

from ...persistence import dump, load

__all__ = ["NumpyArrayWrapper", "NumpyPickler", "dump", "load"]

_WRAPPER_MODULE = b"joblib.numpy_pickle"
_ALIGNMENT = 16
_CHUNK = 16 << 20


class NumpyArrayWrapper:
    """An array's metadata in joblib's file format; its bytes follow it in the file.

    Parameters
    ----------
    subclass : type
        ``numpy.ndarray`` or the array's subclass.
    shape : tuple of int
    order : {"C", "F"}
        Memory order of the bytes that follow.
    dtype : numpy.dtype
    allow_mmap : bool, default False
        Whether ``load(..., mmap_mode=...)`` may map the bytes.
    numpy_array_alignment_bytes : int or None, default 16
        Alignment of the bytes in the file (None: not aligned, no padding byte).
    """

    def __init__(
        self,
        subclass: Any,
        shape: tuple,
        order: str,
        dtype: Any,
        allow_mmap: bool = False,
        numpy_array_alignment_bytes: Optional[int] = _ALIGNMENT,
    ) -> None:
        self.subclass = subclass
        self.shape = shape
        self.order = order
        self.dtype = dtype
        self.allow_mmap = allow_mmap
        self.numpy_array_alignment_bytes = numpy_array_alignment_bytes

    def write_array(self, array: Any, pickler: NumpyPickler) -> None:
        """Write the padding and the bytes of ``array`` after the wrapper."""
        write = pickler.file_handle.write
        align = self.numpy_array_alignment_bytes
        if align is not None:
            position = pickler.file_handle.tell() + 1
            padding = align - (position % align)
            write(bytes([padding]) + b"\xff" * padding)
        # one-dimensional in the wrapper's order: a view when the array is contiguous
        view = memoryview(array.reshape(-1, order=self.order).view("u1"))
        for start in range(0, len(view), _CHUNK):
            write(view[start : start + _CHUNK])


class NumpyPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """A pickler writing joblib's format: numpy arrays as wrappers followed by their bytes.

    Parameters
    ----------
    fp : file object
        Opened for binary writing.
    protocol : int, optional
        Pickle protocol (default :data:`pickle.DEFAULT_PROTOCOL`).
    """

    def __init__(self, fp: Any, protocol: Optional[int] = None) -> None:
        self.file_handle = fp
        super().__init__(fp, protocol=pickle.DEFAULT_PROTOCOL if protocol is None else protocol)
        try:
            import numpy as np
        except ImportError:
            np = None
        self.np = np

    def _wrapper(self, array: Any) -> NumpyArrayWrapper:
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        try:
            self.file_handle.tell()
            align: Optional[int] = _ALIGNMENT
        except (io.UnsupportedOperation, AttributeError, OSError):
            align = None
        return NumpyArrayWrapper(
            type(array),
            array.shape,
            order,
            array.dtype,
            allow_mmap=not array.dtype.hasobject,
            numpy_array_alignment_bytes=align,
        )

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        np = self.np
        if (
            np is not None
            and type(obj) in (np.ndarray, np.matrix, np.memmap)
            and not obj.dtype.hasobject
        ):
            if type(obj) is np.memmap:
                obj = obj.view(np.ndarray)  # as joblib: a memory map is saved as an array
            wrapper = self._wrapper(obj)
            super().save(wrapper)
            if self.proto >= 4:  # the wrapper must reach the file before the array bytes
                self.framer.commit_frame(force=True)
            wrapper.write_array(obj, self)
            return
        super().save(obj, save_persistent_id)

    def save_global(self, obj: Any, name: Optional[str] = None) -> None:
        if obj is not NumpyArrayWrapper:
            super().save_global(obj, name)
            return
        # written under joblib's name, which joblib and joblite both read, whether or not
        # ``joblib`` is the alias in this process
        if self.proto >= 4:
            self.save(_WRAPPER_MODULE.decode())
            self.save("NumpyArrayWrapper")
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + _WRAPPER_MODULE + b"\nNumpyArrayWrapper\n")
        self.memoize(obj)
