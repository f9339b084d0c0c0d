"""hash(): stable, array-aware content hashing, the key of every cache entry.

The object walk runs in Rust (``joblite._core.hash``); this module documents the contract.
"""

from __future__ import annotations

from typing import Any

from . import _core
from .exceptions import UnhashableError

__all__ = ["HASH_ENCODING_VERSION", "hash"]

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
        Any picklable object. Builtin types and numpy arrays/scalars have fast paths; anything
        else is hashed through its pickle reduction; functions and classes by qualified name.
        Self-referential objects are fine.
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
        message says where in ``obj`` it is. It is a ``TypeError`` and, as with joblib, a
        ``pickle.PicklingError``.
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
    try:
        return _core.hash(obj, hash_name, coerce_mmap)
    except TypeError as exc:
        raise UnhashableError(
            f"PicklingError while hashing {type(obj).__name__} object: "
            f"{str(exc).removeprefix('joblite.hash: ')}"
        ) from exc
