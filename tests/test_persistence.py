"""dump / load / dumps / loads on the joblite container: round trips, mmap, compression
arguments, and clear errors for damaged files."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import struct
import warnings

import joblite
import numpy as np
import pytest
from joblite import CorruptFileError

# joblib warns that mmap_mode is ignored for compressed files, and so does joblite
pytestmark = pytest.mark.filterwarnings("ignore:mmap_mode .* is not compatible with compressed")

CODECS = [0, True, 5, "lz4", "zlib", "gzip", "bz2", "lzma", "xz", ("zlib", 1), ("lz4", 9)]


def sample() -> dict:
    rng = np.random.default_rng(0)
    return {
        "floats": np.round(rng.standard_normal(300_000), 3),  # > 2 chunks
        "ints": np.arange(50_000, dtype=np.int32) // 7,
        "fortran": np.asfortranarray(rng.random((30, 40))),
        "big_endian": np.arange(100, dtype=">f8"),
        "zero_d": np.array(3.5),
        "empty": np.empty((0, 4)),
        "strided": np.arange(100.0)[::3],  # not contiguous: pickled in band
        "object": np.array([1, "two", None], dtype=object),
        "structured": np.zeros(5, dtype=[("a", "<i4"), ("b", "<f8")]),
        "bools": np.array([True, False, True]),
        "scalar": np.float32(1.5),
        "python": {"s": "text", "b": b"\x00\x01", "t": (1, 2.0, None), "set": {1, 2}},
    }


def assert_same(got: dict, want: dict, mapped: bool = False) -> None:
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        if isinstance(w, np.ndarray):
            assert isinstance(g, np.ndarray), key
            # like joblib, load returns arrays in the host's byte order, unless mmap_mode
            native = w.dtype if w.dtype.isnative or w.dtype.fields else w.dtype.newbyteorder("=")
            assert g.dtype == (w.dtype if mapped else native), key
            assert g.shape == w.shape, key
            assert np.array_equal(g, w), key
        else:
            assert type(g) is type(w) and g == w, key


@pytest.mark.parametrize("compress", CODECS, ids=str)
def test_roundtrip_every_codec(tmp_path, compress):
    data = sample()
    path = tmp_path / "data.joblite"
    assert joblite.dump(data, path, compress=compress) == [str(path)]
    got = joblite.load(path)
    assert_same(got, data)
    assert got["fortran"].flags.f_contiguous
    assert got["floats"].flags.writeable
    assert os.listdir(tmp_path) == ["data.joblite"]  # no temp file left


@pytest.mark.parametrize("compress", [0, True, "zlib"], ids=str)
def test_dumps_loads_roundtrip(compress):
    data = sample()
    blob = joblite.dumps(data, compress=compress)
    assert isinstance(blob, bytes)
    assert_same(joblite.loads(blob), data)
    assert_same(joblite.loads(memoryview(blob)), data)


def test_file_objects(tmp_path):
    data = sample()
    buf = io.BytesIO()
    assert joblite.dump(data, buf, compress=3) is None
    buf.seek(0)
    assert_same(joblite.load(buf), data)


def test_str_and_pathlib_filenames(tmp_path):
    joblite.dump([1, 2], str(tmp_path / "a"))
    joblite.dump([3], pathlib.Path(tmp_path / "b"))
    assert joblite.load(str(tmp_path / "b")) == [3]
    assert joblite.load(pathlib.Path(tmp_path / "a")) == [1, 2]


def test_compression_shrinks_and_lz4_shuffle_helps_integers(tmp_path):
    ints = np.arange(2_000_000, dtype=np.int64) // 3
    sizes = {}
    for c in (0, True, "zlib"):
        p = tmp_path / f"f{c}"
        joblite.dump(ints, p, compress=c)
        sizes[c] = p.stat().st_size
    assert sizes[0] > ints.nbytes
    assert sizes[True] < ints.nbytes / 10  # shuffled lz4: the high bytes vanish
    assert sizes["zlib"] < ints.nbytes / 2


@pytest.mark.parametrize("mode", ["r", "r+", "c", "w+"])
def test_mmap_uncompressed_gives_memmaps(tmp_path, mode):
    data = sample()
    path = tmp_path / "m"
    joblite.dump(data, path)
    got = joblite.load(path, mmap_mode=mode)
    assert_same(got, data, mapped=True)
    for key in ("floats", "ints", "fortran", "big_endian", "zero_d", "structured", "empty"):
        assert isinstance(got[key], np.memmap), key
        if key != "empty":  # numpy keeps no file name for an empty map
            assert got[key].filename == str(path.resolve())
    assert got["fortran"].flags.f_contiguous
    assert got["floats"].ctypes.data % 64 == 0  # segments are 64-byte aligned
    assert got["floats"].flags.writeable == (mode != "r")


def test_mmap_r_plus_writes_through_and_file_still_loads(tmp_path):
    path = tmp_path / "m"
    joblite.dump({"x": np.zeros(1000)}, path)
    m = joblite.load(path, mmap_mode="r+")
    m["x"][:] = 7.0
    m["x"].flush()
    del m
    assert (joblite.load(path)["x"] == 7.0).all()  # no stale-checksum error
    assert (joblite.load(path, mmap_mode="r")["x"] == 7.0).all()


def test_mmap_copy_on_write_leaves_file_alone(tmp_path):
    path = tmp_path / "m"
    joblite.dump(np.ones(100), path)
    m = joblite.load(path, mmap_mode="c")
    m[:] = 5
    assert (joblite.load(path) == 1).all()


@pytest.mark.parametrize("compress", [True, "zlib"], ids=str)
def test_mmap_of_compressed_arrays_decompresses(tmp_path, compress):
    data = sample()
    path = tmp_path / "c"
    joblite.dump(data, path, compress=compress)
    got = joblite.load(path, mmap_mode="r")
    assert_same(got, data, mapped=True)
    assert not isinstance(got["floats"], np.memmap)
    assert not got["floats"].flags.writeable  # 'r' stays read-only
    assert joblite.load(path, mmap_mode="c")["floats"].flags.writeable


def test_mmap_is_lazy_for_a_large_array(tmp_path):
    path = tmp_path / "big"
    joblite.dump(np.zeros(8 << 20), path)  # 64 MiB
    got = joblite.load(path, mmap_mode="r")
    assert isinstance(got, np.memmap) and got.shape == (8 << 20,)


def test_readonly_arrays_stay_readonly(tmp_path):
    a = np.arange(10.0)
    a.flags.writeable = False
    joblite.dump(a, tmp_path / "ro")
    # as with joblib, arrays come back writable, except under mmap_mode="r"
    for mode in (None, "r", "c"):
        got = joblite.load(tmp_path / "ro", mmap_mode=mode)
        assert np.array_equal(got, a)
        assert got.flags.writeable == (mode != "r")


def test_many_small_arrays_and_objects(tmp_path):
    data = {
        "arrays": [np.arange(i) for i in range(300)],
        "objs": [(i, str(i)) for i in range(10_000)],
    }
    joblite.dump(data, tmp_path / "s", compress=True)
    got = joblite.load(tmp_path / "s", mmap_mode="r")
    assert all(np.array_equal(g, w) for g, w in zip(got["arrays"], data["arrays"]))
    assert got["objs"] == data["objs"]


# --- compress argument --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,message",
    [
        ("snappy", "Non valid compression method given"),
        (("zlib", 10), "Non valid compress level given"),
        (("lz4", -1), "Non valid compress level given"),
        (10, "Non valid compress level given"),
        (-1, "Non valid compress level given"),
        (("zlib",), "Compress argument tuple should contain exactly 2 elements"),
        (1.5, "Non valid compress level given"),
        ((3, 3), "Non valid compression method given"),
    ],
)
def test_bad_compress_raises_joblibs_value_error(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message) as exc:
        joblite.dump([1], tmp_path / "x", compress=bad)
    if "method" in message:
        assert "zlib" in str(exc.value) and "bz2" in str(exc.value)
    assert not (tmp_path / "x").exists()


def file_codec(path) -> str:
    from joblite import _core

    reader = _core.F2Reader.open(str(path))
    if reader is None:  # single-stream codecs: the whole dump compressed at once
        return "lzma" if path.read_bytes()[:2] == b"\x5d\x00" else "?"
    return reader.codec


@pytest.mark.parametrize(
    "name,codec",
    [
        ("a.z", "zlib"),
        ("a.gz", "gzip"),
        ("a.bz2", "bz2"),
        ("a.lzma", "lzma"),
        ("a.xz", "xz"),
        ("a.lz4", "lz4"),
        ("a.zst", "zstd"),
        ("a.pkl", "none"),
    ],
)
def test_extension_picks_the_codec(tmp_path, name, codec):
    path = tmp_path / name
    joblite.dump(np.arange(1000), path)
    assert file_codec(path) == codec
    assert np.array_equal(joblite.load(path), np.arange(1000))


def test_explicit_compress_beats_extension(tmp_path):
    joblite.dump(np.arange(1000), tmp_path / "a.gz", compress="bz2")
    assert file_codec(tmp_path / "a.gz") == "bz2"
    joblite.dump(np.arange(1000), tmp_path / "b.gz", compress=("zlib", 0))
    assert file_codec(tmp_path / "b.gz") == "none"
    joblite.dump(np.arange(1000), tmp_path / "c.gz", compress=3)  # joblib: the extension wins
    assert file_codec(tmp_path / "c.gz") == "gzip"


def test_protocol_argument_is_accepted(tmp_path):
    joblite.dump({"a": 1}, tmp_path / "p", protocol=2)
    assert joblite.load(tmp_path / "p") == {"a": 1}


def test_fsync_false_skips_the_flushes_and_keeps_the_data(tmp_path, monkeypatch):
    import os

    flushed: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real_fsync(fd))[1])
    value = {"a": np.arange(100_000.0), "b": "text"}
    joblite.dump(value, tmp_path / "durable.joblite")
    assert len(flushed) == 1  # the folder, after the rename (the file is flushed in Rust)
    joblite.dump(value, tmp_path / "fast.joblite", fsync=False)
    assert len(flushed) == 1
    got = joblite.load(tmp_path / "fast.joblite")
    np.testing.assert_array_equal(got["a"], value["a"])
    assert got["b"] == "text"
    with pytest.raises(TypeError, match="fsync must be True or False"):
        joblite.dump(value, tmp_path / "x.joblite", fsync="no")
    assert not (tmp_path / "x.joblite").exists()


def test_bad_mmap_mode(tmp_path):
    joblite.dump(1, tmp_path / "x")
    with pytest.raises(ValueError, match="mmap_mode"):
        joblite.load(tmp_path / "x", mmap_mode="rw")


def test_unpicklable_value_leaves_nothing(tmp_path):
    joblite.dump("old", tmp_path / "x")
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        joblite.dump(lambda: 1, tmp_path / "x")
    assert joblite.load(tmp_path / "x") == "old"
    assert os.listdir(tmp_path) == ["x"]


# --- damaged files --------------------------------------------------------------------------


@pytest.fixture()
def valid(tmp_path):
    path = tmp_path / "valid.joblite"
    joblite.dump({"a": np.arange(100_000.0), "b": list(range(100))}, path, compress=True)
    return path


def expect_corrupt(path, match: str, **kw) -> CorruptFileError:
    with pytest.raises(CorruptFileError, match=match) as exc:
        joblite.load(path, **kw)
    assert isinstance(exc.value, ValueError)
    assert exc.value.path == str(path)
    return exc.value


def test_empty_file(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    expect_corrupt(tmp_path / "e", "empty")


def test_directory(tmp_path):
    expect_corrupt(tmp_path, "directory")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        joblite.load(tmp_path / "nope")


def test_wrong_magic(tmp_path):
    (tmp_path / "w").write_bytes(b"hello, this is not a pickle or container at all")
    expect_corrupt(tmp_path / "w", "not a")


@pytest.mark.parametrize("compress", [0, True, "zlib"], ids=str)
def test_every_truncation_is_reported(tmp_path, compress):
    path = tmp_path / "t"
    joblite.dump({"a": np.arange(1000.0), "b": "x" * 100}, path, compress=compress)
    data = path.read_bytes()
    cut = tmp_path / "cut"
    for n in sorted({1, 7, 8, 63, 64, 65, 200, len(data) // 2, len(data) - 57, len(data) - 1}):
        cut.write_bytes(data[:n])
        expect_corrupt(cut, ".")


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_flipped_bytes_anywhere_are_caught(valid, tmp_path, mmap_mode):
    """Header, table, trailer: a flipped bit is always an error. Compressed data: an error,
    or (when lz4 decodes the flipped byte to the same output, e.g. another offset into a run
    of zeros) the right data: never wrong data."""
    data = valid.read_bytes()
    want = joblite.load(valid)
    bad = tmp_path / "bad"
    rng = np.random.default_rng(1)
    structure = [0, 5, 9, 12, 20, 63, *range(len(data) - 60, len(data))]
    payload = rng.integers(64, len(data) - 60, 60).tolist()
    for pos in structure + payload:
        flipped = bytearray(data)
        flipped[pos] ^= 0x04
        bad.write_bytes(bytes(flipped))
        try:
            with warnings.catch_warnings():  # a damaged header reads as a compressed joblib file
                warnings.simplefilter("ignore")
                got = joblite.load(bad, mmap_mode=mmap_mode, verify=True)
        except CorruptFileError as exc:
            assert exc.path == str(bad)
        else:
            assert pos not in structure, pos
            assert np.array_equal(got["a"], want["a"]) and got["b"] == want["b"], pos


def test_mmap_load_skips_data_checksum_unless_asked(tmp_path):
    path = tmp_path / "u"
    joblite.dump(np.zeros(10_000), path)
    data = bytearray(path.read_bytes())
    seg_offset = data.index(b"\x00" * 8, 128)  # inside the array segment
    data[seg_offset + 1000] = 1
    path.write_bytes(bytes(data))
    expect_corrupt(path, "checksum")  # full load verifies
    assert joblite.load(path, mmap_mode="r").sum() > 0  # mmap load does not read the data
    expect_corrupt(path, "checksum", mmap_mode="r", verify=True)


def test_huge_declared_index_length_is_rejected(tmp_path):
    """A header claiming a 2**62-byte index is caught before any allocation of that size."""
    path = tmp_path / "u"
    joblite.dump({"a": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 3, 1 << 62)
    (tmp_path / "huge2").write_bytes(bytes(data))
    expect_corrupt(tmp_path / "huge2", "index")


def test_format1_files_are_refused_with_a_clear_error(tmp_path):
    """joblite's pre-release format 1 (never written by a released version) is no longer
    read: such a file is a CorruptFileError naming the file and the format, never a pickle."""
    blob = b"\x93JOBLITE" + bytes(56) + b"\x80\x05N." + b"JBLTEND\x00"
    path = tmp_path / "old.joblite"
    path.write_bytes(blob)
    with pytest.raises(CorruptFileError, match="format-1") as exc:
        joblite.load(path)
    assert exc.value.path == str(path)
    with pytest.raises(CorruptFileError, match="format-1"):
        joblite.loads(blob)


def test_loads_rejects_garbage():
    with pytest.raises(CorruptFileError, match="empty"):
        joblite.loads(b"")
    blob = joblite.dumps(np.arange(10))
    with pytest.raises(CorruptFileError) as exc:
        joblite.loads(blob[:-1])
    assert exc.value.path is None


def test_persistence_demo_runs_small():
    import subprocess
    import sys

    demo = pathlib.Path(__file__).resolve().parents[1] / "examples" / "persistence_demo.py"
    env = {**os.environ, "JOBLITE_DEMO_MIB": "8"}
    out = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "joblite.load mmap_mode=r" in out.stdout
    assert "joblite.dump compress='lz4'" in out.stdout
    assert "joblite.dump compress=3" in out.stdout


def test_datetime_arrays_are_mapped_records_joblib_reads(tmp_path):
    # issue 18: numpy gives no out-of-band buffer for datetime64 / timedelta64, so they
    # were pickled in band: mmap_mode="r" read them through the stream (about twice the
    # array in memory) where joblib maps them
    import joblib

    stamps = np.arange(200_000, dtype=np.int64).astype("M8[ns]").reshape(400, 500)
    value = {
        "c": stamps,
        "f": np.asfortranarray(stamps),
        "strided": stamps[:, ::3],
        "delta": (stamps - stamps[0, 0]).astype("m8[us]"),
        "big_endian": np.arange(50, dtype=">i8").astype(">M8[s]"),
        "empty": np.array([], dtype="M8[D]"),
    }
    path = tmp_path / "dates.jl"
    joblite.dump(value, path)
    reader = joblite._core.F2Reader.open(str(path))
    assert sum(n for n, own, _ in reader.buffers() if own) >= 3 * stamps.nbytes
    mapped = joblite.load(path, mmap_mode="r")
    for key in ("c", "f", "delta"):
        assert isinstance(mapped[key], np.memmap), key
    for load in (joblite.load, joblib.load):
        for mode in (None, "r"):
            got = load(path, mmap_mode=mode)
            for key, arr in value.items():
                np.testing.assert_array_equal(got[key], arr)
                assert got[key].shape == arr.shape, key
                if mode is None and key != "big_endian":
                    assert got[key].dtype == arr.dtype, key
    assert joblite.load(path)["f"].flags.f_contiguous
    safe = joblite.load(path, allow_pickle=False)
    np.testing.assert_array_equal(safe["delta"], value["delta"])
