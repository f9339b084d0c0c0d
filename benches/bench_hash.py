"""joblite.hash next to joblib.hash and the memory-bandwidth limit (np.copyto), in one run.

Run: ``make benchmark ARGS="-k hash"``. Groups: a 1 GiB float64 array, a 512 MiB
non-contiguous view, a dict of 100k str keys to small tuples, a list of 10k small arrays.
Compare the ``mean`` of each line with the others of its group.
"""

from __future__ import annotations

import joblib
import joblite
import numpy as np
import pytest

from conftest import scaled


@pytest.fixture(scope="module")
def big_array():
    return np.random.default_rng(0).standard_normal(scaled(2**30) // 8)


@pytest.fixture(scope="module")
def strided_view(big_array):
    view = big_array.reshape(-1, 2)[:, 0]  # every other element: half the bytes, stride 16
    assert not view.flags.c_contiguous
    return view


@pytest.fixture(scope="module")
def str_dict():
    return {f"key-{i}": (i, float(i) / 3, "value") for i in range(100_000)}


@pytest.fixture(scope="module")
def small_arrays():
    rng = np.random.default_rng(1)
    return [rng.standard_normal(16) for _ in range(10_000)]


def _run(benchmark, func, arg, rounds):
    benchmark.pedantic(func, args=(arg,), rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="hash: 1 GiB float64 array")
@pytest.mark.parametrize("impl", ["joblite", "joblib", "np.copyto (limit)"])
def test_big_array(benchmark, big_array, impl):
    if impl == "np.copyto (limit)":
        out = np.empty_like(big_array)
        _run(benchmark, lambda a: np.copyto(out, a), big_array, 5)
    elif impl == "joblite":
        _run(benchmark, joblite.hash, big_array, 5)
    else:
        _run(benchmark, joblib.hash, big_array, 2)


@pytest.fixture(scope="module")
def array_256mib():
    return np.random.default_rng(2).standard_normal(scaled(2**28) // 8)


@pytest.mark.benchmark(group="hash: 256 MiB float64 array vs blake3 itself")
@pytest.mark.parametrize("impl", ["joblite", "blake3 (max_threads=AUTO)", "joblib"])
def test_256mib_vs_blake3(benchmark, array_256mib, impl):
    """joblite.hash against the blake3 package hashing the same bytes on every core."""
    if impl == "joblite":
        _run(benchmark, joblite.hash, array_256mib, 10)
    elif impl == "joblib":
        _run(benchmark, joblib.hash, array_256mib, 2)
    else:
        blake3 = pytest.importorskip("blake3")
        data = memoryview(array_256mib).cast("B")
        _run(
            benchmark,
            lambda d: blake3.blake3(d, max_threads=blake3.blake3.AUTO).digest(),
            data,
            10,
        )


@pytest.mark.benchmark(group="hash: 512 MiB non-contiguous view")
@pytest.mark.parametrize("impl", ["joblite", "joblib", "np.copyto (limit)"])
def test_strided_view(benchmark, strided_view, impl):
    if impl == "np.copyto (limit)":
        out = np.empty(strided_view.shape, strided_view.dtype)
        _run(benchmark, lambda a: np.copyto(out, a), strided_view, 5)
    elif impl == "joblite":
        _run(benchmark, joblite.hash, strided_view, 5)
    else:
        _run(benchmark, joblib.hash, strided_view, 2)


@pytest.mark.benchmark(group="hash: dict of 100k str keys")
@pytest.mark.parametrize("impl", ["joblite", "joblib"])
def test_str_dict(benchmark, str_dict, impl):
    func = joblite.hash if impl == "joblite" else joblib.hash
    _run(benchmark, func, str_dict, 10 if impl == "joblite" else 3)


@pytest.mark.benchmark(group="hash: list of 10k small arrays")
@pytest.mark.parametrize("impl", ["joblite", "joblib"])
def test_small_arrays(benchmark, small_arrays, impl):
    func = joblite.hash if impl == "joblite" else joblib.hash
    _run(benchmark, func, small_arrays, 20 if impl == "joblite" else 3)
