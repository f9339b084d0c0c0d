"""scipy.sparse matrices and arrays by content: format, shape, dtype and stored entries.

The content is the set of stored entries (index, value), duplicates and explicitly stored zeros
included, in a canonical order: two matrices whose entries were given in another order, or
whose indices are unsorted, hash equal. A duplicate entry is not its sum and a stored zero is
not an absent entry: ``nnz``, ``.data`` and anything computed from them differ (docs/hash.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["register", "sparse_content"]


def sparse_content(matrix: Any) -> tuple:
    """Content of a scipy.sparse matrix or array."""
    import numpy as np

    fmt = matrix.format
    head = ("sparse", fmt, tuple(matrix.shape), matrix.dtype.str)
    if fmt == "bsr":
        head = (*head, tuple(matrix.blocksize))
    coo = matrix.tocoo(copy=False)
    coords = getattr(coo, "coords", None)
    if coords is None:
        coords = (coo.row, coo.col)
    coords = [np.asarray(c, dtype=np.int64) for c in coords]
    data = np.asarray(coo.data)
    if len(data):
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
