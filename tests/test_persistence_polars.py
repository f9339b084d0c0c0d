"""polars frames in dump / load: plain numeric frames are written as numpy columns (out of
band, mappable, readable by joblib), everything else keeps polars' own pickle; both give back
the same frame."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import joblib
import joblite
import numpy as np
import pytest

pl = pytest.importorskip("polars")
from polars.testing import assert_frame_equal, assert_series_equal  # noqa: E402

N = 150_000  # every frame below is over joblite's 1 MiB threshold

PLAIN = [
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
    pl.Boolean,
]


def _plain_frame():
    rng = np.random.default_rng(0)
    cols = {str(t): pl.Series(rng.integers(0, 120, N)).cast(t) for t in PLAIN}
    special = np.r_[np.nan, -0.0, np.inf, -np.inf, 5e-324, rng.standard_normal(N - 5)]
    cols["special"] = pl.Series(special)
    extremes = rng.integers(0, 9, N).astype(np.uint64)
    extremes[0] = np.iinfo(np.uint64).max
    cols["extremes"] = pl.Series(extremes)
    return pl.DataFrame(cols)


def _mapped_from(path, column) -> bool:
    """Whether ``column``'s values lie in a memory map of the file ``path`` (Linux)."""
    address = column.to_numpy().__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == str(path):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    return True
    return False


def _same(back, frame):
    assert type(back) is type(frame)
    assert_frame_equal(back, frame, check_exact=True)
    assert back.schema == frame.schema
    for name in frame.columns:  # bit for bit: -0.0, NaN payloads, the largest uint64
        assert back[name].flags == frame[name].flags, name
        if frame[name].dtype != pl.Boolean:
            a, b = frame[name].to_numpy(), back[name].to_numpy()
            assert a.tobytes() == b.tobytes(), name


@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_plain_frame_round_trips_as_numpy_columns(tmp_path, mmap_mode):
    frame = _plain_frame()
    path = tmp_path / "f.pkl"
    joblite.dump(frame, path)
    assert path.stat().st_size < frame.estimated_size() * 1.05 + 65536
    back = joblite.load(path, mmap_mode=mmap_mode)
    _same(back, frame)
    if sys.platform == "linux":  # each numeric column is an array record: mapped, no copy
        mapped = [_mapped_from(path, back[c]) for c in frame.columns if c != "Boolean"]
        assert all(mapped) if mmap_mode else not any(mapped)
    _same(joblib.load(path), frame)


def test_plain_series_round_trips(tmp_path):
    s = _plain_frame()["special"].alias("prices")
    joblite.dump(s, tmp_path / "s.pkl")
    if sys.platform == "linux":
        assert _mapped_from(tmp_path / "s.pkl", joblite.load(tmp_path / "s.pkl", mmap_mode="r"))
    for back in (joblite.load(tmp_path / "s.pkl"), joblib.load(tmp_path / "s.pkl")):
        assert_series_equal(back, s, check_exact=True)
        assert back.name == "prices" and back.dtype == pl.Float64


def _with(frame, **exprs):
    return frame.with_columns(**exprs)


OWN_PICKLE = {
    "nulls": lambda f: _with(f, Int64=pl.when(pl.col("Int64") > 60).then(pl.col("Int64"))),
    "string": lambda f: _with(f, s=pl.col("Int32").cast(pl.String)),
    "date": lambda f: _with(f, d=pl.col("Int32").cast(pl.Date)),
    "sorted flag": lambda f: f.sort("Int64"),
    "categorical": lambda f: _with(f, c=pl.col("UInt8").cast(pl.String).cast(pl.Categorical)),
    "list": lambda f: _with(f, ls=pl.concat_list("Int8", "Int16")),
    "small": lambda f: f.head(100),
}


@pytest.mark.parametrize("case", sorted(OWN_PICKLE))
def test_other_frames_keep_polars_pickle(tmp_path, case):
    frame = OWN_PICKLE[case](_plain_frame())
    path = tmp_path / "f.pkl"
    joblite.dump(frame, path)
    if sys.platform == "linux":  # polars' own pickle: one byte string, read into memory
        mapped = joblite.load(path, mmap_mode="r")
        assert not any(_mapped_from(path, mapped[c]) for c in ("Int8", "Float64"))
    for back in (joblite.load(path), joblib.load(path)):
        assert_frame_equal(back, frame, check_exact=True)
        assert back.schema == frame.schema
        assert [back[c].flags for c in back.columns] == [frame[c].flags for c in frame.columns]


class Frame(pl.DataFrame):
    pass


def test_subclass_keeps_its_type(tmp_path):
    sub = Frame(_plain_frame())
    joblite.dump({"f": sub}, tmp_path / "f.pkl")
    back = joblite.load(tmp_path / "f.pkl")["f"]
    assert type(back) is Frame
    assert_frame_equal(back, sub)


def test_compressed_and_nested(tmp_path):
    frame = _plain_frame()
    value = {"a": frame, "b": [frame["Float64"], frame], "c": 3}
    joblite.dump(value, tmp_path / "f.pkl", compress=3)
    for back in (joblite.load(tmp_path / "f.pkl"), joblib.load(tmp_path / "f.pkl")):
        _same(back["a"], frame)
        assert_series_equal(back["b"][0], frame["Float64"])
        _same(back["b"][1], frame)
        assert back["c"] == 3


def test_polars_imported_after_the_first_dump(tmp_path):
    # the writer learns polars' types when polars is imported, whenever that is
    code = textwrap.dedent(
        f"""
        import joblite, sys
        joblite.dump({{"x": 1}}, {str(tmp_path / "a.pkl")!r})
        assert "polars" not in sys.modules
        import numpy as np, polars as pl
        joblite.dump(pl.DataFrame({{"a": np.arange(300_000)}}), {str(tmp_path / "b.pkl")!r})
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    back = joblite.load(tmp_path / "b.pkl", mmap_mode="r")
    assert back["a"].to_list() == list(range(300_000))
    if sys.platform == "linux":
        assert _mapped_from(tmp_path / "b.pkl", back["a"])


def test_memory_cache_returns_the_frame(tmp_path):
    calls = []

    @joblite.Memory(tmp_path, verbose=0).cache
    def make(n):
        calls.append(n)
        return pl.DataFrame({"a": np.arange(n), "b": np.arange(n) * 0.5})

    first = make(200_000)
    again = make(200_000)
    assert calls == [200_000]
    _same(again, first)
