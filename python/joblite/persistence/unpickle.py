"""Rebuilding a dump's object from its verified pickle stream and buffers: the unpickler,
numpy's array reconstructor that keeps memory maps as ``np.memmap``, and the swap to the
host's byte order (joblib's ``ensure_native_byte_order``)."""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, Optional

from ..exceptions import CorruptFileError, UnsafeLoadError
from .files import DAMAGE
from .safe import SafeGlobals, check_build, check_built, check_dtype


def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> Any:
    """numpy's ``_frombuffer`` that keeps ``np.memmap`` buffers as ``np.memmap`` arrays."""
    import numpy as np

    base, readonly = buf, False
    if isinstance(buf, memoryview):
        base, readonly = buf.obj, buf.readonly
    dtype = np.dtype(dtype)
    check_dtype(dtype, allow_object=True)  # a BUILD can forge a dtype's fields and flags
    if isinstance(base, np.memmap) and dtype.itemsize and base.size % dtype.itemsize == 0:
        arr = base.view(dtype)
    else:
        arr = np.frombuffer(buf, dtype=dtype)
    if order == "K" and axis_order is not None:
        arr = arr.reshape(shape, order="C").transpose(axis_order)
    else:
        arr = arr.reshape(shape, order=order)
    if readonly and arr.flags.writeable:
        arr.flags.writeable = False
    return arr


def native_order(arr: Any) -> Any:
    """``arr`` in the host's byte order (a swapped copy when it is not): joblib's
    ``ensure_native_byte_order``."""
    from .joblib_compat import ensure_native  # joblib's rule, structured dtypes included

    return ensure_native(arr)


def _frombuffer_native(*args: Any) -> Any:
    return native_order(frombuffer(*args))


class _Unpickler(pickle.Unpickler):
    """The C unpickler, with numpy's array reconstructor swapped for :func:`frombuffer` (or
    one that also swaps to native byte order) and, in safe mode, every other global checked
    against :mod:`.safe`."""

    def __init__(
        self, file: Any, buffers: list, safe: Optional[SafeGlobals], native: bool = False
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._safe = safe
        self._native = native

    def find_class(self, module: str, name: str) -> Any:
        if self._safe is not None:
            found = self._safe.find_class(module, name)
            if self._native and name == "_frombuffer":
                return lambda *args: native_order(found(*args))
            return found
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _frombuffer_native if self._native else frombuffer
        found = super().find_class(module, name)
        if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return lambda dtype, *args: found(_checked(dtype), *args)
        return found


def _checked(dtype: Any) -> Any:
    """``dtype`` once its fields and flags are known sound (a BUILD may have forged them)."""
    check_dtype(dtype, allow_object=True)
    return dtype


#: the pure-Python unpickler (typeshed does not describe its internals: stack, read, ...)
_PyUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]


class _SafeUnpickler(_PyUnpickler):  # type: ignore[misc]
    """The safe mode's unpickler: the pure-Python one, so that every BUILD is checked
    before numpy takes its state as given (an object array's state with a list shorter than
    its shape crashes numpy; a dtype's state sets flags that hide object fields)."""

    dispatch = _PyUnpickler.dispatch.copy()

    def __init__(self, file: Any, buffers: list, safe: SafeGlobals, native: bool) -> None:
        super().__init__(file, buffers=buffers)
        self._safe = safe
        self._native = native

    def find_class(self, module: str, name: str) -> Any:
        found = self._safe.find_class(module, name)
        if self._native and name == "_frombuffer":
            return lambda *args: native_order(found(*args))
        return found

    def load_build(self) -> None:
        inst, state = self.stack[-2:]
        check_build(inst, state, False)
        _PyUnpickler.load_build(self)
        check_built(self.stack[-1], False)

    dispatch[pickle.BUILD[0]] = load_build

    def load_bytearray8(self) -> None:
        # the stock one allocates (and zeroes) the declared length before reading
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) != n:
            raise EOFError("BYTEARRAY8 declares more bytes than the stream holds")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


def unpickle_stream(
    stream: Any,
    buffers: list[Any],
    path: Optional[str],
    allow_pickle: bool,
    mmap_mode: Optional[str],
    native: bool,
) -> Any:
    """Rebuild a dump's object from its verified pickle stream and buffers.

    The stream passed its checksum, so an unpickling error means a forged file (or a bug):
    it still comes out as ``CorruptFileError`` naming ``path``, never a raw KeyError.
    """
    try:
        if allow_pickle and mmap_mode is None and not native:
            return pickle.loads(stream, buffers=buffers)
        if allow_pickle:
            return _Unpickler(io.BytesIO(stream), buffers, None, native).load()
        safe = SafeGlobals()
        value = _SafeUnpickler(io.BytesIO(stream), buffers, safe, native).load()
        safe.check()
        return value
    except (Warning, UnsafeLoadError, CorruptFileError, ImportError, AttributeError):
        raise  # a global that cannot be imported is no damage (a class that moved)
    except DAMAGE as exc:
        reason = f"the pickle stream is not valid ({type(exc).__name__}: {exc})"
        raise CorruptFileError(path, reason) from exc
