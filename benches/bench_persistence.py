"""dump / load benchmarks: joblite next to joblib and the limit (np.save / np.load), one run.

Run with ``make benchmark ARGS="benches/bench_persistence.py"`` (or
``.venv/bin/python -m pytest benches/bench_persistence.py --benchmark-enable --benchmark-only
-p no:randomly``). Sizes: ``JOBLITE_BENCH_MIB`` (default 256; 1024 for the 1 GiB figures);
folders: ``JOBLITE_BENCH_DIRS`` (default ``/dev/shm,/tmp``: page cache and disk).
Each group compares the libraries on the same data; ``extra_info`` holds file size ratios.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import joblib
import joblite
import numpy as np
import pytest

MIB = int(os.environ.get("JOBLITE_BENCH_MIB", "256"))
DIRS = [d for d in os.environ.get("JOBLITE_BENCH_DIRS", "/dev/shm,/tmp").split(",") if d]
ROUNDS = int(os.environ.get("JOBLITE_BENCH_ROUNDS", "3"))
# an uncompressed 256 MiB round takes ~0.2 s and moves +-30% between rounds on a shared VM:
# more rounds, so that each library's minimum is a fair floor
PLAIN_ROUNDS = int(os.environ.get("JOBLITE_BENCH_PLAIN_ROUNDS", "9"))


def _floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.round(rng.standard_normal((MIB << 20) // 8), 3)


def _ints() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 16, (MIB << 20) // 4, dtype=np.int32)


def _mixed() -> dict:
    rng = np.random.default_rng(2)
    n = (MIB << 20) // 4 // 8
    return {
        "weights": np.round(rng.standard_normal(n), 3),
        "labels": rng.integers(0, 10, n).astype(np.int64),
        "matrix": rng.random((n // 1000, 1000)).astype(np.float32),
        "bias": np.zeros(n),
        "records": [{"id": i, "name": f"item{i}", "score": i * 0.5} for i in range(100_000)],
    }


DATASETS = {"floats": _floats, "ints": _ints, "mixed": _mixed}
_cache: dict = {}


def data(name: str):
    if name not in _cache:
        _cache.clear()  # keep one dataset in memory at a time
        _cache[name] = DATASETS[name]()
    return _cache[name]


@pytest.fixture(params=DIRS)
def folder(request):
    if not os.path.isdir(request.param):
        pytest.skip(f"{request.param} does not exist here")
    path = tempfile.mkdtemp(dir=request.param, prefix="joblite-bench-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _size(path: str) -> int:
    return os.path.getsize(path)


# --- uncompressed -----------------------------------------------------------------------------

LIBS_PLAIN = ["joblite", "joblib", "numpy"]
# joblite's dump flushes to the device (fsync) by default, joblib and np.save never do:
# on a disk that flush is most of the time, so the dump is also timed without it
LIBS_DUMP = ["joblite", "joblite-nofsync", "joblib", "numpy"]


def _dump_plain(lib: str, value, path: str) -> None:
    if lib == "joblite":
        joblite.dump(value, path)
    elif lib == "joblite-nofsync":
        joblite.dump(value, path, fsync=False)
    elif lib == "joblib":
        joblib.dump(value, path)
    else:
        np.save(path, value, allow_pickle=False)


def _load_plain(lib: str, path: str, mmap_mode=None):
    if lib == "joblite":
        return joblite.load(path, mmap_mode=mmap_mode)
    if lib == "joblib":
        return joblib.load(path, mmap_mode=mmap_mode)
    return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


@pytest.mark.parametrize("dataset", ["floats", "ints"])
@pytest.mark.parametrize("lib", LIBS_DUMP)
def test_dump_uncompressed(benchmark, folder, dataset, lib):
    value = data(dataset)
    path = os.path.join(folder, "f.npy")
    benchmark.group = f"dump uncompressed {dataset} {MIB}MiB {folder.split('/')[1]}"
    benchmark.pedantic(_dump_plain, (lib, value, path), rounds=PLAIN_ROUNDS, iterations=1)
    benchmark.extra_info["size_ratio"] = _size(path) / value.nbytes


@pytest.mark.parametrize("dataset", ["floats", "ints"])
@pytest.mark.parametrize("lib", LIBS_PLAIN)
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_load_uncompressed(benchmark, folder, dataset, lib, mmap_mode):
    value = data(dataset)
    path = os.path.join(folder, "f.npy")
    _dump_plain(lib, value, path)
    kind = "mmap" if mmap_mode else "load"
    benchmark.group = f"{kind} uncompressed {dataset} {MIB}MiB {folder.split('/')[1]}"
    out = benchmark.pedantic(_load_plain, (lib, path, mmap_mode), rounds=PLAIN_ROUNDS, iterations=1)
    assert out.shape == value.shape


# --- compressed -------------------------------------------------------------------------------

# the same compress argument for both: joblite's files are joblib files (format 2)
COMPRESSED = {
    "joblite-lz4": ("joblite", "lz4"),
    "joblite-zlib3": ("joblite", 3),
    "joblite-zstd": ("joblite", "zstd"),
    "joblib-lz4": ("joblib", "lz4"),
    "joblib-zlib3": ("joblib", 3),
}


def _dump_compressed(which: str, value, path: str) -> None:
    lib, compress = COMPRESSED[which]
    (joblite if lib == "joblite" else joblib).dump(value, path, compress=compress)


def _load_compressed(which: str, path: str):
    lib, _ = COMPRESSED[which]
    return (joblite if lib == "joblite" else joblib).load(path)


def _rounds(which: str) -> int:
    # zlib at 256 MiB takes seconds per round; JOBLITE_BENCH_ZLIB_ROUNDS=1 for a quick run
    return int(os.environ.get("JOBLITE_BENCH_ZLIB_ROUNDS", ROUNDS)) if "zlib" in which else ROUNDS


@pytest.mark.parametrize("dataset", ["floats", "ints"])
@pytest.mark.parametrize("which", list(COMPRESSED))
def test_dump_compressed(benchmark, folder, dataset, which):
    value = data(dataset)
    path = os.path.join(folder, "c.bin")
    benchmark.group = f"dump compressed {dataset} {MIB}MiB {folder.split('/')[1]}"
    benchmark.pedantic(_dump_compressed, (which, value, path), rounds=_rounds(which), iterations=1)
    benchmark.extra_info["size_ratio"] = _size(path) / value.nbytes


@pytest.mark.parametrize("dataset", ["floats", "ints"])
@pytest.mark.parametrize("which", list(COMPRESSED))
def test_load_compressed(benchmark, folder, dataset, which):
    value = data(dataset)
    path = os.path.join(folder, "c.bin")
    _dump_compressed(which, value, path)
    benchmark.group = f"load compressed {dataset} {MIB}MiB {folder.split('/')[1]}"
    out = benchmark.pedantic(_load_compressed, (which, path), rounds=_rounds(which), iterations=1)
    assert out.shape == value.shape
    benchmark.extra_info["size_ratio"] = _size(path) / value.nbytes


@pytest.mark.parametrize("dataset", ["floats", "ints"])
def test_lz4_codec_in_memory_limit(benchmark, dataset):
    """The Rust lz4 path alone, memory to memory (dumps/loads, no file): the limit for the
    compressed dump/load figures above."""
    value = data(dataset)
    benchmark.group = f"lz4 codec in memory {dataset} {MIB}MiB"
    blob = benchmark.pedantic(joblite.dumps, (value,), {"compress": "lz4"}, rounds=ROUNDS)
    benchmark.extra_info["size_ratio"] = len(blob) / value.nbytes


# --- mixed object -----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", ["joblite", "joblib", "pickle"])
@pytest.mark.parametrize("op", ["dump", "load"])
def test_mixed_object(benchmark, folder, lib, op):
    import pickle

    value = data("mixed")
    path = os.path.join(folder, "m.bin")

    def dump():
        if lib == "pickle":
            with open(path, "wb") as f:
                pickle.dump(value, f, protocol=5)
        else:
            (joblite if lib == "joblite" else joblib).dump(value, path)

    def load():
        if lib == "pickle":
            with open(path, "rb") as f:
                return pickle.load(f)
        return (joblite if lib == "joblite" else joblib).load(path)

    where = folder.split("/")[1]
    benchmark.group = f"mixed object {op} {MIB // 4}MiB arrays + 100k objects {where}"
    if op == "dump":
        benchmark.pedantic(dump, rounds=ROUNDS, iterations=1)
    else:
        dump()
        got = benchmark.pedantic(load, rounds=ROUNDS, iterations=1)
        assert len(got["records"]) == 100_000


# --- large objects pickled in band (issue 18) -------------------------------------------------

IN_BAND_MIB = int(os.environ.get("JOBLITE_BENCH_IN_BAND_MIB", "64"))


def _in_band(kind: str):
    n = IN_BAND_MIB << 20
    block = np.random.default_rng(3).integers(0, 256, 1024, dtype=np.uint8).tobytes()
    if kind == "bytes":
        return block * (n // 1024)
    if kind == "bytearray":
        return bytearray(block * (n // 1024))
    if kind == "str":
        return "abcdefgh" * (n // 8)
    pl = pytest.importorskip("polars")
    rows = 2_000_000
    frame = pl.DataFrame(
        {
            "a": np.arange(rows),
            "b": np.random.default_rng(0).standard_normal(rows),
            "c": np.arange(rows) % 7,
        }
    )
    if kind == "polars":  # plain numbers: joblite writes numpy columns, joblib polars' IPC bytes
        return frame
    # a string column: joblite too keeps polars' pickle (one IPC bytes object, in band)
    return frame.with_columns(c=(pl.col("c") * 1000).cast(pl.String))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "str", "polars", "polars_str"])
@pytest.mark.parametrize("lib", ["joblite", "joblib", "pickle"])
@pytest.mark.parametrize("op", ["dump", "load"])
def test_in_band_object(benchmark, lib, op, kind):
    """Objects that pickle in band (no out-of-band buffer), uncompressed, in /dev/shm."""
    import pickle

    value = _in_band(kind)
    folder = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(folder, "o.bin")

    def dump():
        if lib == "pickle":
            with open(path, "wb") as f:
                pickle.dump(value, f, protocol=5)
        else:
            (joblite if lib == "joblite" else joblib).dump(value, path)

    def load():
        if lib == "pickle":
            with open(path, "rb") as f:
                return pickle.load(f)
        return (joblite if lib == "joblite" else joblib).load(path)

    size = f"{IN_BAND_MIB}MB" if not kind.startswith("polars") else "2M x 3"
    benchmark.group = f"in-band {kind} {size} {op}"
    try:
        if op == "dump":
            benchmark.pedantic(dump, rounds=PLAIN_ROUNDS, iterations=1)
        else:
            dump()
            got = benchmark.pedantic(load, rounds=PLAIN_ROUNDS, iterations=1)
            assert type(got) is type(value)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
