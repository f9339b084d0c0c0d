"""Property tests of joblite.hash: equal objects hash equal, any changed byte changes it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from joblite import hash as jhash

# Hypothesis flags any change of the global `random` state while it draws examples; threads
# left running by other test modules (dask clients, object-store clients) can cause that.
# Our strategies never touch `random`, so that warning is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.complex_numbers(allow_nan=False)
)
hashable = st.recursive(
    scalars, lambda kids: st.tuples(kids, kids) | st.frozensets(kids, max_size=4), max_leaves=10
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=5), kids, max_size=5)
        | st.sets(hashable, max_size=5)
    ),
    max_leaves=30,
)


def _reversed_order(obj):
    """An equal object whose dicts were filled in the opposite order."""
    if isinstance(obj, dict):
        return {k: _reversed_order(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reversed_order(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_reversed_order(x) for x in obj)
    return obj


@settings(max_examples=300, deadline=None)
@given(values)
def test_equal_objects_hash_equal(obj):
    assert jhash(obj) == jhash(copy.deepcopy(obj))
    assert jhash(obj) == jhash(_reversed_order(obj))


def _canonical(obj):
    """A repr-able form in which two objects are equal exactly when joblite must hash them
    equal: types are explicit (1, 1.0 and True differ; so do 0.0 and -0.0), sets and dicts
    are sorted."""
    if isinstance(obj, (set, frozenset)):
        return (type(obj).__name__, sorted(repr(_canonical(x)) for x in obj))
    if isinstance(obj, dict):
        return ("dict", sorted(repr((_canonical(k), _canonical(v))) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_canonical(x) for x in obj])
    if isinstance(obj, float):
        return ("float", obj.hex())
    if isinstance(obj, complex):
        return ("complex", obj.real.hex(), obj.imag.hex())
    return (type(obj).__name__, repr(obj))


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_different_objects_hash_differently(a, b):
    if _canonical(a) != _canonical(b):
        assert jhash(a) != jhash(b)
    else:
        assert jhash(a) == jhash(b)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=hnp.scalar_dtypes(),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    ),
    st.data(),
)
def test_a_one_byte_change_in_an_array_changes_the_digest(arr, data):
    raw = bytearray(np.ascontiguousarray(arr).tobytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    changed = np.frombuffer(bytes(raw), dtype=arr.dtype).reshape(arr.shape)
    assert jhash(changed) != jhash(arr)
    # a Fortran-ordered copy of the same values hashes like the original
    assert jhash(np.asfortranarray(arr)) == jhash(arr)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_a_one_byte_change_in_bytes_changes_the_digest(raw, data):
    pos = data.draw(st.integers(0, len(raw) - 1))
    changed = bytearray(raw)
    changed[pos] = (changed[pos] + data.draw(st.integers(1, 255))) % 256
    assert jhash(bytes(changed)) != jhash(raw)


@pytest.mark.parametrize("step", [2, 3, 7])
def test_strided_views_hash_like_copies(step):
    rng = np.random.default_rng(step)
    a = rng.integers(0, 255, size=(300, 301), dtype=np.uint8)
    for view in (a[::step], a[:, ::step], a[::step, ::-step], a.T[::step]):
        assert jhash(view) == jhash(view.copy())
