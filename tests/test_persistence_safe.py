"""Safe mode: load(..., allow_pickle=False) loads arrays and builtin data, refuses the rest."""

from __future__ import annotations

import collections
import datetime
import os

import joblib
import joblite
import numpy as np
import pytest
from joblite import UnsafeLoadError

# joblib warns that mmap_mode is ignored for compressed files, and so does joblite
pytestmark = pytest.mark.filterwarnings("ignore:mmap_mode .* is not compatible with compressed")


class Payload:
    """Pickles to a call of os.system: what a malicious file would hold."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Plain:
    def __init__(self) -> None:
        self.x = 1


def safe_data() -> dict:
    return {
        "f8": np.arange(10.0),
        "fortran": np.asfortranarray(np.ones((3, 2), dtype=np.int16)),
        "strided": np.arange(20)[::2],  # non-contiguous: rebuilt with numpy's _reconstruct
        "structured": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
        "be": np.arange(3, dtype=">u2"),
        "scalar": np.float64(2.5),
        "str": "text",
        "bytes": b"\x00",
        "bytearray": bytearray(b"ab"),
        "tuple": (1, 2.0, None, True),
        "set": {1, 2},
        "frozenset": frozenset({3}),
        "complex": 1 + 2j,
        "ordered": collections.OrderedDict(a=1),
        "nested": [[{"k": [np.int8(3)]}]],
    }


@pytest.mark.parametrize("compress", [0, True, "zlib"], ids=str)
def test_safe_load_of_arrays_and_builtins(tmp_path, compress):
    data = safe_data()
    path = tmp_path / "s"
    joblite.dump(data, path, compress=compress)
    for mmap_mode in (None, "r"):
        got = joblite.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        assert got.keys() == data.keys()
        for key, want in data.items():
            if isinstance(want, np.ndarray):
                # byte order: the host's unless mapped (joblib's ensure_native_byte_order)
                dt = want.dtype if mmap_mode else want.dtype.newbyteorder("=")
                if want.dtype.fields or want.dtype.isnative:
                    dt = want.dtype
                assert got[key].dtype == dt and np.array_equal(got[key], want), key
            else:
                assert got[key] == want and type(got[key]) is type(want), key
    assert joblite.loads(joblite.dumps(data), allow_pickle=False)["set"] == {1, 2}


def test_code_execution_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil"
    joblite.dump({"x": Payload(str(marker))}, path)
    with pytest.raises(UnsafeLoadError, match=r"(posix|nt)\.system"):
        joblite.load(path, allow_pickle=False)
    with pytest.raises(UnsafeLoadError):
        joblite.loads(joblite.dumps([Payload(str(marker))]), allow_pickle=False)
    assert not marker.exists()
    joblite.load(path)  # the default, full pickle, does run it: hence the safe mode
    assert marker.exists()


@pytest.mark.parametrize(
    "value,name",
    [
        (Plain(), "Plain"),
        (datetime.date(2020, 1, 1), "datetime.date"),
        (len, "builtins.len"),
        (np.array([1, None], dtype=object), "object dtype"),
        (np.array([(1, None)], dtype=[("a", "i4"), ("b", "O")]), "object dtype"),
        (np.ma.masked_array([1, 2]), "numpy.ma"),
        (collections.defaultdict(list), "collections.defaultdict"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_refusals_name_the_type(tmp_path, value, name):
    path = tmp_path / "r"
    joblite.dump({"v": value}, path)
    with pytest.raises(UnsafeLoadError, match=name.replace(".", r"\.")) as exc:
        joblite.load(path, allow_pickle=False)
    assert "allow_pickle=False" in str(exc.value)


def test_unsafe_load_error_is_an_unpickling_error():
    import pickle

    assert issubclass(UnsafeLoadError, pickle.UnpicklingError)
    assert issubclass(UnsafeLoadError, joblite.JobliteError)


def test_safe_mode_on_joblib_files(tmp_path):
    ok = {"a": np.arange(5.0), "b": [1, "x"], "f": np.asfortranarray(np.ones((2, 3)))}
    for compress in (0, 3, "lz4"):
        path = tmp_path / f"ok{compress}.pkl"
        joblib.dump(ok, path, compress=compress)
        got = joblite.load(path, allow_pickle=False)
        assert np.array_equal(got["a"], ok["a"]) and got["b"] == ok["b"]
        assert np.array_equal(got["f"], ok["f"])
    mm = joblite.load(tmp_path / "ok0.pkl", mmap_mode="r", allow_pickle=False)
    assert isinstance(mm["a"], np.memmap)
    bad = tmp_path / "bad.pkl"
    joblib.dump({"o": np.array([1, None], dtype=object)}, bad)
    with pytest.raises(UnsafeLoadError, match="object dtype"):
        joblite.load(bad, allow_pickle=False)
    marker = tmp_path / "pwned"
    joblib.dump([Payload(str(marker))], bad)
    with pytest.raises(UnsafeLoadError, match="system"):
        joblite.load(bad, allow_pickle=False)
    assert not marker.exists()
