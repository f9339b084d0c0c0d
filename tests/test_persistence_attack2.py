"""Regressions from a second attacker's pass over ``joblite.load``: joblib-format files
(every compressor, old and new), memory maps, file objects and forged format-2 records.

Loads that could crash or allocate run in a child interpreter (under an address-space limit
where memory is the question), so that a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys

import joblite
import numpy as np
import pytest
from joblite import CorruptFileError

_CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
import joblite, numpy as np
limit = json.loads(sys.argv[3])
if limit:
    with open("/proc/self/status") as f:
        vm = [int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize")][0]
    resource.setrlimit(resource.RLIMIT_AS, (vm + limit, vm + limit))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
try:
    v = joblite.load(sys.argv[1], **json.loads(sys.argv[2]))
    out["result"] = "loaded"
    if isinstance(v, np.ndarray):
        out["shape"] = list(v.shape)
        out["size"] = int(v.size)
        out["dtype"] = str(v.dtype)
        out["items"] = len(v[::-1][:3].tolist())  # hung on an array numpy cannot represent
except Exception as e:
    out["result"] = type(e).__name__
    out["message"] = str(e)[:300]
out["growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps(out))
"""


def load_in_child(path, limit: int = 1 << 30, timeout: float = 120, **kwargs) -> dict:
    """``joblite.load(path, **kwargs)`` in a child limited to ``limit`` bytes of address
    space more than it uses after import; what it gave, how much its peak RSS grew."""
    args = [sys.executable, "-c", _CHILD, str(path), json.dumps(kwargs), json.dumps(limit)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"the load killed the interpreter: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wrapper_file(shape, dtype, data: bytes = b"", order: str = "C") -> bytes:
    """A joblib >= 1.2 file: one NumpyArrayWrapper (allow_mmap) followed by ``data``."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    w = NumpyArrayWrapper(np.ndarray, shape, order, np.dtype(dtype), allow_mmap=True)
    raw = pickle.dumps(w, protocol=3)  # unframed: joblib reads the array bytes inline
    assert raw.endswith(b"b.")
    return raw[:-1] + b"\x0f" + b"\xff" * 15 + data + b"."


# --- joblib lz4 files: read as they are decoded, never whole -------------------------------


def test_joblib_lz4_file_is_not_read_whole(tmp_path):
    # before: _Lz4Reader read the whole compressed file into memory first (a 1 KB pickle
    # followed by 192 MB cost 192 MB); joblib stops reading at the pickle's end
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("lz4")
    path = tmp_path / "tail.pkl.lz4"
    joblib.dump({"a": np.arange(10)}, path, compress="lz4")
    with open(path, "ab") as f:
        for _ in range(48):
            f.write(os.urandom(4 << 20))
    out = load_in_child(path, limit=0)
    assert out["result"] == "loaded", out
    assert out["growth"] < 64 << 20, out


def test_joblib_lz4_file_still_loads_from_every_source(tmp_path):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("lz4")
    value = {"a": np.arange(100_000.0), "b": np.ones((50, 3), order="F"), "s": "x" * 1000}
    path = tmp_path / "v.pkl.lz4"
    joblib.dump(value, path, compress="lz4")
    data = path.read_bytes()
    for got in (
        joblite.load(path),
        joblite.loads(data),
        joblite.load(io.BytesIO(data)),
        joblite.load(path, allow_pickle=False),
    ):
        assert got["s"] == value["s"]
        np.testing.assert_array_equal(got["a"], value["a"])
        np.testing.assert_array_equal(got["b"], value["b"])
    with pytest.raises(CorruptFileError, match=r"v\.pkl\.lz4"):
        bad = tmp_path / "v.pkl.lz4"
        bad.write_bytes(data[: len(data) // 2])
        joblite.load(bad)


# --- joblib arrays whose shape numpy cannot represent ---------------------------------------


@pytest.mark.parametrize("dtype", ["V0", "S0", "U0"])
@pytest.mark.parametrize("shape", [(1 << 62, 1 << 62), (1 << 40,) * 3, (1 << 32, 1 << 32)])
@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_zero_itemsize_shape_overflowing_intp(tmp_path, dtype, shape, mmap_mode):
    # before: with mmap_mode, np.memmap made an array of shape (2**62, 2**62) whose size
    # wrapped to 0 (numpy refuses to make one with np.empty); `v[::-1][:3]` then never ended
    path = tmp_path / "zero.pkl"
    path.write_bytes(_wrapper_file(shape, dtype))
    out = load_in_child(path, timeout=60, mmap_mode=mmap_mode)
    assert out["result"] == "CorruptFileError", out
    assert str(path) in out["message"]


def test_zero_size_arrays_of_large_shapes_still_load(tmp_path):
    joblib = pytest.importorskip("joblib")
    for value in (np.empty((0, 1 << 40)), np.empty((1 << 20, 0), "S0"), np.empty((3, 0, 5))):
        path = tmp_path / "empty.pkl"
        joblib.dump(value, path)
        for mmap_mode in (None, "r"):
            got = joblite.load(path, mmap_mode=mmap_mode)
            assert got.shape == value.shape and got.dtype == value.dtype


# --- flexible dtypes whose state sets an impossible itemsize --------------------------------


def _scalar_with_dtype_state(kind: str, elsize: int) -> bytes:
    """A protocol-4 pickle of numpy's scalar reconstructor on ``np.dtype(kind)`` whose
    BUILD state sets ``elsize`` (what a joblib file's bytes can say)."""
    try:  # numpy >= 2
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar

    class Dt:
        def __reduce__(self):
            return (np.dtype, (kind, False, True), (3, "<", None, None, None, elsize, 1, 0))

    class Sc:
        def __reduce__(self):
            return (scalar, (Dt(), b"\x00\x00 @"))

    return pickle.dumps([Sc()], protocol=4)


@pytest.mark.parametrize("kind, elsize", [("S0", -1), ("V0", -1), ("U0", -1), ("U0", 6)])
@pytest.mark.parametrize("how", ["joblib", "format2"])
@pytest.mark.parametrize("allow_pickle", [True, False])
def test_flexible_dtype_with_an_impossible_itemsize(tmp_path, kind, elsize, how, allow_pickle):
    # found by the fuzzer (a joblib lzma file whose float32 scalar's dtype became 'S0'):
    # numpy made dtype('S-1'), and the scalar built on it crashed the interpreter (SIGSEGV)
    from test_persistence_attack import _format2_dump

    body = _scalar_with_dtype_state(kind, elsize)
    path = tmp_path / "scalar.pkl"
    path.write_bytes(body if how == "joblib" else _format2_dump(b"\x80\x05" + body[2:]))
    out = load_in_child(path, allow_pickle=allow_pickle)
    assert out["result"] == "CorruptFileError", out
    assert "itemsize" in out["message"]


# --- file objects ----------------------------------------------------------------------------


def test_text_mode_file_object_is_a_clear_type_error(tmp_path):
    # before: UnicodeDecodeError from deep inside (or "memoryview: a bytes-like object is
    # required" for a StringIO)
    path = tmp_path / "x.pkl"
    joblite.dump({"a": np.arange(5)}, path)
    with open(path) as f, pytest.raises(TypeError, match="text mode"):
        joblite.load(f)
    with pytest.raises(TypeError, match="text mode"):
        joblite.load(io.StringIO("abc"))

    class StrReader:
        def read(self, n=-1):
            return "abc"

        def seek(self, pos, whence=0):
            return 0

        def tell(self):
            return 0

    with pytest.raises(TypeError, match="returned str"):
        joblite.load(StrReader())


@pytest.mark.parametrize("compress", [0, 3])
def test_uncompressed_joblib_dumps_follow_one_another_in_a_file(tmp_path, compress):
    # joblib leaves a file object just after an uncompressed pickle (and its arrays); before,
    # joblite read the file to its end, so the second dump was "data is empty"
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "two.pkl"
    with open(path, "wb") as f:
        joblib.dump({"a": np.arange(5)}, f)
        joblib.dump([np.ones((2, 3)), "x"], f)
        joblite.dump("third", f, compress=compress)
    with open(path, "rb") as f:
        first = joblite.load(f)
        second = joblite.load(f)
        third = joblite.load(f)
        assert f.read() == b""
    np.testing.assert_array_equal(first["a"], np.arange(5))
    np.testing.assert_array_equal(second[0], np.ones((2, 3)))
    assert second[1] == "x" and third == "third"
    with open(path, "rb") as f:  # as joblib reads it
        assert joblib.load(f).keys() == first.keys()
        assert joblib.load(f)[1] == "x"


# --- an object dtype whose flags deny references --------------------------------------------


class _ForgedDtype:
    """Pickles as ``np.dtype(kind)`` whose BUILD state sets ``flags``."""

    def __init__(self, kind: str, flags: int, order: str = "|") -> None:
        self.kind, self.flags, self.order = kind, flags, order

    def __reduce__(self):
        state = (3, self.order, None, None, None, -1, -1, self.flags)
        return (np.dtype, (self.kind, False, True), state)


@pytest.mark.parametrize("flags", [0, 1, 0x3E])
@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_joblib_object_dtype_with_flags_denying_references(tmp_path, flags, mmap_mode):
    # found by the fuzzer (joblib 0.10 / 0.11 test files, 'i8' changed to 'O8'): numpy took
    # the flags as given, `hasobject` was False, and the array's bytes were read (or mapped)
    # as object pointers: SIGSEGV on first use (the warning's repr of the array)
    from joblib.numpy_pickle import NumpyArrayWrapper

    w = NumpyArrayWrapper(np.ndarray, (4,), "C", np.dtype("i8"), allow_mmap=True)
    w.dtype = _ForgedDtype("O8", flags)
    raw = pickle.dumps(w, protocol=3)
    path = tmp_path / "objflags.pkl"
    path.write_bytes(raw[:-1] + b"\x0f" + b"\xff" * 15 + b"\x41" * 32 + b".")
    out = load_in_child(path, mmap_mode=mmap_mode)
    assert out["result"] == "CorruptFileError", out
    assert "flags deny" in out["message"]
    assert load_in_child(path, allow_pickle=False)["result"] == "UnsafeLoadError"


def test_damaged_codec_name_of_a_py2_pickle(tmp_path):
    # found by the fuzzer (joblib 0.10's py27/py33 test files, one bit of "latin1"): the
    # LookupError of `_codecs.encode(text, "lathn1")` passed through
    body = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00lathn1\x86R."
    path = tmp_path / "py2.pkl"
    path.write_bytes(body)
    with pytest.raises(CorruptFileError, match="unknown encoding"):
        joblite.load(path)
    path.write_bytes(body.replace(b"lathn1", b"latin1"))
    assert joblite.load(path) == b"abc"


# --- a bz2 / xz dump whose opening is damaged, read from a socket kept open ------------------


@pytest.mark.parametrize("codec", ["bz2", "xz"])
@pytest.mark.parametrize("bits", [(0,), (1,), (0, 9), (17,)])
def test_damaged_bz2_xz_opening_on_an_open_socket_is_refused(codec, bits):
    # before: an opening one or two bits off was not recognised as a dump's, so the stream
    # was read to its end: on a socket kept open, load blocked forever
    import socket
    import threading

    data = bytearray(joblite.dumps({"a": np.arange(1000)}, compress=codec))
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    a, b = socket.socketpair()
    a.sendall(bytes(data))  # and the connection stays open
    out: dict = {}

    def run() -> None:
        try:
            with b.makefile("rb") as f:
                joblite.load(f)
            out["result"] = "loaded"
        except Exception as e:
            out["result"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    blocked = t.is_alive()
    a.close()  # lets a blocked load end
    t.join(5)
    b.close()
    assert not blocked, "load blocked on the open socket"
    assert isinstance(out["result"], CorruptFileError), out
    assert "opening" in str(out["result"])
