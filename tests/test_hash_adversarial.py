"""Adversarial checks of the data-stack keys: state the content handlers could miss (attributes
set on a frame, subclasses), hashing that must not change the object, and keys that must not
depend on the process (``PYTHONHASHSEED``). The equal/differ pairs live in tests/_hash_cases.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import joblite
import pytest

pd = pytest.importorskip("pandas", reason="pandas is not installed")


class _Tagged(pd.DataFrame):
    """A subclass that keeps state outside ``_metadata`` (pickle drops it; a function reads it)."""

    @property
    def _constructor(self):  # type: ignore[override]
        return _Tagged


def test_an_attribute_set_on_a_frame_subclass_is_content():
    a, b = _Tagged({"x": [1.0]}), _Tagged({"x": [1.0]})
    object.__setattr__(a, "unit", "m")
    object.__setattr__(b, "unit", "s")
    assert joblite.hash(a) != joblite.hash(b)
    assert joblite.hash(a) != joblite.hash(_Tagged({"x": [1.0]}))


class _Slotted(pd.DataFrame):
    """A subclass that keeps its state in ``__slots__`` (not in ``__dict__``)."""

    __slots__ = ("unit",)

    @property
    def _constructor(self):  # type: ignore[override]
        return _Slotted


def test_the_slots_of_a_frame_subclass_are_content():
    a, b = _Slotted({"x": [1.0]}), _Slotted({"x": [1.0]})
    a.unit, b.unit = "m", "s"
    assert joblite.hash(a) != joblite.hash(b)
    assert joblite.hash(_Slotted({"x": [1.0]})) == joblite.hash(_Slotted({"x": [1.0]}))


def test_an_attribute_set_on_a_plain_frame_or_series_is_content():
    frame = pd.DataFrame({"x": [1]})
    before = joblite.hash(frame)
    frame.scale = 2  # a plain attribute, readable by a cached function
    assert joblite.hash(frame) != before
    series = pd.Series([1.0], name="s")
    before = joblite.hash(series)
    series.scale = 2
    assert joblite.hash(series) != before


def test_pandas_caches_are_not_content():
    a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    before = joblite.hash(a)
    a.mean(numeric_only=True), a["x"], a.iloc[0], a.index.is_unique, a.columns.get_loc("y")
    assert joblite.hash(a) == before


def test_hashing_does_not_consolidate_or_change_a_frame():
    frame = pd.DataFrame({"a": [1, 2]})
    frame["b"] = [1.0, 2.0]
    frame["c"] = [3, 4]
    blocks = frame._mgr.nblocks
    state = sorted(vars(frame))  # pandas 2 also keeps _item_cache and _is_copy
    joblite.hash(frame)
    assert frame._mgr.nblocks == blocks
    assert sorted(vars(frame)) == state


_SCRIPT = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("ignore")
    import joblite, pandas as pd
    frame = pd.DataFrame({"x": [1, 2], "c": pd.Categorical(["a", "b"]), 3: ["u", None]})
    frame.attrs["tags"] = {"b", "a", "c"}
    frame.attrs["meta"] = {"z": 1, "y": frozenset({1, 2})}
    out = [joblite.hash(frame), joblite.hash(frame["c"]), joblite.hash(frame.columns)]
    try:
        import pyarrow as pa
        out.append(joblite.hash(pa.table({"s": ["a", None]}).replace_schema_metadata({"k": "v"})))
    except ImportError:
        pass
    print(" ".join(out))
    """
)


def test_keys_do_not_depend_on_pythonhashseed():
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run(
            [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(run.stdout.strip())
    assert len(outputs) == 1, outputs


class _Box:
    def __init__(self, value):
        self.value = value


def test_a_polars_object_column_is_its_values_not_their_addresses():
    pl = pytest.importorskip("polars", reason="polars is not installed")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")

    def frame(value):
        return pl.DataFrame({"x": [1], "o": pl.Series([_Box(value)], dtype=pl.Object)})

    # polars exports an Object column as the objects' addresses: equal values missed, and a
    # new object at a freed address would have shared the key of another value
    assert joblite.hash(frame(1)) == joblite.hash(frame(1))
    assert joblite.hash(frame(1)) != joblite.hash(frame(2))
    series = [pl.Series("o", [_Box(v)], dtype=pl.Object) for v in (1, 1, 2)]
    assert joblite.hash(series[0]) == joblite.hash(series[1]) != joblite.hash(series[2])


def test_which_dataset_variables_are_coordinates_keeps_their_name_types():
    xr = pytest.importorskip("xarray", reason="xarray is not installed")

    ds = xr.Dataset({1: ("x", [1]), "1": ("x", [2])})
    assert joblite.hash(ds.set_coords([1])) != joblite.hash(ds.set_coords(["1"]))


def test_an_attribute_set_on_a_sparse_matrix_subclass_is_content():
    sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")

    class Labeled(sp.csr_matrix):
        pass

    a, b = Labeled(sp.eye(2).tocsr()), Labeled(sp.eye(2).tocsr())
    a.labels, b.labels = ["x", "y"], ["u", "v"]
    assert joblite.hash(a) != joblite.hash(b)
    plain = sp.eye(2).tocsr()
    before = joblite.hash(plain)
    _ = (plain.has_canonical_format, plain.has_sorted_indices)  # scipy's cached flags: not content
    assert joblite.hash(plain) == before
