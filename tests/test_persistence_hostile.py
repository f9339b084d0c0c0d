"""Hostile and damaged input to load: every case is built here, from real files.

Each test is one finding of issue 11 (or a sibling of one): a damaged file never loads
wrong data, a small file never costs much memory, a safe load never runs code or builds
unbounded values, a non-regular file never blocks, and errors name the user's file.
"""

from __future__ import annotations

import bz2
import errno
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading

import joblib
import joblite
import numpy as np
import pytest
from _support import run_measured
from joblite import CorruptFileError, UnsafeLoadError

# 2. stored bytes are checked before outputs are allocated


def bz2_bomb(path, trailing_streams: int) -> None:
    """A joblib-format bz2 file: a small pickle, then many bz2 streams of 16 MiB of zeros
    (joblib reads multi-stream bz2 files; it stops at the pickle's STOP like we must)."""
    zeros = bz2.compress(bytes(16 << 20), 9)
    head = bz2.compress(pickle.dumps({"a": 1}, protocol=4) + bytes(16 << 20), 9)
    path.write_bytes(head + zeros * trailing_streams)


def test_bz2_joblib_bomb_is_streamed(tmp_path):
    path = tmp_path / "bomb.pkl"
    bz2_bomb(path, trailing_streams=40)  # 656 MiB once decoded, in a few KB
    assert path.stat().st_size < 4 << 10
    assert joblib.load(path) == {"a": 1}  # joblib reads it
    out = run_measured(f"out['value'] = joblite.load({str(path)!r})")
    assert out["value"] == {"a": 1}
    assert out["rss_growth"] < 100 << 20, out


def test_array_claiming_more_than_the_stream_holds(tmp_path):
    import zlib

    path = tmp_path / "a.pkl"
    joblib.dump({"x": np.arange(1000)}, path, compress="zlib")
    raw = zlib.decompress(path.read_bytes())
    # the wrapper's shape (1000,) (BININT2 1000, TUPLE1) becomes (2**40,)
    bad = raw.replace(b"M\xe8\x03\x85", b"\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85")
    assert bad != raw
    path.write_bytes(zlib.compress(bad))
    out = run_measured(
        "try:\n"
        f"    joblite.load({str(path)!r})\n"
        "except CorruptFileError as e:\n"
        "    out['reason'] = e.reason\n"
    )
    assert "declared" in out["reason"], out
    assert out["rss_growth"] < 64 << 20


# 4. safe mode: no code runs, nothing unbounded is built


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


BIG = 1536 << 20


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + b"(" + b"".join(args) + b"tR"


def binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n) if n < 2**31 else b"\x8a\x05" + n.to_bytes(5, "little")


HOSTILE_SAFE = {
    "bytearray-of-int": call(op_global("builtins", "bytearray"), binint(BIG)),
    "set-of-range": call(
        op_global("builtins", "set"), call(op_global("builtins", "range"), binint(BIG))
    ),
    "frozenset-of-range": call(
        op_global("builtins", "frozenset"), call(op_global("builtins", "range"), binint(BIG))
    ),
    "ndarray-call-object": call(op_global("numpy", "ndarray"), b"(K\x03t", b"X\x01\x00\x00\x00O"),
    "ndarray-call-huge": call(op_global("numpy", "ndarray"), b"(" + binint(BIG) + b"t"),
    "reconstruct-huge": call(
        op_global("numpy._core.multiarray", "_reconstruct"),
        op_global("numpy", "ndarray"),
        b"(" + binint(BIG) + b"t",
        b"C\x01b",
    ),
    "suffix-module-wrapper": call(op_global("evil.joblib.numpy_pickle", "NumpyArrayWrapper")),
    "os-system": call(op_global("os", "system"), b"X\x04\x00\x00\x00true"),
    "eval": call(op_global("builtins", "eval"), b"X\x01\x00\x00\x001"),
    "getattr": call(op_global("builtins", "getattr"), op_global("builtins", "dict"), b"N"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SAFE))
def test_safe_mode_refuses_hostile_payloads(tmp_path, name):
    payload = b"\x80\x02" + HOSTILE_SAFE[name] + b"."
    if name == "bytearray-of-int":
        assert len(payload) <= 40
    raw = payload
    path = tmp_path / "hostile.pkl"
    path.write_bytes(raw)
    if "huge" not in name and "of-" not in name:  # nothing large to measure
        with pytest.raises(UnsafeLoadError):
            joblite.load(path, allow_pickle=False)
        return
    out = run_measured(
        "try:\n"
        f"    v = joblite.load({str(path)!r}, allow_pickle=False)\n"
        "    out['result'] = type(v).__name__\n"
        "except UnsafeLoadError as e:\n"
        "    out['result'] = 'refused'; out['msg'] = str(e)\n"
    )
    assert out["result"] == "refused", out
    assert out["rss_growth"] < 64 << 20, out


