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


@pytest.mark.parametrize("lib", list(LIBS))
def test_hit_small_args(benchmark, cache_dir, lib):
    benchmark.group = "memory hit: small args (two ints, a short str)"
    f = LIBS[lib].Memory(cache_dir, verbose=0).cache(add)
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


@pytest.mark.parametrize("lib", [*LIBS, "limit: bare call"])
def test_miss_overhead(benchmark, cache_dir, lib):
    benchmark.group = "memory miss: new small args each call (includes the write)"
    counter = itertools.count()
    if lib.startswith("limit"):
        f = add
    else:
        f = LIBS[lib].Memory(cache_dir, verbose=0).cache(add)

    def new_args():
        return (next(counter), 2, "abc"), {}

    benchmark.pedantic(f, setup=new_args, rounds=300, warmup_rounds=5)
