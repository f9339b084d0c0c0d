"""hash(): stable, array-aware content hashing.

TEMPORARY PLACEHOLDER until the Rust hasher lands (issue 2): pickles and digests.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any


def hash(obj: Any, hash_name: str = "blake3", coerce_mmap: bool = False) -> str:
    """Placeholder: digest of the pickle of ``obj``."""
    return hashlib.sha256(pickle.dumps(obj, protocol=5)).hexdigest()