def test_object_array_built_through_state_is_refused(tmp_path):
    # an allowed uint8 array, then a BUILD that gives it an object dtype and a list of items
    body = call(
        op_global("numpy._core.numeric", "_frombuffer"),
        b"C\x01\x00",
        b"X\x02\x00\x00\x00u1",
        b"(K\x01t",
        b"X\x01\x00\x00\x00C",
    )
    dtype_o = call(op_global("numpy", "dtype"), b"X\x02\x00\x00\x00O8", b"\x89\x88")
    state = b"(K\x01(K\x01t" + dtype_o + b"\x89]Nat"
    payload = b"\x80\x02" + body + state + b"b."
    built = pickle.loads(payload)  # the stream is valid and does build an object array
    assert built.dtype == object
    with pytest.raises(UnsafeLoadError, match="object"):
        joblite.loads(payload, allow_pickle=False)


def test_object_dtype_arrays_are_refused_in_safe_mode(tmp_path):
    value = np.array([1, "x", None], dtype=object)
    for raw, name in [(joblite.dumps(value), "c.jl"), (None, "j.pkl")]:
        path = tmp_path / name
        if raw is None:
            joblib.dump(value, path)
        else:
            path.write_bytes(raw)
        with pytest.raises(UnsafeLoadError, match="object"):
            joblite.load(path, allow_pickle=False)


def test_wrapper_module_names_are_exact(tmp_path):
    # only joblib's own module (and scikit-learn's old copy) name joblib's wrapper classes
    payload = b"\x80\x02" + call(op_global("evil.joblib.numpy_pickle", "NumpyArrayWrapper"))
    path = tmp_path / "w.pkl"
    path.write_bytes(payload + b".")
    with pytest.raises(ModuleNotFoundError):
        joblite.load(path)


# 5. anything that is not a regular file is refused, without blocking


def load_in_thread(path, timeout=20.0):
    result: list = []

    def target():
        try:
            result.append(joblite.load(path))
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"load({path}) blocked"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    err = load_in_thread(fifo)
    assert isinstance(err, CorruptFileError), err
    assert "FIFO" in err.reason and err.path == str(fifo)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux device files")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused(device):
    err = load_in_thread(device)
    assert isinstance(err, CorruptFileError) and "device" in err.reason, err


def test_directory_and_socket_are_refused(tmp_path):
    err = load_in_thread(tmp_path)
    assert isinstance(err, CorruptFileError) and "directory" in err.reason
    if hasattr(socket, "AF_UNIX"):
        sock_path = str(tmp_path / "s.sock")
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(sock_path)
            err = load_in_thread(sock_path)
        assert isinstance(err, CorruptFileError), err


# 6. errors: CorruptFileError naming the file; OSError with errno naming the user's path

JOBLIB_CODECS = [None, "zlib", "gzip", "bz2", "lzma", "xz", "lz4"]
# codecs whose own checksum covers the whole stream once it is read to its end
CHECKED = {"zlib", "gzip", "bz2", "xz"}


def sample_value():
    return {
        "f8": np.linspace(0, 1, 300),
        "i2": np.arange(40, dtype=np.int16).reshape(5, 8),
        "obj": np.array([1, "a", None], dtype=object),
        "text": "hello",
        "n": [1, 2.5, (3, 4)],
    }


def equal(a, b) -> bool:
    try:
        np.testing.assert_equal(a, b)
    except AssertionError:
        return False
    return True


