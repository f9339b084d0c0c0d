"""joblite.load reads the files real joblib (1.6.0, a test dependency) writes, and the
pre-0.10 files shipped in joblib's own test data, without importing joblib itself."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import warnings

import joblib
import joblite
import numpy as np
import pytest
from joblite import CorruptFileError

JOBLIB_CODECS = [None, "zlib", "gzip", "bz2", "lzma", "xz", "lz4", 3, ("zlib", 9)]


def array_kinds(tmp_path: pathlib.Path) -> dict:
    rng = np.random.default_rng(0)
    mm = np.memmap(tmp_path / "source.mmap", dtype="f4", mode="w+", shape=(50, 3))
    mm[:] = rng.random((50, 3))
    return {
        "c_order": rng.random((40, 30)),
        "f_order": np.asfortranarray(rng.random((20, 10))),
        "object": np.array([1, "two", {"three": 3}, None], dtype=object),
        "memmap": mm,
        "big_endian": np.arange(60, dtype=">i8").reshape(6, 10),
        "zero_d": np.array(2.5),
        "empty": np.zeros((0, 5), dtype=np.int16),
        "structured": np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "bools": np.array([True, False]),
        "complex": np.arange(5) * 1j,
        "list": [np.arange(3), "x", 1.5],
    }


def assert_equal_nested(got, want, path="root") -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), path
        assert got.shape == want.shape, path
        assert got.dtype.newbyteorder("=") == want.dtype.newbyteorder("="), path
        assert np.array_equal(got, want), path
        if want.flags.f_contiguous and not want.flags.c_contiguous:
            assert got.flags.f_contiguous, path
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for k in want:
            assert_equal_nested(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_equal_nested(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


@pytest.mark.parametrize("compress", JOBLIB_CODECS, ids=str)
def test_files_written_by_joblib(tmp_path, compress):
    data = array_kinds(tmp_path)
    path = tmp_path / "by_joblib.pkl"
    joblib.dump(data, path, **({} if compress is None else {"compress": compress}))
    assert_equal_nested(joblite.load(path), data)
    if compress is None:
        got = joblite.load(path, mmap_mode="r")
    else:  # joblib's warning, word for word
        with pytest.warns(UserWarning, match=r'mmap_mode "r" is not compatible with compressed'):
            got = joblite.load(path, mmap_mode="r")
    assert_equal_nested(got, data)
    if compress is None:  # uncompressed joblib arrays are memory-mapped like joblib does
        assert isinstance(got["c_order"], np.memmap)
        assert isinstance(got["f_order"], np.memmap) and got["f_order"].flags.f_contiguous
        assert not got["c_order"].flags.writeable


def test_results_match_joblib_load_with_mmap(tmp_path):
    data = array_kinds(tmp_path)
    path = tmp_path / "m.pkl"
    joblib.dump(data, path)
    for mode in ("r", "c", "r+"):
        ours, theirs = joblite.load(path, mmap_mode=mode), joblib.load(path, mmap_mode=mode)
        for key in data:
            assert type(ours[key]) is type(theirs[key]), (mode, key)
        assert ours["big_endian"].dtype == theirs["big_endian"].dtype


def test_r_plus_writes_to_a_joblib_file(tmp_path):
    path = tmp_path / "w.pkl"
    joblib.dump({"x": np.zeros(100)}, path)
    got = joblite.load(path, mmap_mode="w+")  # w+ acts as r+, as in joblib
    got["x"][:] = 3
    got["x"].flush()
    del got
    assert (joblib.load(path)["x"] == 3).all()


def test_joblib_extension_compressed_files(tmp_path):
    data = {"a": np.arange(1000.0)}
    for ext in (".z", ".gz", ".bz2", ".lzma", ".xz", ".lz4"):
        path = tmp_path / f"f{ext}"
        joblib.dump(data, path)
        assert_equal_nested(joblite.load(path), data)


def test_joblib_file_objects_and_bytes(tmp_path):
    data = {"a": np.arange(10), "b": "text"}
    path = tmp_path / "f.gz"
    joblib.dump(data, path)
    with open(path, "rb") as f:
        assert_equal_nested(joblite.load(f), data)
    assert_equal_nested(joblite.loads(path.read_bytes()), data)


def test_damaged_joblib_files(tmp_path):
    path = tmp_path / "d.pkl"
    joblib.dump({"a": np.arange(1000.0)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError):
        joblite.load(path)
    gz = tmp_path / "d.gz"
    joblib.dump({"a": np.arange(1000.0)}, gz)
    raw = bytearray(gz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    gz.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"d\.gz"):
        joblite.load(gz)


def joblib_test_data() -> list:
    spec = importlib.util.find_spec("joblib")
    assert spec is not None and spec.origin is not None
    folder = pathlib.Path(spec.origin).parent / "test" / "data"
    files = sorted(
        p
        for p in folder.iterdir()
        if (
            p.suffix in (".pkl", ".gz", ".bz2", ".lzma", ".xz", ".gzip", ".lz4")
            and "_compressed_pickle" not in p.name
        )
        or p.name.endswith("_compressed_pickle_py27_np17.gz")
        or p.name.endswith("_compressed_pickle_py35_np19.gz")
    )
    assert len(files) > 20
    return files


@pytest.mark.parametrize("path", joblib_test_data(), ids=lambda p: p.name)
def test_every_historic_joblib_file_loads_like_joblib(path, tmp_path):
    """joblib's own test data spans 0.8.4 - 0.11 (pre-0.10 multi-file formats included):
    whatever joblib itself can load, we load to equal values; what it cannot, we refuse."""
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        try:
            want = joblib.load(path)
        except Exception as exc:  # joblib refuses e.g. some py2 pickles under py3
            want = exc
    if isinstance(want, Exception):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception):  # noqa: B017 - any refusal matches joblib's
                joblite.load(path)
        return
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        got = joblite.load(path)
    assert_equal_nested(got, want)

    # the same warnings as joblib (the old-format DeprecationWarning, word for word)
    def deprecations(ws):
        return sorted(str(w.message) for w in ws if w.category is DeprecationWarning)

    assert deprecations(ours_warned) == deprecations(theirs_warned)
    if path.suffix == ".pkl":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = joblib.load(path, mmap_mode="r")
            ours = joblite.load(path, mmap_mode="r")
        assert_equal_nested(ours, theirs)


def test_load_never_imports_joblib(tmp_path):
    path = tmp_path / "f.pkl"
    joblib.dump({"a": np.arange(5), "o": np.array([None], dtype=object)}, path)
    gz = tmp_path / "f.lz4"
    joblib.dump({"a": np.arange(5)}, gz)
    old = next(p for p in joblib_test_data() if "0.9.2_pickle_py35" in p.name)
    code = (
        "import sys; sys.modules['joblib'] = None\n"  # any import of joblib now fails
        "import joblite\n"
        f"print(joblite.load({str(path)!r})['a'].sum(), joblite.load({str(gz)!r})['a'].sum())\n"
        f"joblite.load({str(old)!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10", "10"]
    assert os.path.exists(path)


@pytest.mark.parametrize("writer", ["joblib", "joblite"])
def test_ensure_native_byte_order_like_joblib(tmp_path, writer):
    value = {"be": np.arange(10, dtype=">i8"), "le": np.arange(3, dtype="<f4")}
    path = tmp_path / "be.pkl"
    (joblib if writer == "joblib" else joblite).dump(value, path)
    expected = {"auto": "int64", True: "int64", False: ">i8"}  # what joblib 1.6 returns
    for flag, dtype in expected.items():
        ours = joblite.load(path, ensure_native_byte_order=flag)
        if writer == "joblib":
            assert joblib.load(path, ensure_native_byte_order=flag)["be"].dtype == dtype
        assert ours["be"].dtype == np.dtype(dtype), flag
        np.testing.assert_array_equal(ours["be"], value["be"])
    assert joblite.load(path)["be"].dtype == np.dtype("int64")
    assert joblite.load(path, mmap_mode="r")["be"].dtype == np.dtype(">i8")
    with pytest.raises(ValueError, match="Native byte ordering can only be enforced"):
        joblite.load(path, mmap_mode="r", ensure_native_byte_order=True)


STRUCTURED = {
    "all_big": np.dtype([("a", ">i4"), ("b", ">f8")]),
    "mixed": np.dtype([("a", ">i4"), ("b", "<f8")]),
    "nested": np.dtype([("a", ">i4"), ("n", [("c", ">f8")])]),
    "all_little": np.dtype([("a", "<i4"), ("b", "<f8")]),
}


@pytest.mark.parametrize("writer", ["joblib", "joblite"])
@pytest.mark.parametrize("compress", [0, 3])
def test_structured_byte_order_follows_joblibs_rule(tmp_path, writer, compress):
    # issue 18: a structured array whose fields all are big-endian came back big-endian
    # from joblite.load and native from joblib.load (joblib swaps a structured dtype when
    # every field has the other byte order)
    value = {}
    for name, dt in STRUCTURED.items():
        arr = np.zeros(7, dt)
        arr["a"] = np.arange(7) * 1000 + 1
        value[name] = arr
    path = tmp_path / "structured.pkl"
    (joblib if writer == "joblib" else joblite).dump(value, path, compress=compress)
    reference = path
    if writer == "joblite":  # what joblib returns for the same data in its own file
        reference = tmp_path / "reference.pkl"
        joblib.dump(value, reference, compress=compress)
    theirs = joblib.load(reference)
    for flag in ("auto", True, False):
        ours = joblite.load(path, ensure_native_byte_order=flag)
        expected = joblib.load(reference, ensure_native_byte_order=flag)
        for name in STRUCTURED:
            assert ours[name].dtype == expected[name].dtype, (name, flag)
            assert ours[name].tobytes() == expected[name].tobytes(), (name, flag)
    assert theirs["all_big"].dtype.isnative  # joblib's rule, as the test relies on it
    assert not theirs["mixed"].dtype.isnative
