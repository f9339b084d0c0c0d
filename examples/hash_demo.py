"""Main-job section: content hashing of 1 GiB of arrays and a large nested structure.

Prints GB/s for joblite.hash next to joblib.hash (when installed) and next to the memory
bandwidth limit (``np.copyto`` of the same array).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import joblite
import numpy as np


def _best(func: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    try:
        import joblib
    except ImportError:  # the demo still runs without joblib, just without the comparison
        joblib = None

    rng = np.random.default_rng(0)
    arrays = {
        "1 GiB float64 array": rng.standard_normal(2**27),
    }
    arrays["512 MiB strided view of it"] = arrays["1 GiB float64 array"].reshape(-1, 2)[:, 0]
    nested = {
        f"sample-{i}": {"id": i, "tags": ("a", "b"), "score": i / 7, "w": [i, i + 1]}
        for i in range(200_000)
    }
    small = [rng.standard_normal(16) for _ in range(10_000)]

    print(f"{'input':<34}{'joblite':>14}{'joblib':>14}{'np.copyto':>14}{'speed-up':>10}")
    for name, arr in arrays.items():
        gb = arr.nbytes / 1e9
        out = np.empty(arr.shape, arr.dtype)
        t_copy = _best(lambda a=arr, o=out: np.copyto(o, a), 3)
        t_ours = _best(lambda a=arr: joblite.hash(a), 3)
        t_lib = _best(lambda a=arr: joblib.hash(a), 1) if joblib else float("nan")
        print(
            f"{name:<34}{gb / t_ours:>9.2f} GB/s{gb / t_lib:>9.2f} GB/s{gb / t_copy:>9.2f} GB/s"
            f"{t_lib / t_ours:>9.1f}x"
        )
    for name, obj in (("dict of 200k nested records", nested), ("list of 10k small arrays", small)):
        t_ours = _best(lambda o=obj: joblite.hash(o), 3)
        t_lib = _best(lambda o=obj: joblib.hash(o), 1) if joblib else float("nan")
        print(
            f"{name:<34}{t_ours * 1e3:>11.1f} ms{t_lib * 1e3:>11.1f} ms{'':>14}"
            f"{t_lib / t_ours:>9.1f}x"
        )
    matrix = arrays["1 GiB float64 array"].reshape(2**13, 2**14)
    same = joblite.hash(np.asfortranarray(matrix)) == joblite.hash(matrix)
    print(f"\nA Fortran-ordered copy of the 1 GiB matrix hashes like the original: {same}")
