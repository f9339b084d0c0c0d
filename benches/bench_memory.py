"""Memory: cache-hit latency and miss overhead, joblite next to joblib 1.6 in the same run.

Run: ``make benchmark ARGS="benches/bench_memory.py"`` (or
``.venv/bin/python -m pytest benches/bench_memory.py --benchmark-enable --benchmark-only``).
The caches live in /dev/shm (RAM), so the figures measure the libraries, not the disk.
Compare within a group: ``joblite`` vs ``joblib`` vs the ``limit`` row where there is one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

import joblib
import joblite
import numpy as np
import pytest
from build_entries import build

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
LIBS = {"joblite": joblite, "joblib": joblib}
MIB = 1024 * 1024


@pytest.fixture
def cache_dir():
    d = tempfile.mkdtemp(prefix="bench-memory-", dir=SHM)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def add(a, b, s):
    return a + b + len(s)


def total(x):
    return float(x[:10].sum())


def make_array(n_bytes):
    return np.ones(n_bytes // 8, dtype=np.float64)


def make_memory(lib, cache_dir, **kwargs):
    """``lib`` is a library name, optionally followed by " compute_once=False"."""
    if lib.endswith("compute_once=False"):
        kwargs["compute_once"] = False
    return LIBS[lib.split()[0]].Memory(cache_dir, verbose=0, **kwargs)


@pytest.mark.parametrize("lib", [*LIBS, "joblite compute_once=False"])
def test_hit_small_args(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: small args (two ints, a short str)"
    f = make_memory(lib, cache_dir).cache(add)
    f(1, 2, "abc")
    assert benchmark(f, 1, 2, "abc") == 6


@pytest.mark.parametrize("lib", list(LIBS))
def test_hit_1mib_array_arg(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: 1 MiB array argument"
    x = np.random.default_rng(0).random(MIB // 8)
    f = LIBS[lib].Memory(cache_dir, verbose=0).cache(total)
    f(x)
    benchmark(f, x)


@pytest.mark.parametrize("lib", list(LIBS))
def test_hit_100mib_array_arg(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: 100 MiB array argument"
    x = np.random.default_rng(0).random(100 * MIB // 8)
    f = LIBS[lib].Memory(cache_dir, verbose=0).cache(total)
    f(x)
    benchmark.pedantic(f, args=(x,), rounds=8, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("lib", [*LIBS, "joblite verify=False", "limit: np.load"])
def test_hit_100mib_result(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: 100 MiB array result, loaded"
    if lib.startswith("limit"):
        path = os.path.join(cache_dir, "a.npy")
        np.save(path, make_array(100 * MIB))
        out = benchmark.pedantic(np.load, args=(path,), rounds=8, iterations=1, warmup_rounds=1)
    else:
        options = {"verify": False} if "verify=False" in lib else None
        mem = LIBS[lib.split()[0]].Memory(cache_dir, verbose=0, backend_options=options)
        f = mem.cache(make_array)
        f(100 * MIB)
        out = benchmark.pedantic(f, args=(100 * MIB,), rounds=8, iterations=1, warmup_rounds=1)
    assert out.nbytes == 100 * MIB


@pytest.mark.parametrize("lib", [*LIBS, "limit: np.load mmap"])
def test_hit_100mib_result_mmap(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: 100 MiB array result, mmap_mode='r'"
    if lib.startswith("limit"):
        path = os.path.join(cache_dir, "a.npy")
        np.save(path, make_array(100 * MIB))
        out = benchmark(np.load, path, mmap_mode="r")
    else:
        f = LIBS[lib].Memory(cache_dir, verbose=0, mmap_mode="r").cache(make_array)
        f(100 * MIB)
        out = benchmark(f, 100 * MIB)
    assert out.nbytes == 100 * MIB


@pytest.mark.parametrize("lib", [*LIBS, "joblite compute_once=False", "limit: bare call"])
def test_miss_overhead(benchmark, cache_dir, lib):
    benchmark.group = "memory miss: new small args each call (includes the write)"
    counter = itertools.count()
    if lib.startswith("limit"):
        f = add
    else:
        f = make_memory(lib, cache_dir).cache(add)

    def new_args():
        return (next(counter), 2, "abc"), {}

    benchmark.pedantic(f, setup=new_args, rounds=300, warmup_rounds=5)


def step_total(x):
    """A chained step: its argument is the previous step's (memory-mapped) result."""
    return float(x[:10].sum())


