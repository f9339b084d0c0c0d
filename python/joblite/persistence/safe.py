"""Safe loading (``allow_pickle=False``): the globals a pickle stream may name, and checks.

A pickle stream runs code by naming globals (``find_class``) and calling them. In safe mode
only these are allowed: numpy's array/dtype/scalar reconstructors (wrapped so that object
dtypes are refused) and a few builtin containers/scalars. Builtin containers and scalars
(list, dict, tuple, str, bytes, int, float, bool, None, set, frozenset, bytearray) need no
global at all with protocols 4 and 5.
"""

from __future__ import annotations

import builtins
import collections
from typing import Any, Callable

from ..exceptions import UnsafeLoadError

_BUILTINS = {"complex", "set", "frozenset", "bytearray", "slice", "range"}
_NUMPY_MODULES = {"numpy.core.numeric", "numpy._core.numeric"}
_MULTIARRAY = {"numpy.core.multiarray", "numpy._core.multiarray"}

_POLICY = (
    "allow_pickle=False loads only numpy arrays of non-object dtype and builtin containers/scalars"
)


def refuse(what: str) -> UnsafeLoadError:
    """The error for a refused global or value."""
    return UnsafeLoadError(f"refusing to load {what}: {_POLICY}")


def _check_dtype(dtype: Any) -> None:
    if getattr(dtype, "hasobject", False):
        raise refuse(f"a numpy array or scalar of object dtype ({dtype})")


class SafeGlobals:
    """Resolves globals for a safe load; remembers the arrays made, to check them at the end."""

    def __init__(self) -> None:
        self.arrays: list[Any] = []

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name`` or raise UnsafeLoadError."""
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(builtins, name)
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
            return np.ndarray
        if module in _NUMPY_MODULES and name == "_frombuffer":
            return self._frombuffer
        if module in _MULTIARRAY and name == "_reconstruct":
            return self._reconstruct
        if module in _MULTIARRAY and name == "scalar":
            return _scalar
        return None

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> Any:
        from .container import frombuffer

        _check_dtype(dtype)
        return frombuffer(buf, dtype, shape, order, *rest)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        import numpy as np

        if subtype is not np.ndarray:
            raise refuse(f"array subclass {subtype!r}")
        arr = np.ndarray.__new__(subtype, shape, dtype)
        self.arrays.append(arr)  # its dtype arrives later, through __setstate__
        return arr

    def check(self) -> None:
        """Refuse object arrays whose dtype was only known once their state was set."""
        for arr in self.arrays:
            _check_dtype(arr.dtype)


def _scalar(dtype: Any, *args: Any) -> Any:
    _check_dtype(dtype)
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    fn: Callable[..., Any] = scalar
    return fn(dtype, *args)