def mutations(raw: bytes, n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        bad = bytearray(raw)
        for pos in rng.integers(0, len(raw), size=rng.integers(1, 4)):
            bad[pos] ^= 1 << int(rng.integers(0, 8))
        yield bytes(bad)
    for cut in sorted(set(rng.integers(0, len(raw), size=n // 4).tolist())):
        yield raw[:cut]


def lookup_error(exc: BaseException) -> bool:
    # a damaged module or class name: joblib raises the same (as it would for a moved class)
    return isinstance(exc, (ImportError, AttributeError)) and (
        "module" in str(exc) or "attribute" in str(exc)
    )


@pytest.mark.parametrize("compress", JOBLIB_CODECS, ids=str)
def test_damaged_joblib_files_raise_corrupt_file_error(tmp_path, compress):
    value = sample_value()
    src = tmp_path / "orig.pkl"
    joblib.dump(value, src, **({} if compress is None else {"compress": compress}))
    raw = src.read_bytes()
    path = tmp_path / "damaged.pkl"
    wrong = 0
    for bad in mutations(raw, 120, seed=len(raw)):
        path.write_bytes(bad)
        try:
            got = joblite.load(path)
        except CorruptFileError as exc:
            assert exc.path == str(path) and exc.reason
            continue
        except Exception as exc:
            assert lookup_error(exc), f"{type(exc).__name__}: {exc}"
            continue
        if not equal(got, value):
            wrong += 1
    if compress in CHECKED:  # their checksums catch what the format itself cannot
        assert wrong == 0


@pytest.mark.parametrize("compress", [0, "lz4", "zlib", "bz2", "lzma"], ids=str)
def test_damaged_dumps_raise_corrupt_file_error_or_load_exactly(tmp_path, compress):
    value = sample_value()
    raw = joblite.dumps(value, compress=compress)
    path = tmp_path / "damaged.jl"
    for bad in mutations(raw, 150, seed=7):
        path.write_bytes(bad)
        for safe in (False, True):
            try:
                got = joblite.load(path, allow_pickle=not safe)
            except CorruptFileError as exc:
                assert exc.path == str(path)
                continue
            except UnsafeLoadError:
                assert safe  # the object array
                continue
            assert equal(got, value)


def test_dump_errors_name_the_users_path(tmp_path):
    missing = tmp_path / "no" / "such" / "x.pkl"
    with pytest.raises(FileNotFoundError) as info:
        joblite.dump(np.zeros(3), missing)
    assert info.value.filename == str(missing)
    assert "joblite-tmp" not in str(info.value)
    # a write that the system refuses halfway (file size limit: EFBIG in a subprocess)
    target = tmp_path / "big.pkl"
    code = (
        "import resource, signal, numpy as np, joblite, json\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "try:\n"
        f"    joblite.dump(np.zeros(1 << 20), {str(target)!r})\n"
        "except OSError as e:\n"
        "    print(json.dumps([e.errno, e.filename, str(e)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    code_, filename, text = json.loads(done.stdout)
    assert code_ == errno.EFBIG and filename == str(target) and "joblite-tmp" not in text
    assert os.listdir(tmp_path) == []  # nothing half-written left behind


def unshare_available() -> bool:
    if sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, text=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not unshare_available(), reason="needs a user namespace to mount tmpfs")
def test_full_disk_raises_enospc_naming_the_target(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    code = (
        "import numpy as np, joblite, json\n"
        f"target = {str(mount / 'x.pkl')!r}\n"
        "try:\n"
        "    joblite.dump(np.zeros(1 << 20), target)\n"
        "except OSError as e:\n"
        "    print(json.dumps([e.errno, e.filename, str(e)]))\n"
        "import os; print(json.dumps(os.listdir(os.path.dirname(target))))\n"
    )
    (tmp_path / "child.py").write_text(code)
    script = f"mount -t tmpfs -o size=256k tmpfs {mount} && {sys.executable} {tmp_path}/child.py"
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stderr
    code_, filename, text = json.loads(lines[0])
    assert code_ == errno.ENOSPC and filename == str(mount / "x.pkl"), text
    assert "joblite-tmp" not in text
    assert json.loads(lines[1]) == []  # no temp file left behind


def test_loads_of_damaged_bytes_names_no_file():
    raw = joblite.dumps({"x": np.arange(10)})
    with pytest.raises(CorruptFileError) as info:
        joblite.loads(raw[:-5])
    assert info.value.path is None
    with pytest.raises(CorruptFileError):
        joblite.loads(io.BytesIO(b"\x80\x05garbage").getvalue())


@pytest.mark.parametrize("compress", [0, "gzip", "lz4"], ids=str)
def test_damaged_dump_never_loads_as_an_unchecked_joblib_file(tmp_path, compress):
    # dump's files are joblib pickles with a checksummed index; damage to the index magic
    # must not make load fall back to reading them as plain (unchecked) joblib files
    value = {"x": np.linspace(0, 1, 5000)}
    path = tmp_path / "d.pkl"
    joblite.dump(value, path, compress=compress)
    raw = path.read_bytes()
    if compress == 0:
        at = raw.index(b"JOBLITE\x02")
        for pos in (at + 3, at + 6):
            bad = bytearray(raw)
            bad[pos] ^= 0x04
            bad[len(raw) // 2] ^= 0x10  # and one data byte
            path.write_bytes(bytes(bad))
            with pytest.raises(CorruptFileError):
                joblite.load(path)
    else:
        for bad in mutations(raw, 60, seed=11):
            path.write_bytes(bad)
            try:
                got = joblite.load(path)
            except CorruptFileError:
                continue
            assert equal(got, value)


def test_damaged_zstd_opening_frame_is_a_corrupt_file_not_a_joblib_pickle(tmp_path):
    """The joblite-zstd file opens with a frame joblib reads as a pickle (it raises a clear
    ValueError there). A flipped bit in that frame once sent joblite's load to the joblib
    reader, which raised ModuleNotFoundError / AttributeError from the damaged global: now a
    zstd file that is not a readable dump is CorruptFileError, for paths and for bytes."""
    value = {"a": np.arange(100_000), "b": "t"}
    path = tmp_path / "z.pkl"
    joblite.dump(value, path, compress="zstd")
    data = path.read_bytes()
    seen = set()
    for pos in range(0, 120):
        for bit in (0, 3, 6):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            bad = tmp_path / "bad.pkl"
            bad.write_bytes(bytes(damaged))
            for load, arg in ((joblite.load, bad), (joblite.loads, bytes(damaged))):
                try:
                    got = load(arg)
                except joblite.CorruptFileError:
                    seen.add("corrupt")
                    continue
                # only bytes that decide nothing may go unnoticed, and then the value is right
                assert np.array_equal(got["a"], value["a"]) and got["b"] == "t"
    assert "corrupt" in seen
