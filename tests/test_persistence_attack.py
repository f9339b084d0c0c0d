"""Regressions from an attacker's pass over ``joblite.load`` (scripts/fuzz_load.py).

Each test is a file that crashed the interpreter, read outside an array's memory, or made a
few bytes cost gigabytes before the fix. Loads that could crash run in a child interpreter,
so that a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys

import joblite
import numpy as np
import pytest
from joblite import CorruptFileError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Reduce:
    """Pickles as ``f(*args)``, then ``BUILD`` with ``state`` when given."""

    def __init__(self, f, args, state=None):
        self.f, self.args, self.state = f, args, state

    def __reduce__(self):
        return (self.f, self.args) if self.state is None else (self.f, self.args, self.state)


def _dtype_with_state(fields, itemsize=8, flags=0):
    """A structured dtype rebuilt by ``dtype.__setstate__`` with the given fields and flags:
    what a forged stream can do with one BUILD."""
    names = tuple(fields)
    return _Reduce(np.dtype, ("V8", False, True), (3, "|", None, names, fields, itemsize, 1, flags))


def hidden_object_dtype():
    # an object field whose flags (0) deny holding objects: numpy then trusts the flags
    return _dtype_with_state({"a": (np.dtype("O"), 0)})


def field_outside_dtype():
    # a float64 field at offset 1000 of 8-byte items: reads 1 KB past each item
    return _dtype_with_state({"a": (np.dtype("f8"), 1000)})


def load_in_child(path, **kwargs) -> dict:
    """``joblite.load(path, **kwargs)`` in a child; what it gave, or how it died. The child
    touches every field of the array it gets (a crash, with a forged object field)."""
    code = f"""
import json, joblite, numpy as np
out = {{}}
try:
    v = joblite.load({str(path)!r}, **{kwargs!r})
    out["result"] = "loaded"
    if isinstance(v, (np.ndarray, np.void)):
        out["text"] = repr(v.tolist())[:100]
except Exception as e:
    out["result"] = type(e).__name__
    out["message"] = str(e)[:300]
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"the load killed the interpreter ({done.returncode})"
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- dtypes a BUILD forged: objects hidden from `hasobject`, fields outside their items -----


def _frombuffer_pickle(dtype):
    return pickle.dumps(_Reduce(_frombuffer, (b"\x41" * 64, dtype, (8,), "C")), protocol=5)


def _setstate_pickle(dtype):
    state = (1, (3,), dtype, False, b"\x41" * 24)
    return pickle.dumps(_Reduce(_reconstruct, (np.ndarray, (0,), b"b"), state), protocol=5)


def _scalar_pickle(dtype):
    return pickle.dumps(_Reduce(scalar, (dtype, b"\x41" * 8)), protocol=5)


