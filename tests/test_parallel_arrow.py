"""Arrow-backed arguments (pandas str columns, pyarrow tables, polars frames) reach process
workers through shared memory, as numpy arrays do: right values, right types, one file per
buffer however many tasks and calls send it, and never stale data."""

from __future__ import annotations

import os

import numpy as np
import pytest
from joblite import Parallel, delayed

pd = pytest.importorskip("pandas", reason="pandas is needed for the pandas cases")
pa = pytest.importorskip("pyarrow", reason="pyarrow is needed for Arrow-backed data")

N = 300_000  # each column above max_nbytes="1M"


def shared_files(folder) -> list[str]:
    return sorted(name for _, _, names in os.walk(folder) for name in names)


def same(value):
    return value


def element(data, index):
    value = data.column("v")[index] if hasattr(data, "column") else data[index]
    return value.as_py() if hasattr(value, "as_py") else value


def string_frame() -> pd.DataFrame:
    frame = pd.DataFrame({"x": np.arange(N, dtype=np.float64)})
    frame["s"] = pd.array([f"key{i % 977}" for i in range(N)], dtype="string[pyarrow]")
    frame["t"] = [f"v{i}" for i in range(N)]  # pandas 3's default str dtype
    return frame


def test_pandas_string_columns_travel_through_shared_memory(tmp_path):
    frame = string_frame()
    with Parallel(n_jobs=2, backend="loky", max_nbytes="1M", temp_folder=tmp_path) as parallel:
        back = parallel(delayed(same)(frame) for _ in range(4))
        for got in back:
            pd.testing.assert_frame_equal(got, frame)
            assert got.dtypes.equals(frame.dtypes)
        files = shared_files(tmp_path)
        # the float block, and the offsets and characters of each Arrow column
        assert 3 <= len(files) <= 5, files
        assert parallel(delayed(len)(frame) for _ in range(8)) == [N] * 8
        assert shared_files(tmp_path) == files  # sent again: nothing written again
    assert os.listdir(tmp_path) == []


def test_pyarrow_table_and_array_travel_through_shared_memory(tmp_path):
    table = pa.table({"v": pa.array(np.arange(N)), "s": [f"s{i}" for i in range(N)]})
    with Parallel(n_jobs=2, backend="loky", max_nbytes="1M", temp_folder=tmp_path) as parallel:
        out = parallel(delayed(same)(table) for _ in range(3))
        assert all(got.equals(table) for got in out)
        assert parallel(delayed(element)(table, i) for i in (0, 7, N - 1)) == [0, 7, N - 1]
        assert len(shared_files(tmp_path)) >= 2


def test_an_arrow_buffer_changed_between_calls_is_never_stale(tmp_path):
    # Arrow data over memory the caller can write (a numpy array): a task must see the
    # content at its dispatch, never an older file.
    values = np.zeros(N, dtype=np.int64)
    array = pa.Array.from_buffers(pa.int64(), N, [None, pa.py_buffer(values)])
    with Parallel(n_jobs=2, backend="loky", max_nbytes="1M", temp_folder=tmp_path) as parallel:
        assert parallel(delayed(element)(array, 5) for _ in range(2)) == [0, 0]
        values[5] = 42
        assert parallel(delayed(element)(array, 5) for _ in range(2)) == [42, 42]
        values[5] = -1
        assert parallel([delayed(element)(array, 5)]) == [-1]


def test_polars_frames_and_series_travel_through_shared_memory(tmp_path):
    pl = pytest.importorskip("polars", reason="polars is needed for the polars case")
    frame = pl.DataFrame(
        {
            "x": np.arange(N, dtype=np.float64),
            "s": [f"key{i % 977}" for i in range(N)],
            "c": pl.Series([f"c{i % 5}" for i in range(N)], dtype=pl.Categorical),
        }
    )
    series = frame["s"].alias("named")
    with Parallel(n_jobs=2, backend="loky", max_nbytes="1M", temp_folder=tmp_path) as parallel:
        got_frame, got_series = parallel([delayed(same)(frame), delayed(same)(series)])
        assert got_frame.equals(frame) and got_frame.schema == frame.schema
        assert got_series.equals(series) and got_series.name == "named"
        assert got_series.dtype == series.dtype
        assert len(shared_files(tmp_path)) >= 2  # not pickled into the batch
