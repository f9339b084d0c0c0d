"""Persistence section of the main job: dump / load of a 1 GiB float64 array (normal values
rounded to 3 decimals), uncompressed, lz4-compressed and memory-mapped, in GB/s next to
joblib and np.save / np.load. ``JOBLITE_DEMO_MIB`` changes the size (default 1024).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Callable

import joblite
import numpy as np

try:  # joblib is only a dev dependency: compare with it when it is there
    import joblib
except ImportError:  # pragma: no cover
    joblib = None


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _row(what: str, nbytes: int, seconds: float, size: int = 0) -> None:
    gbs = nbytes / seconds / 1e9
    extra = f"  file {size / nbytes:6.1%}" if size else ""
    print(f"  {what:<34} {seconds * 1e3:9.1f} ms  {gbs:7.2f} GB/s{extra}", flush=True)


def main() -> None:
    mib = int(os.environ.get("JOBLITE_DEMO_MIB", "1024"))
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = tempfile.mkdtemp(prefix="joblite-demo-", dir=base)
    rng = np.random.default_rng(0)
    data = np.round(rng.standard_normal((mib << 20) // 8), 3)
    n = data.nbytes
    print(f"  {mib} MiB float64 (normal, 3 decimals) in {folder}")
    try:
        path = os.path.join(folder, "a")
        print("  -- uncompressed")
        t, _ = _timed(lambda: np.save(path + ".npy", data))
        _row("np.save", n, t)
        t, _ = _timed(lambda: np.load(path + ".npy"))
        _row("np.load", n, t)
        os.unlink(path + ".npy")
        if joblib is not None:
            t, _ = _timed(lambda: joblib.dump(data, path + ".joblib"))
            _row("joblib.dump", n, t)
            t, _ = _timed(lambda: joblib.load(path + ".joblib"))
            _row("joblib.load", n, t)
            os.unlink(path + ".joblib")
        t, _ = _timed(lambda: joblite.dump(data, path))
        _row("joblite.dump", n, t)
        t, got = _timed(lambda: joblite.load(path))
        _row("joblite.load (verified)", n, t)
        assert np.array_equal(got, data)
        del got
        t, got = _timed(lambda: joblite.load(path, mmap_mode="r"))
        print(f"  {'joblite.load mmap_mode=r':<34} {t * 1e3:9.3f} ms  (O(1): nothing read)")
        assert isinstance(got, np.memmap) and got[12345] == data[12345]
        del got
        os.unlink(path)

        # compress= means what it means in joblib: names and levels pick the same codec, and
        # the file is one joblib can read. zlib runs on a quarter of the data (joblib's
        # single-threaded zlib takes ~30 s a GiB here).
        cases = [("lz4", "lz4", data), ("zlib 3", 3, data[: len(data) // 4])]
        for label, compress, part in cases:
            print(f"  -- compressed: compress={compress!r} ({label}, {part.nbytes >> 20} MiB)")
            m = part.nbytes
            if joblib is not None:
                try:
                    t, _ = _timed(
                        lambda p=part, c=compress: joblib.dump(p, path + ".jl", compress=c)
                    )
                    _row(f"joblib.dump compress={compress!r}", m, t, os.path.getsize(path + ".jl"))
                    t, _ = _timed(lambda: joblib.load(path + ".jl"))
                    _row(f"joblib.load compress={compress!r}", m, t)
                    os.unlink(path + ".jl")
                except ValueError as exc:  # joblib's lz4 needs the lz4 package
                    print(f"  joblib {label} skipped: {exc}")
            t, _ = _timed(lambda p=part, c=compress: joblite.dump(p, path, compress=c))
            _row(f"joblite.dump compress={compress!r}", m, t, os.path.getsize(path))
            t, got = _timed(lambda: joblite.load(path))
            _row(f"joblite.load compress={compress!r}", m, t)
            assert np.array_equal(got, part)
            del got
            if joblib is not None:  # the file joblite wrote opens in joblib
                assert np.array_equal(joblib.load(path), part)
            os.unlink(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