def _wrapper_pickle(dtype):
    """A joblib file: a NumpyArrayWrapper with ``dtype`` and 3 items of 8 bytes after it."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    w = NumpyArrayWrapper(np.ndarray, (3,), "C", np.dtype("V8"), allow_mmap=True)
    w.dtype = dtype
    data = pickle.dumps(w, protocol=3)  # unframed, as joblib reads array bytes inline
    assert data.endswith(b"b.")
    return data[:-1] + b"\x0f" + b"\xff" * 15 + b"\x41" * 24 + b"."


def _format2_dump(body: bytes) -> bytes:
    """An uncompressed format-2 dump (index valid) whose pickle body is ``body``."""
    from test_persistence_hostile_format2 import forge

    assert body.startswith(b"\x80\x05")
    body = body[2:]
    return forge("none", [(body, len(body))])


STREAMS = {
    "frombuffer": _frombuffer_pickle,
    "setstate": _setstate_pickle,
    "scalar": _scalar_pickle,
}


@pytest.mark.parametrize("container", ["pickle", "format2"])
@pytest.mark.parametrize("how", sorted(STREAMS))
def test_safe_mode_refuses_an_object_field_hidden_from_hasobject(tmp_path, how, container):
    # before: allow_pickle=False built an array whose object field was 8 stream bytes
    # (0x41...), a pointer; touching it crashed the interpreter (SIGSEGV)
    data = STREAMS[how](hidden_object_dtype())
    path = tmp_path / f"hidden.{how}"
    path.write_bytes(_format2_dump(data) if container == "format2" else data)
    out = load_in_child(path, allow_pickle=False)
    assert out["result"] == "UnsafeLoadError", out
    assert "object" in out["message"]


@pytest.mark.parametrize("container", ["pickle", "format2"])
@pytest.mark.parametrize("how", sorted(STREAMS))
def test_safe_mode_refuses_a_field_outside_its_items(tmp_path, how, container):
    # before: the array loaded and each element read 1 KB past its own memory
    data = STREAMS[how](field_outside_dtype())
    path = tmp_path / f"outside.{how}"
    path.write_bytes(_format2_dump(data) if container == "format2" else data)
    with pytest.raises(CorruptFileError, match="outside its items") as info:
        joblite.load(path, allow_pickle=False)
    assert info.value.path == str(path)


@pytest.mark.parametrize("mmap_mode", [None, "r"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_joblib_wrapper_with_a_forged_dtype_is_refused(tmp_path, allow_pickle, mmap_mode):
    # before: joblib's NumpyArrayWrapper read its bytes into the forged dtype: a crash with
    # a hidden object field (either mode), reads outside the array with a field outside
    pytest.importorskip("joblib")
    hidden = tmp_path / "hidden.pkl"
    hidden.write_bytes(_wrapper_pickle(hidden_object_dtype()))
    out = load_in_child(hidden, allow_pickle=allow_pickle, mmap_mode=mmap_mode)
    want = "CorruptFileError" if allow_pickle else "UnsafeLoadError"
    assert out["result"] == want, out
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(_wrapper_pickle(field_outside_dtype()))
    with pytest.raises(CorruptFileError, match="outside its items"):
        joblite.load(outside, allow_pickle=allow_pickle, mmap_mode=mmap_mode)


def test_sound_structured_and_subarray_dtypes_still_load_safely(tmp_path):
    # the dtype walk refuses nothing numpy itself writes
    dt = np.dtype(
        {
            "names": ["a", "b", "c"],
            "formats": ["<i4", (">f8", (2, 3)), "S3"],
            "offsets": [0, 8, 64],
            "itemsize": 72,
        }
    )
    nested = np.dtype([("p", dt), ("q", "<u2", (4,)), ("t", "M8[s]")])
    value = {"x": np.zeros(5, dtype=dt), "y": np.ones(3, dtype=nested), "s": np.void(b"ab")}
    for compress in (0, 3):
        path = tmp_path / f"ok{compress}.pkl"
        joblite.dump(value, path, compress=compress)
        got = joblite.load(path, allow_pickle=False)
        assert got["x"].dtype == dt and got["y"].dtype == nested
        assert got["x"].tobytes() == value["x"].tobytes()
        assert got["y"].tobytes() == value["y"].tobytes()
        import joblib

        joblib.dump(value, path, compress=compress)
        got = joblite.load(path, allow_pickle=False)
        assert got["y"].dtype == nested and got["y"].tobytes() == value["y"].tobytes()


# --- memo indices that make the C unpickler allocate gigabytes ----------------------------


def _rss_of_load_in_child(path, **kwargs) -> dict:
    code = f"""
import json, resource, joblite
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {{}}
try:
    joblite.load({str(path)!r}, **{kwargs!r})
    out["result"] = "loaded"
except Exception as e:
    out["result"] = type(e).__name__
    out["message"] = str(e)[:300]
