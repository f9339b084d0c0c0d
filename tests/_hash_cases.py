"""Pairs of objects for the data-stack hash battery: (builder a, builder b, same key?).

Every builder is deterministic, so a pair can be built in two fresh processes and go through
``Memory.cache`` there (tests/test_hash_datastack.py). A builder returns None when a package
it needs is missing (the case is then skipped).
"""

from __future__ import annotations

import importlib.util
import io
from typing import Any, Callable

import numpy as np

Case = tuple[Callable[[], Any], Callable[[], Any], bool]
CASES: dict[str, Case] = {}


class NotApplicable(Exception):
    """Raised by a builder when the installed version of a library cannot express the case
    (an older xarray stores a categorical variable as plain objects): the case is skipped."""


def has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def case(name: str, same: bool, needs: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register ``builder() -> (a, b)`` as a case."""

    def register(builder: Callable[[], tuple[Any, Any]]) -> Callable:
        if has(*needs):
            CASES[name] = (lambda: builder()[0], lambda: builder()[1], same)
        return builder

    return register


# ------------------------------------------------------------------------------------ pandas


def frame() -> Any:
    import pandas as pd

    n = 50
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "f": rng.random(n),
            "s": [f"v{i % 7}" for i in range(n)],
            "c": pd.Categorical([("x", "y", "z")[i % 3] for i in range(n)]),
            "d": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        }
    )


def tall_frame() -> Any:
    """A frame tall enough for its columns to be hashed on threads at once (2**17 rows)."""
    import pandas as pd

    n = 131_075
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "a": rng.standard_normal(n),
            "b": rng.standard_normal(n),
            "s": pd.array([f"v{i % 101}" for i in range(n)], dtype="str"),
            "c": pd.Categorical(np.arange(n) % 5),
        }
    )


@case("tall pandas: copy with its columns in separate blocks", True, ("pandas",))
def _tall_copy() -> tuple:
    import pandas as pd

    df = tall_frame()
    return df, pd.DataFrame({name: df[name].copy() for name in df.columns})


@case("tall pandas: the values of two float columns swapped", False, ("pandas",))
def _tall_values_swapped() -> tuple:
    df = tall_frame()
    other = df.copy()
    other["a"], other["b"] = df["b"].to_numpy(), df["a"].to_numpy()
    return df, other


@case("tall pandas: a column moved to another position", False, ("pandas",))
def _tall_moved() -> tuple:
    df = tall_frame()
    return df, df[["b", "a", "s", "c"]]


@case("tall pandas: two column names swapped", False, ("pandas",))
def _tall_names_swapped() -> tuple:
    df = tall_frame()
    return df, df.rename(columns={"a": "b", "b": "a"})


@case("tall Arrow table: one chunk vs batches of 40,000 rows", True, ("pandas", "pyarrow"))
def _tall_arrow_chunks() -> tuple:
    import pyarrow as pa

    table = pa.Table.from_pandas(tall_frame(), preserve_index=False)
    return table, pa.Table.from_batches(table.to_batches(max_chunksize=40_000))


@case("tall Arrow table: the last row of one column changed", False, ("pandas", "pyarrow"))
def _tall_arrow_last_row() -> tuple:
    import pyarrow as pa

    df = tall_frame()
    other = df.copy()
    other.loc[len(df) - 1, "b"] = 0.5
    return (
        pa.Table.from_pandas(df, preserve_index=False),
        pa.Table.from_pandas(other, preserve_index=False),
    )


@case("pandas: copy", True, ("pandas",))
def _copy() -> tuple:
    df = frame()
    return df, df.copy()


@case("pandas: built column by column", True, ("pandas",))
def _by_column() -> tuple:
    import pandas as pd

    df = frame()
    built = pd.DataFrame(index=df.index)
    for name in df.columns:
        built[name] = df[name].copy()
    return df, built


@case("pandas: parquet round trip", True, ("pandas", "pyarrow"))
def _parquet() -> tuple:
    import pandas as pd

    df = frame()
    buf = io.BytesIO()
    df.to_parquet(buf)
    return df, pd.read_parquet(io.BytesIO(buf.getvalue()))


@case("pandas: concat of two halves", True, ("pandas",))
def _concat() -> tuple:
    import pandas as pd

    df = frame()
    return df, pd.concat([df.iloc[:20], df.iloc[20:]])


@case("pandas: one block or many (consolidation)", True, ("pandas",))
def _blocks() -> tuple:
    import pandas as pd

    data = {f"c{i}": np.arange(10.0) * i for i in range(5)}
    one = pd.DataFrame(np.column_stack(list(data.values())), columns=list(data))
    many = pd.DataFrame({"c0": data["c0"]})
    for name in list(data)[1:]:
        many[name] = data[name]
    return one, many


@case("pandas: RangeIndex vs the same int64 Index", True, ("pandas",))
def _range_index() -> tuple:
    import pandas as pd

    return pd.Series([1.0, 2.0, 3.0]), pd.Series([1.0, 2.0, 3.0], index=pd.Index([0, 1, 2]))


@case("pandas: stepped RangeIndex vs the same int64 Index", True, ("pandas",))
def _stepped_range_index() -> tuple:
    import pandas as pd

    values = np.arange(5, 5000, 3, dtype=np.int64)
    ranged = pd.Series(values * 2.0, index=pd.RangeIndex(5, 5000, 3))
    return ranged, pd.Series(values * 2.0, index=pd.Index(values.copy()))


@case("pandas: descending RangeIndex vs the same int64 Index", True, ("pandas",))
def _descending_range_index() -> tuple:
    import pandas as pd

    index = pd.RangeIndex(50, -7, -4, name="t")
    return pd.DataFrame({"x": range(len(index))}, index=index), pd.DataFrame(
        {"x": range(len(index))}, index=pd.Index(list(index), dtype=np.int64, name="t")
    )


@case("pandas: one-row RangeIndex vs the same int64 Index", True, ("pandas",))
def _one_row_range_index() -> tuple:
    import pandas as pd

    return pd.Series([1.0], index=pd.RangeIndex(7, 8, 5)), pd.Series([1.0], index=[7])


@case("pandas: empty RangeIndex vs an empty int64 Index", True, ("pandas",))
def _empty_range_index() -> tuple:
    import pandas as pd

    empty = pd.Index([], dtype=np.int64)
    return pd.Series([], dtype=float, index=pd.RangeIndex(3, 3)), pd.Series(
        [], dtype=float, index=empty
    )


@case("pandas: RangeIndex vs an int64 Index with its last value changed", False, ("pandas",))
def _range_index_last_value() -> tuple:
    import pandas as pd

    values = np.arange(300_000, dtype=np.int64)  # large: checked on the core threads
    values[-1] += 1
    return pd.Series(0.0, index=pd.RangeIndex(300_000)), pd.Series(0.0, index=values)


@case("pandas: RangeIndex vs the same values as int32", False, ("pandas",))
def _range_index_int32() -> tuple:
    import pandas as pd

    return pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0], index=pd.Index([0, 1], dtype=np.int32))


@case("pandas: RangeIndex vs another step", False, ("pandas",))
def _range_index_step() -> tuple:
    import pandas as pd

    return pd.Series([1.0, 2.0], index=pd.RangeIndex(0, 4, 2)), pd.Series(
        [1.0, 2.0], index=pd.RangeIndex(0, 6, 3)
    )


@case("pandas: int64 index, progression vs not", False, ("pandas",))
def _progression_vs_values() -> tuple:
    import pandas as pd

    return pd.Series([1.0, 2.0, 3.0], index=[0, 2, 4]), pd.Series([1.0, 2.0, 3.0], index=[0, 2, 5])


@case("pandas: MultiIndex with unused levels", True, ("pandas",))
def _multiindex() -> tuple:
    import pandas as pd

    mi = pd.MultiIndex.from_product([[1, 2, 3], ["a", "b"]])
    full = pd.Series(range(6), index=mi).iloc[:4]
    return full, pd.Series(range(4), index=full.index.remove_unused_levels())


@case("pandas: bytes under a missing Int64 value", True, ("pandas",))
def _masked_bytes() -> tuple:
    import pandas as pd

    mask = np.array([False, True, False])
    a = pd.arrays.IntegerArray(np.array([1, 5, 3]), mask)
    b = pd.arrays.IntegerArray(np.array([1, 7, 3]), mask.copy())
    return pd.Series(a), pd.Series(b)


@case("pandas: int64 vs int32", False, ("pandas",))
def _int32() -> tuple:
    import pandas as pd

    return pd.Series([1, 2], dtype="int64"), pd.Series([1, 2], dtype="int32")


@case("pandas: one value changed", False, ("pandas",))
def _value() -> tuple:
    df = frame()
    other = df.copy()
    other.loc[7, "f"] += 1e-12
    return df, other


@case("pandas: a string value changed", False, ("pandas",))
def _string_value() -> tuple:
    df = frame()
    other = df.copy()
    other.loc[7, "s"] = "changed"
    return df, other


@case("pandas: column order", False, ("pandas",))
def _order() -> tuple:
    df = frame()
    return df, df[["f", "i", "s", "c", "d"]]


@case("pandas: column label", False, ("pandas",))
def _label() -> tuple:
    df = frame()
    return df, df.rename(columns={"f": "g"})


@case("pandas: row order (index labels move with rows)", False, ("pandas",))
def _rows() -> tuple:
    df = frame()
    return df, df.iloc[::-1]


@case("pandas: NaN position", False, ("pandas",))
def _nan() -> tuple:
    import pandas as pd

    return pd.Series([np.nan, 1.0, 2.0]), pd.Series([1.0, np.nan, 2.0])


@case("pandas: NaT position", False, ("pandas",))
def _nat() -> tuple:
    import pandas as pd

    return (
        pd.Series(pd.to_datetime(["2020-01-01", None, "2020-01-03"])),
        pd.Series(pd.to_datetime([None, "2020-01-01", "2020-01-03"])),
    )


@case("pandas: NA position in Int64", False, ("pandas",))
def _na() -> tuple:
    import pandas as pd

    return pd.Series([1, None, 3], dtype="Int64"), pd.Series([1, 0, 3], dtype="Int64")


@case("pandas: time zone", False, ("pandas",))
def _tz() -> tuple:
    import pandas as pd

    t = pd.date_range("2024", periods=3, freq="D")
    return pd.Series(t.tz_localize("UTC")), pd.Series(t.tz_localize("UTC").tz_convert("Asia/Tokyo"))


@case("pandas: datetime unit", False, ("pandas",))
def _unit() -> tuple:
    import pandas as pd

    t = pd.Series(pd.date_range("2024", periods=3, freq="D"))
    return t.astype("datetime64[ns]"), t.astype("datetime64[us]")


@case("pandas: categories in another order", False, ("pandas",))
def _categories() -> tuple:
    import pandas as pd

    values = ["a", "b", "a"]
    return (
        pd.Series(pd.Categorical(values, categories=["a", "b"])),
        pd.Series(pd.Categorical(values, categories=["b", "a"])),
    )


@case("pandas: ordered categorical", False, ("pandas",))
def _ordered() -> tuple:
    import pandas as pd

    values = ["a", "b", "a"]
    return (
        pd.Series(pd.Categorical(values, ordered=False)),
        pd.Series(pd.Categorical(values, ordered=True)),
    )


@case("pandas: attrs", False, ("pandas",))
def _attrs() -> tuple:
    df = frame()
    other = df.copy()
    other.attrs["unit"] = "m"
    return df, other


@case("pandas: Series name", False, ("pandas",))
def _name() -> tuple:
    import pandas as pd

    return pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")


@case("pandas: object strings vs the str dtype", False, ("pandas", "pyarrow"))
def _object_vs_str() -> tuple:
    import pandas as pd

    return pd.Series(["a", "b"], dtype=object), pd.Series(["a", "b"], dtype="string[pyarrow]")


@case("pandas: Series vs a one-column DataFrame", False, ("pandas",))
def _series_frame() -> tuple:
    import pandas as pd

    return pd.Series([1, 2], name="a"), pd.DataFrame({"a": [1, 2]})


# ------------------------------------------------------------------------------------- Arrow


def table() -> Any:
    import pyarrow as pa

    n = 30
    return pa.table(
        {
            "i": pa.array([i if i % 5 else None for i in range(n)], pa.int64()),
            "s": pa.array([f"s{i}" if i % 4 else None for i in range(n)]),
            "l": pa.array([list(range(i % 3)) if i % 6 else None for i in range(n)]),
            "st": pa.array([{"x": i, "y": str(i)} for i in range(n)]),
            "b": pa.array([i % 2 == 0 for i in range(n)]),
        }
    )


@case("arrow: chunk boundaries", True, ("pyarrow",))
def _chunks() -> tuple:
    import pyarrow as pa

    t = table()
    return t, pa.concat_tables([t.slice(0, 7), t.slice(7, 11), t.slice(18)])


@case("arrow: sliced buffers vs fresh ones", True, ("pyarrow",))
def _slices() -> tuple:
    import pyarrow as pa

    t = table().slice(5, 20)
    return t, pa.Table.from_pylist(t.to_pylist(), schema=t.schema)


@case("arrow: bytes under null slots", True, ("pyarrow",))
def _null_bytes() -> tuple:
    import pyarrow as pa

    validity = pa.py_buffer(bytes([0b101]))
    a = pa.Array.from_buffers(pa.int64(), 3, [validity, pa.py_buffer(np.array([1, 2, 3]))])
    b = pa.Array.from_buffers(pa.int64(), 3, [validity, pa.py_buffer(np.array([1, 9, 3]))])
    return a, b


@case("arrow: ChunkedArray chunking", True, ("pyarrow",))
def _chunked() -> tuple:
    import pyarrow as pa

    return pa.chunked_array([[1, 2], [3]]), pa.chunked_array([[1], [2, 3]])


@case("arrow: dictionaries of different order", True, ("pyarrow",))
def _dictionaries() -> tuple:
    import pyarrow as pa

    a = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), pa.array(["a", "b"]))
    b = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int32()), pa.array(["b", "a"]))
    return a, b


@case("arrow: a value changed", False, ("pyarrow",))
def _arrow_value() -> tuple:
    import pyarrow as pa

    t = table()
    return t, t.set_column(1, "s", pa.array(["z", *t["s"].to_pylist()[1:]]))


@case("arrow: null position", False, ("pyarrow",))
def _arrow_null() -> tuple:
    import pyarrow as pa

    return pa.array([1, None, 0]), pa.array([1, 0, None])


@case("arrow: int32 vs int64", False, ("pyarrow",))
def _arrow_type() -> tuple:
    import pyarrow as pa

    return pa.array([1, 2], pa.int64()), pa.array([1, 2], pa.int32())


@case("arrow: field name", False, ("pyarrow",))
def _arrow_name() -> tuple:
    t = table()
    return t, t.rename_columns(["i", "s", "l", "st", "B"])


@case("arrow: list nesting", False, ("pyarrow",))
def _arrow_lists() -> tuple:
    import pyarrow as pa

    return pa.array([[1, 2], [3]]), pa.array([[1], [2, 3]])


@case("arrow: union, one value in another child", False, ("pyarrow",))
def _arrow_union_child() -> tuple:
    import pyarrow as pa

    children = [pa.array([1]), pa.array([1])]

    def make(code: int) -> Any:
        return pa.UnionArray.from_sparse(pa.array([code], pa.int8()), children, ["a", "b"])

    return make(0), make(1)


@case("arrow: a sliced union vs a fresh one", True, ("pyarrow",))
def _arrow_union_slice() -> tuple:
    import pyarrow as pa

    a = pa.UnionArray.from_sparse(
        pa.array([0, 1, 0], pa.int8()), [pa.array([1, 2, 3]), pa.array([4, 5, 6])], ["a", "b"]
    )
    b = pa.UnionArray.from_sparse(
        pa.array([1, 0], pa.int8()), [pa.array([2, 3]), pa.array([5, 6])], ["a", "b"]
    )
    return a[1:], b


@case("arrow: metadata of a nested field", False, ("pyarrow",))
def _arrow_nested_metadata() -> tuple:
    import pyarrow as pa

    item = pa.field("item", pa.int64(), True, {"unit": "m"})
    return pa.array([[1]], pa.list_(item)), pa.array([[1]], pa.list_(pa.int64()))


@case("polars: rechunked frame", True, ("polars",))
def _polars_chunks() -> tuple:
    import polars as pl

    a = pl.DataFrame({"x": [1, 2, 3], "s": ["a", None, "c"]})
    b = pl.concat([a[:1], a[1:]], rechunk=False)
    return a, b


@case("polars: categorical and string columns, rechunked", True, ("polars",))
def _polars_categorical() -> tuple:
    import polars as pl

    a = pl.DataFrame(
        {"c": pl.Series(["x", "y", None, "x"], dtype=pl.Categorical), "s": ["a", None, "c", "d"]}
    )
    return a, pl.concat([a[:1], a[1:3], a[3:]], rechunk=False)


@case("polars: a categorical value changed", False, ("polars",))
def _polars_categorical_value() -> tuple:
    import polars as pl

    def make(values: list) -> Any:
        return pl.DataFrame({"c": pl.Series(values, dtype=pl.Categorical)})

    return make(["x", "y", None]), make(["x", "x", None])


@case("polars: a value changed", False, ("polars",))
def _polars_value() -> tuple:
    import polars as pl

    return pl.DataFrame({"x": [1, 2, 3]}), pl.DataFrame({"x": [1, 2, 4]})


@case("polars: Series values", False, ("polars",))
def _polars_series() -> tuple:
    import polars as pl

    return pl.Series("x", [1.0, 2.0]), pl.Series("x", [1.0, -2.0])


@case("polars: Series name", False, ("polars", "pyarrow"))
def _polars_series_name() -> tuple:
    import polars as pl

    return pl.Series("a", [1, 2]), pl.Series("b", [1, 2])


@case("polars: Enum categories", False, ("polars", "pyarrow"))
def _polars_enum() -> tuple:
    import polars as pl

    return pl.Series("e", ["a"], dtype=pl.Enum(["a", "b"])), pl.Series(
        "e", ["a"], dtype=pl.Enum(["a", "c"])
    )


@case("polars: Enum category order", False, ("polars", "pyarrow"))
def _polars_enum_order() -> tuple:
    import polars as pl

    def make(categories: list) -> Any:
        return pl.DataFrame({"e": pl.Series(["a"], dtype=pl.Enum(categories))})

    return make(["a", "b"]), make(["b", "a"])


@case("polars frame vs the same Arrow table", False, ("polars", "pyarrow"))
def _polars_vs_arrow() -> tuple:
    import polars as pl

    df = pl.DataFrame({"x": [1, 2, 3]})
    return df, df.to_arrow()


# ------------------------------------------------------------------------- xarray, sparse


def data_array() -> Any:
    import xarray as xr

    return xr.DataArray(
        np.arange(12.0).reshape(3, 4),
        dims=("x", "y"),
        coords={"x": [10, 20, 30], "label": ("y", list("abcd"))},
        name="v",
        attrs={"units": "m"},
    )


@case("xarray: copy", True, ("xarray",))
def _xr_copy() -> tuple:
    da = data_array()
    return da, da.copy(deep=True)


@case("xarray: Dataset copy", True, ("xarray",))
def _xr_ds() -> tuple:
    ds = data_array().to_dataset()
    return ds, ds.copy(deep=True)


@case("xarray: a coordinate changed", False, ("xarray",))
def _xr_coord() -> tuple:
    da = data_array()
    return da, da.assign_coords(x=[10, 20, 31])


@case("xarray: attrs", False, ("xarray",))
def _xr_attrs() -> tuple:
    da = data_array()
    other = da.copy()
    other.attrs["units"] = "km"
    return da, other


@case("xarray: name", False, ("xarray",))
def _xr_name() -> tuple:
    da = data_array()
    return da, da.rename("w")


@case("xarray: dims", False, ("xarray",))
def _xr_dims() -> tuple:
    da = data_array()
    return da, da.rename({"y": "z"})


@case("xarray: order of the categories of a categorical coordinate", False, ("xarray",))
def _xarray_categorical_coord() -> tuple:
    import pandas as pd
    import xarray as xr

    def make(categories: list) -> Any:
        index = pd.CategoricalIndex(["a", "b"], categories=categories)
        return xr.DataArray([1, 2], dims="t", coords={"t": index})

    return make(["a", "b"]), make(["b", "a"])


@case("xarray: categories of a categorical data variable", False, ("xarray",))
def _xarray_categorical_variable() -> tuple:
    import pandas as pd
    import xarray as xr

    def make(categories: list) -> Any:
        frame = pd.DataFrame({"c": pd.Categorical(["a", "b"], categories=categories)})
        dataset = xr.Dataset.from_dataframe(frame)
        if not isinstance(dataset["c"].dtype, pd.CategoricalDtype):
            raise NotApplicable("this xarray stores categorical variables as plain objects")
        return dataset

    return make(["a", "b"]), make(["a", "b", "c"])


@case("xarray: a deep copy, a full slice", True, ("xarray",))
def _xarray_copy() -> tuple:
    import xarray as xr

    a = xr.DataArray([1.0, 2.0], dims="x", coords={"x": [0, 1]}, name="v")
    return a, a.copy(deep=True).isel(x=slice(0, 2))


@case("sparse: entries in another order, duplicates summed by tocsr", True, ("scipy",))
def _sparse_order() -> tuple:
    import scipy.sparse as sp

    a = sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 1, 2], [1, 2, 0])), shape=(3, 3))
    b = sp.coo_matrix(([3.0, 2.0, 0.5, 0.5], ([2, 1, 0, 0], [0, 2, 1, 1])), shape=(3, 3))
    return a.tocsr(), b.tocsr()


@case("sparse: coo entries in another order, csr with unsorted indices", True, ("scipy",))
def _sparse_unsorted() -> tuple:
    import scipy.sparse as sp

    a = sp.csr_matrix(([1.0, 2.0], [0, 1], [0, 2]), shape=(1, 2))
    b = sp.csr_matrix(([2.0, 1.0], [1, 0], [0, 2]), shape=(1, 2))
    return a, b


@case("sparse: duplicate coo entries vs their sum (nnz and .data differ)", False, ("scipy",))
def _sparse_duplicates() -> tuple:
    import scipy.sparse as sp

    a = sp.coo_matrix(([1.0, 1.0], ([0, 0], [0, 0])), shape=(1, 1))
    return a, sp.coo_matrix(([2.0], ([0], [0])), shape=(1, 1))


@case("sparse: an explicitly stored zero vs no entry", False, ("scipy",))
def _sparse_explicit_zero() -> tuple:
    import scipy.sparse as sp

    a = sp.csr_matrix(([0.0, 2.0], [0, 1], [0, 2]), shape=(1, 2))
    return a, sp.csr_matrix(([2.0], [1], [0, 1]), shape=(1, 2))


@case("sparse: a value changed", False, ("scipy",))
def _sparse_value() -> tuple:
    import scipy.sparse as sp

    a = sp.csr_matrix(np.eye(3))
    b = a.copy()
    b[1, 1] = 2.0
    return a, b


@case("sparse: csr vs csc", False, ("scipy",))
def _sparse_format() -> tuple:
    import scipy.sparse as sp

    return sp.csr_matrix(np.eye(3)), sp.csc_matrix(np.eye(3))
