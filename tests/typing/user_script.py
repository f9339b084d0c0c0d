"""A typed user script: ``mypy --strict`` must pass on it (tests/typing/test_typing.py).

It also runs (``python tests/typing/user_script.py``): the types it asserts are the real ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblite
import numpy as np
from joblite import MemorizedFunc, Memory, Parallel, delayed
from typing_extensions import assert_type


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        memory = Memory(Path(tmp) / "cache", verbose=0)

        @memory.cache
        def scale(values: list[float], factor: float = 2.0) -> list[float]:
            return [v * factor for v in values]

        @memory.cache(ignore=["verbose"])
        def total(values: list[float], verbose: bool = False) -> float:
            return sum(values)

        same_signature: MemorizedFunc[[list[float], float], list[float]] = scale
        assert same_signature is scale
        doubled: list[float] = scale([1.0, 2.0])
        tripled = scale([1.0], factor=3.0)
        assert_type(tripled, list[float])
        assert_type(total([1.0, 2.0], verbose=True), float)
        assert scale.check_call_in_cache([1.0, 2.0])
        shelved = scale.call_and_shelve([4.0])
        assert shelved.get() == [8.0]
        value, metadata = scale.call([5.0])
        assert value == [10.0] and isinstance(metadata, dict)

        squares = Parallel(n_jobs=2, prefer="threads")(delayed(pow)(i, 2) for i in range(5))
        assert list(squares) == [0, 1, 4, 9, 16]

        path = Path(tmp) / "data.jl"
        written: list[str] = joblite.dump({"a": np.arange(3), "doubled": doubled}, path)
        assert written
        loaded = joblite.load(path)
        assert loaded["doubled"] == [2.0, 4.0]
        raw: bytes = joblite.dumps([1, 2, 3])
        assert joblite.loads(raw) == [1, 2, 3]

        digest: str = joblite.hash(np.arange(10))
        assert len(digest) == 64  # blake3
        assert joblite.cpu_count() >= 1
        assert joblite.__version__
        memory.clear(warn=False)


if __name__ == "__main__":
    main()
