"""joblite.hash of functions (by name when importable, else by value) and of large arrays
(their own blake3 tree, equal whatever the memory layout)."""

from __future__ import annotations

import functools
import threading

import joblite
import numpy as np
import pytest
from joblite.exceptions import UnhashableError

SCALE = 3


def module_level(x):
    return x * SCALE


def test_importable_functions_hash_by_name():
    assert joblite.hash(module_level) == joblite.hash(module_level)
    assert joblite.hash(module_level) != joblite.hash(functools.reduce)


def test_closures_hash_what_they_captured():
    def make(n, k=1):
        return lambda x: x * n + k

    assert joblite.hash(make(1)) == joblite.hash(make(1))
    assert joblite.hash(make(1)) != joblite.hash(make(2))
    assert joblite.hash(make(1, k=2)) != joblite.hash(make(1))


def test_lambdas_hash_by_code_and_defaults():
    f = lambda x: x + 1  # noqa: E731
    g = lambda x: x * 10  # noqa: E731
    h = lambda x, d=1: x + d  # noqa: E731
    k = lambda x, d=2: x + d  # noqa: E731
    assert len({joblite.hash(f), joblite.hash(g), joblite.hash(h), joblite.hash(k)}) == 4


def test_globals_read_by_a_nested_function_are_covered(monkeypatch):
    def outer():
        def reads_global(x):
            return x * SCALE

        return reads_global

    before = joblite.hash(outer())
    monkeypatch.setattr(__import__(__name__), "SCALE", 1000)
    assert joblite.hash(outer()) != before


def test_recursive_nested_function_hashes():
    def outer():
        def fact(n):
            return 1 if n < 2 else n * fact(n - 1)

        return fact

    assert joblite.hash(outer()) == joblite.hash(outer())


def test_unhashable_capture_is_a_clear_error():
    lock = threading.Lock()
    with pytest.raises(UnhashableError, match="captured lock"):
        joblite.hash(lambda: lock)


@pytest.mark.parametrize("n", [1000, 300_000])  # below and above the parallel threshold
def test_arrays_hash_by_logical_content(n):
    a = np.random.default_rng(0).random((n, 2))
    views = [a, np.asfortranarray(a), a.copy(), np.ascontiguousarray(a[:, ::-1])[:, ::-1]]
    assert len({joblite.hash(v) for v in views}) == 1
    b = a.copy()
    b[-1, -1] += 1
    assert joblite.hash(b) != joblite.hash(a)
    assert joblite.hash(a.astype(np.float32)) != joblite.hash(a)


def test_large_array_encoding_matches_the_spec():
    """docs/hash.md: an array of 1 MiB or more covers blake3(its data) instead of the data."""
    blake3 = pytest.importorskip("blake3")
    import struct

    a = np.arange(2**18, dtype="<i8")
    u64 = lambda n: struct.pack("<Q", n)  # noqa: E731
    descr = repr(a.dtype.descr).encode()
    stream = (
        b"joblite-hash-v7\x00A"
        + u64(len(descr))
        + descr
        + u64(8)
        + u64(1)
        + u64(a.shape[0])
        + u64(a.nbytes)
        + blake3.blake3(a.tobytes()).digest()
    )
    assert joblite.hash(a) == blake3.blake3(stream).hexdigest()
