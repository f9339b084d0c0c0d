"""hash(): stable, content-defined hashing, the key of every cache entry.

The object walk runs in Rust (``joblite._core.hash``): plain values and numpy arrays there;
other types through the content handlers of the registry (``_registry``), one module per
family of types (``_pandas``, ``_arrow``, ``_tensor``, ``_xarray``, ``_sparse``), each
registered lazily by module name. docs/hash.md defines the content of every type.
"""

from __future__ import annotations

from typing import Any

from .. import _core
from ._registry import (
    Handler,
    register_hash_handler,
    register_hash_handler_lazy,
    unregister_hash_handler,
)
from ._tensor import array_content

__all__ = [
    "HASH_ENCODING_VERSION",
    "Handler",
    "array_content",
    "hash",
    "register_hash_handler",
    "register_hash_handler_lazy",
    "unregister_hash_handler",
]

#: Version tag of the encoding every digest covers; it changes whenever the walk does, so a
#: new joblite can never return a stale cache hit computed by an older one.
HASH_ENCODING_VERSION: str = _core.HASH_ENCODING_VERSION


def hash(obj: Any, hash_name: str = "blake3", coerce_mmap: bool = False) -> str:
    """Return a stable hex digest of the content of ``obj``.

    Equal content gives an equal digest in every process, run and ``PYTHONHASHSEED``; a
    different value, type or structure gives a different one. numpy arrays are hashed from
    their memory (dtype, shape and data in logical C order), so a C array, its Fortran-ordered
    copy, a non-contiguous view with the same values and a ``np.memmap`` of the same data hash
    equal. Large buffers are hashed on several threads with the GIL released.

    Parameters
    ----------
    obj : object
        Any picklable object. Builtin types and numpy arrays/scalars have fast paths; pandas,
        Arrow (pyarrow, polars, any ``__arrow_c_stream__`` producer), torch, xarray and
        scipy.sparse objects are hashed by content (docs/hash.md), as is any type taught with
        :func:`register_hash_handler`; anything else through its pickle reduction; functions,
        classes and modules by qualified name. Self-referential objects are fine.
    hash_name : {"blake3", "md5", "sha1"}, default "blake3"
        The digest function. The walk is the same for all three; md5 and sha1 exist for
        compatibility with code that expects joblib's digest lengths (32 and 40 hex digits).
    coerce_mmap : bool, default False
        Accepted for compatibility with :func:`joblib.hash`. joblite always hashes a
        ``np.memmap`` exactly like an ndarray holding the same data.

    Returns
    -------
    str
        Lowercase hex digest (64 characters for blake3).

    Raises
    ------
    ValueError
        If ``hash_name`` is not one of the accepted names.
    UnhashableError
        If ``obj`` holds something that cannot be pickled (a lock, an open file, ...); the
        message and the ``path`` attribute say where in ``obj`` it is. It is a
        ``TypeError`` and, as with joblib, a ``pickle.PicklingError``. Any other exception
        raised while reducing an object (a ``KeyboardInterrupt`` in a ``__reduce__``, an
        error in a handler) reaches the caller unchanged.
    RecursionError
        If ``obj`` is nested more than 2,000 levels deep.

    Examples
    --------
    >>> import joblite
    >>> joblite.hash({"a": 1, "b": 2}) == joblite.hash({"b": 2, "a": 1})
    True
    >>> joblite.hash([1, 2]) == joblite.hash((1, 2))
    False
    >>> len(joblite.hash("x", hash_name="md5"))
    32
    """
    return _core.hash(obj, hash_name, coerce_mmap)


def _register_builtin_handlers() -> None:
    from . import _pandas, _sparse, _tensor, _xarray

    register_hash_handler_lazy("pandas")(_pandas.register)
    register_hash_handler_lazy("xarray")(_xarray.register)
    register_hash_handler_lazy("scipy")(_sparse.register)
    register_hash_handler_lazy("torch")(_tensor.register_torch)
    register_hash_handler_lazy("jax")(_tensor.register_jax)
    register_hash_handler_lazy("jaxlib")(_tensor.register_jax)
    register_hash_handler_lazy("cupy")(_tensor.register_cupy)
    register_hash_handler_lazy("pyarrow")(_register_pyarrow)
    register_hash_handler_lazy("polars")(_register_polars)


def _register_pyarrow() -> None:
    import pyarrow as pa

    from ._arrow import arrow_content

    register_hash_handler((pa.Table, pa.RecordBatch, pa.ChunkedArray, pa.Array), arrow_content)


def _register_polars() -> None:
    import importlib.util

    import polars as pl

    from ._arrow import polars_frame_content, polars_series_content

    if importlib.util.find_spec("pyarrow") is not None:  # else the walk, as for any producer
        register_hash_handler(pl.Series, polars_series_content)
        register_hash_handler(pl.DataFrame, polars_frame_content)


_register_builtin_handlers()
