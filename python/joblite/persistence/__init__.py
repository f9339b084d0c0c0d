"""dump / load: persistence of Python objects holding large numpy arrays.

TEMPORARY PLACEHOLDER until the container lands (issue 3): atomic pickle files, and a
bare numpy array as a .npy file so that ``mmap_mode`` gives a memory map.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, Optional


def dump(value: Any, filename: Any, compress: Any = 0, protocol: Optional[int] = None) -> Any:
    """Placeholder dump: atomic write of a pickle (or .npy for a bare array)."""
    path = os.fspath(filename)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        if type(value).__name__ == "ndarray" and value.dtype != object:
            import numpy as np

            np.save(f, value, allow_pickle=False)
        else:
            pickle.dump(value, f, protocol=5)
    os.replace(tmp, path)
    return [path]


def load(filename: Any, mmap_mode: Optional[str] = None) -> Any:
    """Placeholder load."""
    path = os.fspath(filename)
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        import numpy as np

        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    with open(path, "rb") as f:
        return pickle.load(f)


def dumps(value: Any, compress: Any = 0) -> bytes:
    """Placeholder dumps."""
    return pickle.dumps(value, protocol=5)


def loads(data: bytes) -> Any:
    """Placeholder loads."""
    return pickle.loads(data)


def register_compressor(*args: Any, **kwargs: Any) -> None:
    """Placeholder."""
    raise NotImplementedError