@pytest.mark.parametrize(
    "lib", ["joblite chained", "joblite re-hash (memmap not from the cache)", "joblib"]
)
def test_chained_hit_200mb_memmap(benchmark, cache_dir, lib):
    """Step 2 of a pipeline, whose argument is step 1's 200 MB result, memory-mapped.

    ``joblite chained`` keys the argument by the digest stored with step 1's entry (O(1));
    the re-hash line is the same call with an equal memory map that is not a cached result
    (what every chained hit cost before), and joblib hashes it too.
    """
    benchmark.group = "memory hit: chained step, 200 MB memory-mapped argument"
    name = lib.split()[0]
    mem = LIBS[name].Memory(cache_dir, verbose=0, mmap_mode="r")
    step1 = mem.cache(make_array)
    step2 = mem.cache(step_total)
    x = step1(200 * 10**6)
    if "re-hash" in lib:
        path = os.path.join(cache_dir, "copy.npy")
        np.save(path, np.asarray(x))
        x = np.load(path, mmap_mode="r")
    step2(x)
    rounds = 200 if lib == "joblite chained" else 5
    benchmark.pedantic(step2, args=(x,), rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def big_caches():
    root = tempfile.mkdtemp(prefix="bench-memory-entries-", dir=SHM)
    caches = {n: build(os.path.join(root, str(n)), n) for n in (1000, 1_000_000)}
    yield caches
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("n_entries", [1000, 1_000_000])
def test_hit_among_many_entries(benchmark, big_caches, n_entries):
    """A hit of a function with 1,000 entries vs one with 1,000,000 (built by build_entries)."""
    benchmark.group = "memory hit: one function with 1,000 vs 1,000,000 entries"
    f = big_caches[n_entries]
    keys = itertools.cycle(range(1000))
    benchmark.pedantic(lambda: f(next(keys)), rounds=3000, iterations=1, warmup_rounds=100)


def frame_rows(n_rows):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "i": np.arange(n_rows, dtype=np.int64),
            "x": rng.random(n_rows),
            "c": pd.Categorical(rng.integers(0, 10, n_rows).astype(str)),
        }
    )


def frame_total(df):
    return float(df["x"].sum())


@pytest.mark.parametrize("lib", list(LIBS))
def test_hit_frame_arg(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: DataFrame argument (100k rows: int, float, category)"
    df = frame_rows(100_000)
    f = LIBS[lib].Memory(cache_dir, verbose=0).cache(frame_total)
    f(df)
    benchmark(f, df)


@pytest.mark.parametrize("lib", [*LIBS, "limit: bare call"])
def test_miss_frame_arg(benchmark, cache_dir, lib):
    """A miss stores per-column digests for explain_miss: what that adds to a miss."""
    benchmark.group = "memory miss: DataFrame argument (100k rows), includes the write"
    df = frame_rows(100_000)
    counter = itertools.count()
    f = (
        frame_total
        if lib.startswith("limit")
        else LIBS[lib].Memory(cache_dir, verbose=0).cache(lambda df, i: frame_total(df))
    )
    if lib.startswith("limit"):
        benchmark.pedantic(f, args=(df,), rounds=30, warmup_rounds=2)
        return

    def new_args():
        return (df, next(counter)), {}

    benchmark.pedantic(f, setup=new_args, rounds=30, warmup_rounds=2)


@pytest.mark.parametrize("case", ["explain_miss (20 entries)", "limit: check_call_in_cache"])
def test_explain_miss_frame(benchmark, cache_dir, case):
    """``explain_miss`` reads the 20 most recent entries' metadata and hashes the call's
    frame per column: the cost of asking why, next to asking whether."""
    benchmark.group = "memory explain: DataFrame argument (100k rows), 20 entries"
    df = frame_rows(100_000)
    f = joblite.Memory(cache_dir, verbose=0).cache(lambda df, i: frame_total(df))
    for i in range(20):
        f(df, i)
    call = f.check_call_in_cache if case.startswith("limit") else f.explain_miss
    benchmark(call, df.assign(x=0.0), 3)
