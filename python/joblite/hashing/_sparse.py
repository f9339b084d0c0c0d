"""scipy.sparse matrices and arrays by content: format, shape, dtype and stored entries.

The content is the set of stored entries (index, value), duplicates and explicitly stored zeros
included, in a canonical order: two matrices whose entries were given in another order, or
whose indices are unsorted, hash equal. A duplicate entry is not its sum and a stored zero is
not an absent entry: ``nnz``, ``.data`` and anything computed from them differ (docs/hash.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["register", "sparse_content"]


#: what scipy keeps in a sparse object's ``__dict__`` (its arrays, flags and caches)
_INTERNAL = frozenset(
    (
        "data",
        "indices",
        "indptr",
        "coords",
        "row",
        "col",
        "rows",
        "offsets",
        "dtype",
        "maxprint",
        "blocksize",
        "has_canonical_format",
    )
)


def _extras(matrix: Any) -> dict:
    """Attributes a subclass (or user code) set on the object: a function can read them."""
    from ._registry import slot_state

    found = {
        name: value
        for name, value in getattr(matrix, "__dict__", {}).items()
        if not name.startswith("_") and name not in _INTERNAL
    }
    for name, value in slot_state(matrix, "scipy").items():
        found.setdefault(name, value)
    return found


def sparse_content(matrix: Any) -> tuple:
    """Content of a scipy.sparse matrix or array."""
    import numpy as np

    fmt = matrix.format
    head: tuple = ("sparse", fmt, tuple(matrix.shape), matrix.dtype.str)
    extras = _extras(matrix)
    if extras:
        head = (*head, extras)
    if fmt in ("csr", "csc"):
        indptr = np.asarray(matrix.indptr, dtype=np.int64)
        indices = np.asarray(matrix.indices, dtype=np.int64)
        data = np.asarray(matrix.data)
        if not matrix.has_canonical_format:  # unsorted or duplicated: sort, keep duplicates
            major = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
            order = np.lexsort((data, indices, major))
            indices, data = indices[order], data[order]
        return (*head, indptr, indices, data)
    if fmt == "bsr":
        head = (*head, tuple(matrix.blocksize))
    coo = matrix.tocoo(copy=False)
    coords = getattr(coo, "coords", None)
    if coords is None:
        coords = (coo.row, coo.col)
    coords = [np.asarray(c, dtype=np.int64) for c in coords]
    data = np.asarray(coo.data)
    if len(data) > 1:
        flat = np.ravel_multi_index(coords, matrix.shape) if len(coords) > 1 else coords[0]
        if not bool(np.all(flat[1:] > flat[:-1])):
            # canonical order: by index, then by value (duplicates kept); lexsort's last key leads
            order = np.lexsort((data, *reversed(coords)))
            coords = [c[order] for c in coords]
            data = data[order]
    return (*head, tuple(coords), data)


def register() -> None:
    import scipy.sparse as sp

    from ._registry import register_hash_handler

    bases = tuple(t for t in (getattr(sp, "spmatrix", None), getattr(sp, "sparray", None)) if t)
    register_hash_handler(bases, sparse_content)
