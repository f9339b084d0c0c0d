"""scipy.sparse matrices and arrays by content: format, shape, dtype and canonical arrays.

Duplicate entries are summed and indices sorted first, so two matrices with one value hash
equal whatever order their entries were given in; explicitly stored zeros stay content.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register", "sparse_content"]


def sparse_content(matrix: Any) -> tuple:
    """Content of a scipy.sparse matrix or array."""
    fmt = matrix.format
    head = ("sparse", fmt, tuple(matrix.shape), matrix.dtype.str)
    if fmt == "coo":
        c = matrix.copy()
        c.sum_duplicates()
        coords = getattr(c, "coords", None)
        if coords is None:
            coords = (c.row, c.col)
        return (*head, tuple(coords), c.data)
    if fmt not in ("csr", "csc"):
        matrix = matrix.tocsr()
    c = matrix.copy()
    c.sum_duplicates()  # also sorts the indices
    return (*head, c.data, c.indices, c.indptr)


def register() -> None:
    import scipy.sparse as sp

    from ._registry import register_hash_handler

    bases = tuple(t for t in (getattr(sp, "spmatrix", None), getattr(sp, "sparray", None)) if t)
    register_hash_handler(bases, sparse_content)