out["growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# LONG_BINPUT 2**26 on an empty memo: CPython's C unpickler grows its memo to 2**27
# entries (1 GiB) and zeroes them; 2**32 - 1 asks for 64 GiB (MemoryError)
MEMO_BOMBS = {
    "long_binput": b"\x80\x05N" + b"r" + struct.pack("<I", 1 << 26) + b".",
    "long_binput_max": b"\x80\x05N" + b"r" + struct.pack("<I", (1 << 32) - 1) + b".",
    "put": b"\x80\x05N" + b"p67108864\n.",
}


@pytest.mark.parametrize("allow_pickle", [False, True])
@pytest.mark.parametrize("bomb", sorted(MEMO_BOMBS))
def test_format2_memo_index_bomb_is_refused_unallocated(tmp_path, bomb, allow_pickle):
    # before: a 200-byte valid dump grew the process by 1 GiB (or raised MemoryError)
    path = tmp_path / f"{bomb}.jl"
    path.write_bytes(_format2_dump(MEMO_BOMBS[bomb]))
    out = _rss_of_load_in_child(path, allow_pickle=allow_pickle)
    assert out["result"] == "CorruptFileError", out
    assert "memo" in out["message"]
    assert out["growth"] < 100 << 20, out


def test_memo_indices_a_pickler_writes_still_load(tmp_path):
    # protocol 2 (BINPUT / LONG_BINPUT in order, GETs back) and shared references
    shared = [1, 2]
    value = {"a": shared, "b": shared, "many": [str(i) for i in range(300)]}
    for proto in (0, 2, 5):
        body = pickle.dumps(value, protocol=proto)
        if proto < 5:
            body = b"\x80\x05" + body[2:] if body[:1] == b"\x80" else b"\x80\x05" + body
        path = tmp_path / f"p{proto}.jl"
        path.write_bytes(_format2_dump(body))
        for allow in (True, False):
            got = joblite.load(path, allow_pickle=allow)
            assert got == value and got["a"] is got["b"]


def test_small_record_memo_bomb_is_refused_in_safe_mode():
    from joblite.persistence import small

    for body in MEMO_BOMBS.values():
        record = small.MAGIC + hashlib.blake2b(body, digest_size=16).digest() + body
        with pytest.raises(CorruptFileError, match="memo"):
            joblite.loads(record, allow_pickle=False)
    body = pickle.dumps([[1], "x" * 10], protocol=2)
    record = small.MAGIC + hashlib.blake2b(body, digest_size=16).digest() + body
    assert joblite.loads(record, allow_pickle=False) == [[1], "x" * 10]


def test_joblib_object_array_memo_bomb_is_not_allocated(tmp_path):
    # found by the fuzzer: one damaged byte of a joblib file holding an object array made
    # the nested pickle a LONG_BINPUT of ~2.5e9, and load raised MemoryError after asking
    # for 40 GiB; its pickle is now read by the pure-Python unpickler (a dict memo)
    import joblib

    path = tmp_path / "obj.pkl"
    joblib.dump({"obj": np.array([1, "a", None], dtype=object)}, path)
    data = path.read_bytes()
    inner = data.index(b"ub\x80") + 2  # the object array's own pickle
    at = data.index(b"\x8c\x05dtype", inner)
    bomb = data[:at] + b"N" + b"r" + struct.pack("<I", 1 << 26) + b"0" + data[at:]
    path.write_bytes(bomb)
    out = _rss_of_load_in_child(path)
    assert out["result"] in ("loaded", "CorruptFileError"), out
    assert out["growth"] < 100 << 20, out
    # and sound object arrays still load, compressed or not
    value = {"obj": np.array([1, "a", None, b"x" * 10, bytearray(b"yy")] * 50, dtype=object)}
    for compress in (0, 3):
        joblib.dump(value, path, compress=compress)
        got = joblite.load(path)
        assert got["obj"].dtype == object and list(got["obj"]) == list(value["obj"])


# --- the fast seeded fuzz -------------------------------------------------------------------


def test_seeded_fuzz_finds_nothing(tmp_path):
    # a few hundred mutants of small files (format 2, every codec, and joblib's files) through
    # every load path, each in a child interpreter under an address-space limit: no crash, no
    # hang, no other exception, no unchecked damage, no memory beyond the file's
    pytest.importorskip("joblib")
    script = os.path.join(ROOT, "scripts", "fuzz_load.py")
    done = subprocess.run(
        [sys.executable, script, "--seed", "7", "--mutants", "3", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# --- joblib files: sizes declared in the stream, not backed by its bytes ------------------


def _limited_load(path, **kwargs) -> dict:
    """Load in a child limited to 1 GiB of address space more than it uses after import."""
    code = f"""
import json, resource, warnings, joblite
warnings.simplefilter("ignore")
with open("/proc/self/status") as f:
    vm = [int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))
out = {{}}
try:
    joblite.load({str(path)!r}, **{kwargs!r})
    out["result"] = "loaded"
except Exception as e:
    out["result"] = type(e).__name__
    out["message"] = str(e)[:300]
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("nbytes", [1 << 40, 2 << 30])
def test_bz2_joblib_array_declaring_more_than_it_holds(tmp_path, nbytes):
    # bz2 has no useful expansion bound, so the declared size was allocated up front:
    # MemoryError (8 TiB, or 2 GiB under the limit) instead of CorruptFileError
    import bz2

    from joblib.numpy_pickle import NumpyArrayWrapper

    w = NumpyArrayWrapper(np.ndarray, (nbytes,), "C", np.dtype("u1"), allow_mmap=True)
    raw = pickle.dumps(w, protocol=3)[:-1] + b"\x0f" + b"\xff" * 15 + b"\x41" * 4096 + b"."
    path = tmp_path / "big.pkl"
    path.write_bytes(bz2.compress(raw))
    for safe in (False, True):
        out = _limited_load(path, allow_pickle=not safe)
        assert out["result"] == "CorruptFileError", out
        assert "declared" in out["message"]


def test_joblib_09_reconstructor_shape_is_never_allocated(tmp_path):
    # joblib <= 0.9's ZNDArrayWrapper carries numpy's reconstructor arguments, whose shape
    # is always (0,): a forged (2**40,) was allocated before the companion file was read
    import zlib

    from joblib.numpy_pickle_compat import ZNDArrayWrapper

    def zfile(b: bytes) -> bytes:
        return b"ZF" + hex(len(b)).encode().ljust(19) + zlib.compress(b)

    (tmp_path / "arr.z").write_bytes(zfile(np.arange(3.0).tobytes()))
    path = tmp_path / "old.pkl"
    for shape, want in [((0,), "loaded"), ((1 << 40,), "CorruptFileError")]:
        w = ZNDArrayWrapper.__new__(ZNDArrayWrapper)
        w.filename, w.init_args = "arr.z", (np.ndarray, shape, b"b")
        w.state = (1, (3,), np.dtype("f8"), False)
        path.write_bytes(zfile(pickle.dumps({"x": w}, protocol=2)))
        assert _limited_load(path)["result"] == want
    with pytest.warns(DeprecationWarning):
        w.init_args = (np.ndarray, (0,), b"b")
        path.write_bytes(zfile(pickle.dumps({"x": w}, protocol=2)))
        assert joblite.load(path)["x"].tolist() == [0.0, 1.0, 2.0]


# --- array and dtype states numpy takes as given ------------------------------------------


def _short_object_state_pickle() -> bytes:
    # an object array of shape (19,) whose state lists 3 items: numpy reads the other 16
    # pointers from memory it never wrote
    state = (1, (19,), np.dtype("O"), False, [1, "a", None])
    return pickle.dumps(_Reduce(_reconstruct, (np.ndarray, (0,), b"b"), state), protocol=5)


def test_object_array_state_shorter_than_its_shape(tmp_path):
    # before: SIGSEGV from a plain pickle file (both modes) and from a format-2 dump in
    # safe mode (the fuzzer found it as one flipped byte of a joblib object-array file)
    pkl = tmp_path / "short.pkl"
    pkl.write_bytes(_short_object_state_pickle())
    assert load_in_child(pkl)["result"] == "CorruptFileError"
    assert load_in_child(pkl, allow_pickle=False)["result"] == "UnsafeLoadError"
    jl = tmp_path / "short.jl"
    jl.write_bytes(_format2_dump(_short_object_state_pickle()))
    assert load_in_child(jl, allow_pickle=False)["result"] == "UnsafeLoadError"


def test_damaged_object_array_in_a_joblib_file(tmp_path):
    # the fuzzer's case: joblib's nested pickle of an object array, its shape 3 -> 19
    import joblib

    path = tmp_path / "obj.pkl"
    joblib.dump({"obj": np.array([1, "a", None], dtype=object)}, path)
    data = path.read_bytes()
    inner = data.index(b"ub\x80") + 2
    at = data.index(b"K\x01K\x03\x85", inner)  # state version 1, shape (3,)
    path.write_bytes(data[:at] + b"K\x01K\x13\x85" + data[at + 5 :])
    for mmap_mode in (None, "r+"):
        out = load_in_child(path, mmap_mode=mmap_mode)
        assert out["result"] == "CorruptFileError", out
        assert "19" in out["message"]


def _names_fields_mismatch_dtype():
    # names ("a", "b"), fields {"|": ..., "b": ...}: one fuzzed BINGET; numpy's byteswap and
    # printing then look "a" up and crash
    fields = {"|": (np.dtype(">i4"), 0), "b": (np.dtype(">f8"), 4)}
    return _Reduce(np.dtype, ("V12", False, True), (3, "|", None, ("a", "b"), fields, 12, 1, 0))


def test_dtype_names_disagreeing_with_fields(tmp_path):
    # before: a format-2 dump whose checksums were recomputed after the change crashed
    # load (SIGSEGV in the swap to native order), in the default mode too
    args = (b"\x41" * 60, _names_fields_mismatch_dtype(), (5,), "C")
    body = pickle.dumps(_Reduce(_frombuffer, args), protocol=5)
    jl = tmp_path / "names.jl"
    jl.write_bytes(_format2_dump(body))
    for kwargs in ({}, {"allow_pickle": False}, {"mmap_mode": "r"}):
        out = load_in_child(jl, **kwargs)
        assert out["result"] == "CorruptFileError", (kwargs, out)
        assert "names do not list" in out["message"]
    pkl = tmp_path / "names.pkl"
    pkl.write_bytes(body)
    assert load_in_child(pkl, allow_pickle=False)["result"] == "CorruptFileError"


def test_numpy_system_error_on_a_damaged_dtype_state_is_corrupt_file(tmp_path):
    # numpy raises SystemError ("bad argument to internal function") for some dtype states
    # no writer makes; it passed through load as it was
    dt = _Reduce(np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": 5}, 8, 1, 0))
    path = tmp_path / "bad.pkl"
    path.write_bytes(_frombuffer_pickle(dt))
    for allow in (True, False):
        out = load_in_child(path, allow_pickle=allow)
        assert out["result"] == "CorruptFileError", out


@pytest.mark.parametrize(
    "kind, state",
    [
        ("M8[D]", (4, "o", None, None, None, -1, -1, 0)),  # datetime without its unit
        ("M8[D]", (3, "<", None, None, None, -1, -1, 0)),
        ("f8", (3, ">", None, -1, -1, 0)),  # a 6-item state numpy accepts and crashes on
    ],
)
def test_dtype_states_numpy_crashes_on(tmp_path, kind, state):
    # found by the fuzzer in joblib files (one damaged byte): numpy's dtype.__setstate__
    # accepted these and crashed the interpreter (SIGSEGV)
    dt = _Reduce(np.dtype, (kind[:2], False, True), state)
    args = (b"\x00" * 16, dt, (2,), "C")
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps(_Reduce(_frombuffer, args), protocol=3))
    for allow in (True, False):
        out = load_in_child(path, allow_pickle=allow)
        assert out["result"] == "CorruptFileError", out
        assert "numpy writes" in out["message"] or "unit" in out["message"]


@pytest.mark.parametrize(
    "op", [b"\x8e", b"\x8d", b"\x96"], ids=["bytes8", "unicode8", "bytearray8"]
)
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_format2_counted_argument_past_the_stream_end(tmp_path, op, allow_pickle):
    # found by the fuzzer (pickle bytes changed, checksums recomputed): the C unpickler
    # allocates a BINBYTES8 / BINUNICODE8 / BYTEARRAY8's declared length before reading it,
    # so load raised MemoryError for 2**40 bytes instead of CorruptFileError
    path = tmp_path / "counted.jl"
    path.write_bytes(_format2_dump(b"\x80\x05" + op + struct.pack("<Q", 1 << 40) + b"xy."))
    out = _limited_load(path, allow_pickle=allow_pickle)
    assert out["result"] == "CorruptFileError", out
    assert "past its end" in out["message"]


# --- every prefix of small files ------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "zlib", "gzip", "bz2", "xz", "lz4", "zstd", "lzma"])
def test_every_prefix_of_a_small_dump_is_refused(codec):
    # truncation at every byte, from bytes and from an unseekable stream: CorruptFileError,
    # never a damaged value
    import io

    if codec == "zstd":
        pytest.importorskip("zstandard")
    value = {"a": np.arange(20, dtype=np.int16), "s": "x", "t": (1.5, None)}
    data = joblite.dumps(value, compress=codec if codec != "none" else 0)
    assert joblite.loads(data)["s"] == "x"

    class Stream(io.RawIOBase):
        def __init__(self, b: bytes) -> None:
            self.f = io.BytesIO(b)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self.f.read(min(len(b), 7))
            b[: len(chunk)] = chunk
            return len(chunk)

        def tell(self) -> int:
            raise OSError("unseekable")

    def exact(got) -> bool:
        return (
            got.keys() == value.keys()
            and got["a"].dtype == value["a"].dtype
            and np.array_equal(got["a"], value["a"])
            and (got["s"], got["t"]) == (value["s"], value["t"])
        )

    for cut in range(1, len(data)):
        # a cut that only loses what follows the dump (an lzma end marker) may load, exactly
        try:
            assert exact(joblite.loads(data[:cut])), cut
        except CorruptFileError:
            pass
        if cut % 7 == 0:
            try:
                assert exact(joblite.load(Stream(data[:cut]))), cut
            except CorruptFileError:
                pass
    if codec != "lzma":  # every other codec's dump ends with its last chunk
        for cut in range(1, len(data)):
            with pytest.raises(CorruptFileError):
                joblite.loads(data[:cut])


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "xz", "lzma", "lz4"])
def test_every_prefix_of_a_small_joblib_file_is_refused(compress):
    # joblib's own files have no checksums, but a cut one is still detected, or (a cut lz4
    # end mark) loads the exact value
    import io

    import joblib

    buf = io.BytesIO()
    joblib.dump({"a": np.arange(20, dtype=np.int16), "s": "x"}, buf, compress=compress)
    data = buf.getvalue()
    for cut in range(1, len(data)):
        try:
            got = joblite.loads(data[:cut])
        except CorruptFileError:
            continue
        assert got["s"] == "x" and got["a"].tolist() == list(range(20)), cut


@pytest.mark.parametrize("flags", [0x3F, 0x52])
def test_dtype_flags_claiming_objects_it_does_not_hold(tmp_path, flags):
    # fuzzer, one damaged byte of a joblib file (and a forged dump) holding a float32
    # scalar: the dtype's state set object flags (0x52: LIST_PICKLE without HASOBJECT) on
    # float32, and numpy raised RuntimeError from `scalar`
    dt = _Reduce(np.dtype, ("f4", False, True), (3, "<", None, None, None, -1, -1, flags))
    body = pickle.dumps(_Reduce(scalar, (dt, b"\x00" * 4)), protocol=5)
    pkl = tmp_path / "flags.pkl"
    pkl.write_bytes(pickle.dumps(_Reduce(scalar, (dt, b"\x00" * 4)), protocol=3))
    jl = tmp_path / "flags.jl"
    jl.write_bytes(_format2_dump(body))
    for path in (pkl, jl):
        for allow in (True, False):
            out = load_in_child(path, allow_pickle=allow)
            assert out["result"] == "CorruptFileError", (path.name, allow, out)
            assert "claims objects" in out["message"]
