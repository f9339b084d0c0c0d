"""Safe loading (``allow_pickle=False``): the globals a pickle stream may name, and checks.

A pickle stream runs code by naming globals (``find_class``) and calling them. In safe mode
only these are allowed: numpy's array/dtype/scalar reconstructors (wrapped so that object
dtypes are refused) and a few builtin containers/scalars. Builtin containers and scalars
(list, dict, tuple, str, bytes, int, float, bool, None, set, frozenset, bytearray) need no
global at all with protocols 4 and 5. The builtins that older protocols call are wrapped to
accept only the arguments a pickler writes (``bytearray(10**10)`` or ``set(range(10**10))``
would make a few bytes cost gigabytes; ``bytes`` and ``str`` only rebuild a large in-band
object from its record's bytes), and ``numpy.ndarray`` resolves to a name that is
not callable (calling it would build an array of any dtype and size).
"""

from __future__ import annotations

import builtins
import collections
from collections.abc import Mapping
from typing import Any, Callable

from ..exceptions import UnsafeLoadError

_BUILTINS = {"complex", "slice", "range"}
# materialised values: their size is bounded by the bytes of the stream that built them
_MATERIAL = (list, tuple, dict, set, frozenset, str, bytes, bytearray)
_NUMPY_MODULES = {"numpy.core.numeric", "numpy._core.numeric"}
_MULTIARRAY = {"numpy.core.multiarray", "numpy._core.multiarray"}

_POLICY = (
    "allow_pickle=False loads only numpy arrays of non-object dtype and builtin containers/scalars"
)


def refuse(what: str) -> UnsafeLoadError:
    """The error for a refused global or value."""
    return UnsafeLoadError(f"refusing to load {what}: {_POLICY}")


def _safe_bytearray(*args: Any) -> bytearray:
    # what picklers write: bytearray(), bytearray(b"..."), bytearray("...", "latin-1")
    if not args or (len(args) == 1 and isinstance(args[0], (bytes, bytearray))):
        return bytearray(*args)
    if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return bytearray(args[0], args[1])
    raise refuse(f"bytearray{tuple(type(a).__name__ for a in args)}")


def _safe_bytes(*args: Any) -> bytes:
    # a large in-band `bytes` (docs/format.md, "In-band objects"): bytes(its buffer)
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise refuse(f"bytes{tuple(type(a).__name__ for a in args)}")


def _safe_str(*args: Any) -> str:
    # a large in-band `str`: str(its UTF-8 bytes, "utf-8", "surrogatepass")
    if (
        len(args) == 3
        and isinstance(args[0], (bytes, bytearray))
        and args[1:] == ("utf-8", "surrogatepass")
    ):
        return str(args[0], "utf-8", "surrogatepass")
    raise refuse(f"str{tuple(type(a).__name__ for a in args)}")


def _materialised(kind: type, args: tuple) -> Any:
    if not args or (len(args) == 1 and isinstance(args[0], _MATERIAL)):
        return kind(*args)
    raise refuse(f"{kind.__name__}{tuple(type(a).__name__ for a in args)}")


def _safe_set(*args: Any) -> set:
    out: set = _materialised(set, args)
    return out


def _safe_frozenset(*args: Any) -> frozenset:
    out: frozenset = _materialised(frozenset, args)
    return out


_WRAPPED_BUILTINS: dict[str, Callable[..., Any]] = {
    "bytearray": _safe_bytearray,
    "bytes": _safe_bytes,
    "str": _safe_str,
    "set": _safe_set,
    "frozenset": _safe_frozenset,
}


