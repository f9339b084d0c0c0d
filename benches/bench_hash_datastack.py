"""Hashing data-stack objects: joblite.hash next to joblib.hash and dask.base.tokenize.

Run: ``make benchmark ARGS="-k datastack"``. Hash time, and cache-hit time (``Memory.cache``
of a cheap function called again with the same object; joblite and joblib). Groups: a 1e6-row
frame of int64, float64, category, str and datetime columns (pandas' default str dtype, and
object strings as pandas 2 makes them), a polars frame and an Arrow table of the same data, a
40 MB float32 tensor (torch when installed, else numpy), a 1000x1000 xarray DataArray with
coordinates. Each group is skipped when its library is missing. ``JOBLITE_BENCH_SCALE`` scales
the row counts.
"""

from __future__ import annotations

import joblib
import joblite
import numpy as np
import pytest

from conftest import scaled

IMPLS = ["joblite", "joblib", "dask.tokenize"]


def _impl(name):
    if name == "joblite":
        return joblite.hash
    if name == "joblib":
        return joblib.hash
    dask_base = pytest.importorskip("dask.base")
    return dask_base.tokenize


def _run(benchmark, impl, obj):
    rounds = 3 if impl == "joblib" else 10
    benchmark.pedantic(_impl(impl), args=(obj,), rounds=rounds, iterations=1, warmup_rounds=1)


def _columns(n):
    rng = np.random.default_rng(0)
    return {
        "i": np.arange(n, dtype=np.int64),
        "f": rng.standard_normal(n),
        "c": (np.arange(n) % 7).astype(str),
        "s": np.char.add("name-", (np.arange(n) % 5003).astype(str)).astype(object),
        "d": np.datetime64("2020-01-01") + np.arange(n).astype("timedelta64[s]"),
    }


@pytest.fixture(scope="module")
def rows():
    return scaled(1_000_000)


@pytest.fixture(scope="module")
def frame(rows):
    pd = pytest.importorskip("pandas")
    cols = _columns(rows)
    df = pd.DataFrame(cols)
    df["c"] = df["c"].astype("category")
    df["s"] = df["s"].astype("str")  # pandas 3's default dtype for strings
    return df


@pytest.fixture(scope="module")
def frame_object_strings(frame):
    df = frame.copy()
    df["s"] = df["s"].astype(object)
    return df


@pytest.mark.benchmark(group="hash: 1e6-row frame, pandas default dtypes")
@pytest.mark.parametrize("impl", IMPLS)
def test_frame(benchmark, frame, impl):
    _run(benchmark, impl, frame)


@pytest.mark.benchmark(group="hash: 1e6-row frame, object strings (pandas 2)")
@pytest.mark.parametrize("impl", IMPLS)
def test_frame_object_strings(benchmark, frame_object_strings, impl):
    _run(benchmark, impl, frame_object_strings)


@pytest.mark.benchmark(group="hash: 1e6-row polars frame")
@pytest.mark.parametrize("impl", IMPLS)
def test_polars(benchmark, frame, impl):
    pl = pytest.importorskip("polars")
    pytest.importorskip("pyarrow")
    _run(benchmark, impl, pl.from_pandas(frame))


@pytest.mark.benchmark(group="hash: 1e6-row Arrow table")
@pytest.mark.parametrize("impl", IMPLS)
def test_arrow(benchmark, frame, impl):
    pa = pytest.importorskip("pyarrow")
    _run(benchmark, impl, pa.Table.from_pandas(frame, preserve_index=False))


@pytest.mark.benchmark(group="hash: 40 MB float32 tensor")
@pytest.mark.parametrize("impl", IMPLS)
def test_tensor(benchmark, impl):
    values = np.random.default_rng(0).standard_normal(scaled(10_000_000)).astype(np.float32)
    try:
        import torch

        obj = torch.from_numpy(values)
    except ImportError:
        obj = values
    _run(benchmark, impl, obj)


@pytest.mark.benchmark(group="hash: 1000x1000 xarray DataArray")
@pytest.mark.parametrize("impl", IMPLS)
def test_xarray(benchmark, impl):
    xr = pytest.importorskip("xarray")
    n = max(2, int(1000 * scaled(1_000_000) / 1_000_000))
    da = xr.DataArray(
        np.random.default_rng(0).standard_normal((n, n)),
        dims=("x", "y"),
        coords={"x": np.arange(n), "y": np.linspace(0, 1, n)},
        name="field",
    )
    _run(benchmark, impl, da)


# --- cache hits: a cached function called again with an equal object (a copy) ---


def _shape(obj):  # the cached function: cheap, so the hit's cost is the key and the read
    return len(obj)


def _objects(kind, frame):
    if kind == "pandas frame":
        return frame
    if kind == "pandas frame, object strings":
        df = frame.copy()
        df["s"] = df["s"].astype(object)
        return df
    if kind == "Arrow table":
        pa = pytest.importorskip("pyarrow")
        return pa.Table.from_pandas(frame, preserve_index=False)
    if kind == "polars frame":
        pl = pytest.importorskip("polars")
        pytest.importorskip("pyarrow")
        return pl.from_pandas(frame)
    if kind == "40 MB float32 array":
        return np.random.default_rng(0).standard_normal(scaled(10_000_000)).astype(np.float32)
    xr = pytest.importorskip("xarray")
    n = max(2, int(1000 * scaled(1_000_000) / 1_000_000))
    return xr.DataArray(
        np.random.default_rng(0).standard_normal((n, n)),
        dims=("x", "y"),
        coords={"x": np.arange(n), "y": np.linspace(0, 1, n)},
        name="field",
    )


HIT_KINDS = [
    "pandas frame",
    "pandas frame, object strings",
    "Arrow table",
    "polars frame",
    "40 MB float32 array",
    "xarray DataArray",
]


@pytest.mark.parametrize("impl", ["joblite", "joblib"])
@pytest.mark.parametrize("kind", HIT_KINDS)
def test_cache_hit(benchmark, frame, tmp_path, kind, impl):
    benchmark.group = f"cache hit: {kind}"
    obj = _objects(kind, frame)
    memory = (joblite if impl == "joblite" else joblib).Memory(tmp_path, verbose=0)
    cached = memory.cache(_shape)
    expected = cached(obj)  # the miss: computed and stored
    rounds = 3 if impl == "joblib" else 10
    result = benchmark.pedantic(cached, args=(obj,), rounds=rounds, iterations=1, warmup_rounds=1)
    assert result == expected
