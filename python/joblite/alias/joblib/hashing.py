"""``joblib.hashing`` under joblite's alias: :func:`hash` is joblite's content hash (its
digests differ from joblib's by design; joblib's ``Hasher`` classes are not provided)."""

from __future__ import annotations

from ...hashing import hash

__all__ = ["hash"]