class _NdarrayName:
    """Stands for ``numpy.ndarray`` in a safe load: numpy's reconstructor names it as the
    class to build, but calling it (``ndarray(shape, dtype)``) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise refuse("a call of numpy.ndarray")

    def __repr__(self) -> str:
        return "numpy.ndarray"


NDARRAY = _NdarrayName()


#: kinds of the leaves of a dtype a safe load accepts (no object, no string-dtype arena)
_PLAIN_KINDS = frozenset("biufcmMSUV")


def _describe(dtype: Any) -> str:
    """``str(dtype)``, or what can be said of a dtype too damaged for numpy to print."""
    try:
        return str(dtype)
    except Exception:
        return f"<damaged, {getattr(dtype, 'itemsize', '?')}-byte items>"


def check_dtype(dtype: Any, allow_object: bool = False) -> None:
    """Refuse a dtype holding objects anywhere, and one whose layout or flags are impossible
    (``allow_object``: objects are fine where the dtype's flags say so).

    The ``hasobject`` flag alone cannot be trusted: ``numpy.dtype.__setstate__`` (a BUILD
    in the stream) takes the flags as given, so a structured dtype can hold an object
    field without the flag (a few stream bytes become object pointers), or a float dtype
    can claim objects. Its fields can likewise be placed past its itemsize (reads outside
    the array's memory) or disagree with its names. So every field and sub-array is walked:
    each must lie inside its parent, each level's flags must match what it holds, and
    leaves must be plain kinds (objects only with ``allow_object``).
    """
    import numpy as np

    if isinstance(dtype, np.dtype):
        _walk_dtype(dtype, dtype, allow_object)


#: numpy's dtype flags that say items hold references (ITEM_REFCOUNT, LIST_PICKLE,
#: ITEM_IS_POINTER): numpy pickles, copies and frees such items as objects
_REFERENCE_FLAGS = 0x07


def _walk_dtype(dt: Any, top: Any, allow_object: bool) -> bool:
    """Check ``dt`` (a part of ``top``); whether it holds objects."""
    import numpy as np

    fields, sub = dt.fields, dt.subdtype
    claims = bool(dt.flags & _REFERENCE_FLAGS)
    # a BUILD sets a flexible dtype's itemsize as given: numpy then makes `S-1` or a
    # 6-byte `U1`, whose scalars and arrays crash it (a string of length -1)
    if dt.itemsize < 0 or (dt.kind == "U" and dt.itemsize % 4):
        raise ValueError(f"dtype {_describe(top)} has an impossible itemsize {dt.itemsize}")
    if fields is None and dt.names is None and sub is None:  # a leaf
        if dt.kind in _PLAIN_KINDS:
            if claims:
                raise ValueError(f"dtype {_describe(top)} claims objects it does not hold")
            return False
        if not allow_object:
            raise refuse(f"a numpy array or scalar of dtype {_describe(top)}")
        # an object dtype whose flags deny references (a BUILD sets them as given): numpy
        # then maps or copies raw bytes as object pointers
        if dt.flags & _REFERENCE_FLAGS != _REFERENCE_FLAGS or not dt.hasobject:
            raise ValueError(f"dtype {_describe(top)} holds objects its flags deny")
        if dt.itemsize != np.dtype(object).itemsize:
            raise ValueError(f"dtype {_describe(top)} has an impossible itemsize {dt.itemsize}")
        return True
    holds = False
    if sub is not None and fields is None:
        base, shape = sub
        n = 1
        for d in shape:
            n *= d
        if base.itemsize * n > dt.itemsize:
            raise ValueError(f"dtype {_describe(top)} has a sub-array larger than its items")
        holds = _walk_dtype(base, top, allow_object)
    else:
        names = dt.names
        if not isinstance(fields, Mapping) or not isinstance(names, tuple):
            raise ValueError(f"dtype {_describe(top)} has names or fields without the other")
        entry: Any
        for key, entry in fields.items():  # a key no name lists can only be a title
            if key not in names and (len(entry) < 3 or entry[2] != key):
                raise ValueError(f"dtype {_describe(top)} has a field its names do not list")
        for name in names:
            entry = fields.get(name)
            if not isinstance(entry, tuple) or not isinstance(entry[0], np.dtype):
                raise ValueError(f"dtype {_describe(top)} names a field it does not have")
            fdt, off = entry[0], entry[1]
            if not isinstance(off, int) or off < 0 or off + fdt.itemsize > dt.itemsize:
                raise ValueError(f"dtype {_describe(top)} has a field outside its items")
            holds = _walk_dtype(fdt, top, allow_object) or holds
    if holds and not dt.hasobject:
        raise ValueError(f"dtype {_describe(top)} holds objects its flags deny")
    if claims and not holds:
        raise ValueError(f"dtype {_describe(top)} claims objects it does not hold")
    return holds


def check_build(inst: Any, state: Any, allow_object: bool) -> None:
    """Check the state a BUILD is about to give a numpy array, before numpy sees it.

    ``ndarray.__setstate__`` trusts its state: an object dtype with a list shorter than the
    shape fills the rest from memory it never wrote (a crash, with numpy 2.4), and a forged
    dtype is taken as it is. Raises ValueError (damage) or UnsafeLoadError (an object
    dtype when ``allow_object`` is False).
    """
    import numpy as np

    if isinstance(inst, np.dtype):
        _check_dtype_state(inst, state)
        return
    if not isinstance(inst, np.ndarray) or not isinstance(state, tuple) or len(state) < 4:
        return
    shape, dtype, data = state[-4], state[-3], state[-1]
    if isinstance(dtype, np.dtype):
        check_dtype(dtype, allow_object)
    if isinstance(data, list):
        count = 1
        for n in shape if isinstance(shape, tuple) else (shape,):
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"array state has a bad shape {shape!r}")
            count *= n
        if len(data) != count:
            raise ValueError(f"array state holds {len(data)} items for shape {shape!r}")


def _check_dtype_state(inst: Any, state: Any) -> None:
    """A dtype's state laid out as numpy writes it (since numpy 1.7): ``(3, byteorder,
    subarray, names, fields, elsize, alignment, flags)``, version 4 with metadata as a ninth
    item. numpy 2.4 crashes on other layouts it accepts (a 6-item state of a float dtype;
    a datetime dtype's state without its unit)."""
    if not (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and state[1] in ("<", ">", "|", "=")
        and (state[2] is None or isinstance(state[2], tuple))
        and (state[3] is None or isinstance(state[3], tuple))
        and (state[4] is None or isinstance(state[4], dict))
        and all(type(x) is int for x in state[5:8])
    ):
        raise ValueError("a dtype's state is not laid out as numpy writes it")
    if inst.kind in "mM":
        meta = state[8] if len(state) == 9 else None
        if not (isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[1], tuple)):
            raise ValueError("a datetime dtype's state lacks its unit")


def check_built(inst: Any, allow_object: bool) -> None:
    """Check a dtype after a BUILD set its state (which numpy takes as given)."""
    import numpy as np

    if isinstance(inst, np.dtype):
        check_dtype(inst, allow_object)


class SafeGlobals:
    """Resolves globals for a safe load; remembers the arrays made, to check them at the end."""

    def __init__(self) -> None:
        self.arrays: list[Any] = []

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name`` or raise UnsafeLoadError."""
        if module in ("builtins", "__builtin__"):
            if name in _BUILTINS:
                return getattr(builtins, name)
            if name in _WRAPPED_BUILTINS:
                return _WRAPPED_BUILTINS[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module.startswith("numpy"):
            fn = self._numpy(module, name)
            if fn is not None:
                return fn
        raise refuse(f"global {module}.{name}")

    def _numpy(self, module: str, name: str) -> Any:
        import numpy as np

        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "numpy" and name == "ndarray":
            return NDARRAY
        if module in _NUMPY_MODULES and name == "_frombuffer":
            return self._frombuffer
        if module in _MULTIARRAY and name == "_reconstruct":
            return self._reconstruct
        if module in _MULTIARRAY and name == "scalar":
            return self.scalar
        return None

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> Any:
        import numpy as np

        from .unpickle import frombuffer

        dtype = np.dtype(dtype)
        check_dtype(dtype)
        arr = frombuffer(buf, dtype, shape, order, *rest)
        self.arrays.append(arr)  # a later BUILD could still give it another dtype
        return arr

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        import numpy as np

        if subtype is not NDARRAY:
            raise refuse(f"array subclass {subtype!r}")
        # numpy pickles an empty (0,) array whose __setstate__ then brings shape and data;
        # any other shape would allocate memory no byte of the stream accounts for
        if not isinstance(shape, tuple) or 0 not in shape:
            raise refuse(f"an array reconstructor with non-empty shape {shape!r}")
        arr = np.ndarray.__new__(np.ndarray, shape, dtype)
        self.arrays.append(arr)  # its dtype arrives later, through __setstate__
        return arr

    def scalar(self, dtype: Any, *args: Any) -> Any:
        """numpy's scalar reconstructor, refusing object dtypes."""
        value = _scalar(dtype, *args)
        self.arrays.append(value)
        return value

    def check(self) -> None:
        """Refuse object arrays whose dtype was only known once their state was set."""
        for arr in self.arrays:
            check_dtype(getattr(arr, "dtype", None))


def _scalar(dtype: Any, *args: Any) -> Any:
    import numpy as np

    dtype = np.dtype(dtype)
    check_dtype(dtype)
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    fn: Callable[..., Any] = scalar
    return fn(dtype, *args)
