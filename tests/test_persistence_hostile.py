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
from joblite import CorruptFileError, UnsafeLoadError, _core
from joblite.persistence import codecs, container

FLAGS = slice(12, 16)


def format1(value, compress=0) -> bytes:
    """A joblite format 1.x container holding ``value`` (what joblite 0.1.0 wrote)."""
    return container.write_bytes(value, codecs.resolve(compress))


def run_measured(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter after importing numpy and joblite; return what it
    printed as JSON plus ``rss_growth`` (bytes of peak resident memory it added)."""
    script = (
        "import json, resource, sys\n"
        "import numpy as np, joblite\n"
        "from joblite import CorruptFileError, UnsafeLoadError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n" + code + "\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out['rss_growth'] = (after - before) * 1024\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# 1. every header byte that decides how data is read is covered by a checksum


def damaged_data(tmp_path, flags_word: int):
    data = np.arange(50_000, dtype=np.float64)
    raw = bytearray(format1({"x": data}))
    reader = _core.ContainerReader.from_buffer(bytes(raw))
    offset = reader.segments()[1][2]
    raw[offset + 1000] ^= 0x04  # one data bit of the array
    raw[FLAGS] = struct.pack("<I", flags_word)
    path = tmp_path / f"flags_{flags_word:08x}.jl"
    path.write_bytes(bytes(raw))
    return path, data


@pytest.mark.parametrize("bit", range(32))
def test_a_flipped_flag_bit_never_turns_data_checksums_off(tmp_path, bit):
    path, _ = damaged_data(tmp_path, 1 << bit)
    with pytest.raises(CorruptFileError) as info:
        joblite.load(path)
    assert info.value.path == str(path)
    with pytest.raises(CorruptFileError):
        joblite.load(path, mmap_mode="r", verify=True)


def test_joblite_010_mark_still_loads_but_stays_verified(tmp_path):
    # joblite 0.1.0 marked r+ maps with flags word 1: such files keep loading, verified
    data = np.arange(1000.0)
    raw = bytearray(format1({"x": data}))
    raw[FLAGS] = struct.pack("<I", 1)
    good = tmp_path / "legacy.jl"
    good.write_bytes(bytes(raw))
    np.testing.assert_array_equal(joblite.load(good)["x"], data)
    bad, _ = damaged_data(tmp_path, 1)
    with pytest.raises(CorruptFileError, match="verify=False"):
        joblite.load(bad)
    assert joblite.load(bad, verify=False)["x"].shape == (50_000,)


def test_writable_map_mark_is_bound_to_the_file(tmp_path):
    path = tmp_path / "rw.jl"
    path.write_bytes(format1({"x": np.zeros(1000)}))
    got = joblite.load(path, mmap_mode="r+")
    got["x"][:10] = 7.0
    got["x"].flush()
    del got
    # changed through the map on purpose: loads, unverified, with the new values
    assert joblite.load(path)["x"][:10].tolist() == [7.0] * 10
    mark = path.read_bytes()[FLAGS]
    assert mark not in (b"\0\0\0\0", b"\1\0\0\0")
    for bit in range(32):
        raw = bytearray(path.read_bytes())
        raw[FLAGS] = struct.pack("<I", struct.unpack("<I", mark)[0] ^ (1 << bit))
        (tmp_path / "flipped.jl").write_bytes(bytes(raw))
        with pytest.raises(CorruptFileError):
            joblite.load(tmp_path / "flipped.jl")
    # the same mark on another file is no mark at all
    other = bytearray(format1({"y": np.ones(10)}))
    other[FLAGS] = mark
    with pytest.raises(CorruptFileError, match="flags"):
        joblite.loads(bytes(other))


# 2. stored bytes are checked before outputs are allocated


def crafted_container(path, raw_len: int, damage_digest: bool, segment: int) -> None:
    """A container whose bz2 segment claims ``raw_len`` bytes from 64-byte chunks of
    garbage. The digests are those of the stored garbage (valid) unless ``damage_digest``."""
    chunk = 4 << 20
    n_chunks = -(-raw_len // chunk)
    claimed = np.zeros(raw_len, dtype=np.uint8)  # calloc: its pages are never touched
    garbage = [bytes([i % 251]) * 64 for i in range(n_chunks)]
    pickle_stream = pickle.dumps(pickle.PickleBuffer(b""), protocol=5)
    if segment == 0:
        segs = [(claimed, codecs.BZ2, 0, garbage)]
    else:
        stream = pickle.dumps(np.empty(0, np.uint8), protocol=5, buffer_callback=lambda b: None)
        segs = [(stream, codecs.NONE, 0, None), (claimed, codecs.BZ2, 0, garbage)]
    del pickle_stream
    _core.write_container(str(path), segs, chunk, False)
    if damage_digest:
        reader = _core.ContainerReader.open(str(path))
        first = reader.chunks(segment)[0][0]
        raw = bytearray(path.read_bytes())
        raw[first] ^= 0xFF
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize("segment", [0, 1], ids=["pickle-stream", "array"])
@pytest.mark.parametrize("damage_digest", [True, False], ids=["bad-digest", "forged-digest"])
def test_small_container_claiming_gigabytes_costs_no_memory(tmp_path, segment, damage_digest):
    path = tmp_path / "bomb.jl"
    crafted_container(path, 1536 << 20, damage_digest, segment)
    assert path.stat().st_size < 64 << 10
    for safe in (False, True):
        out = run_measured(
            "try:\n"
            f"    joblite.load({str(path)!r}, allow_pickle={not safe})\n"
            "    out['result'] = 'loaded'\n"
            "except CorruptFileError as e:\n"
            "    out['result'] = 'corrupt'; out['path'] = e.path; out['reason'] = e.reason\n"
        )
        assert out["result"] == "corrupt", out
        assert out["path"] == str(path)
        assert out["rss_growth"] < 64 << 20, out


def test_chunk_decoding_more_than_it_declares_is_refused():
    # a bz2 chunk of 8 MiB of zeros stored where 1 KiB is declared: decoding stops there
    big = bz2.compress(bytes(8 << 20))
    with pytest.raises(ValueError, match="expected 1024"):
        codecs.decompress(codecs.BZ2, big, 1024)


# 3. compressed joblib files are streamed, and reading stops at the end of the pickle


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
@pytest.mark.parametrize("where", ["joblib-file", "container"])
def test_safe_mode_refuses_hostile_payloads(tmp_path, name, where):
    payload = b"\x80\x02" + HOSTILE_SAFE[name] + b"."
    if name == "bytearray-of-int":
        assert len(payload) <= 40
    if where == "joblib-file":
        raw = payload
    else:
        raw = _core.write_container(None, [(payload, codecs.NONE, 0, None)], 1 << 20, False)
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
    for raw in (payload, _core.write_container(None, [(payload, 0, 0, None)], 1 << 20, False)):
        with pytest.raises(UnsafeLoadError, match="object"):
            joblite.loads(raw, allow_pickle=False)


def test_object_dtype_arrays_are_refused_in_safe_mode(tmp_path):
    value = np.array([1, "x", None], dtype=object)
    for raw, name in [(format1(value), "c.jl"), (None, "j.pkl")]:
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
    # the Rust reader refuses it too (the path could be swapped after the check)
    with pytest.raises(CorruptFileError, match="FIFO"):
        _core.ContainerReader.open(str(fifo))


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
def test_damaged_containers_raise_corrupt_file_error_or_load_exactly(tmp_path, compress):
    value = sample_value()
    raw = format1(value, compress)
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


def test_crafted_containers_leak_no_codec_errors(tmp_path):
    # chunks that pass their digest but are not valid zlib/bz2/lzma streams
    data = np.arange(300_000, dtype=np.uint8)
    for codec in (codecs.ZLIB, codecs.BZ2, codecs.LZMA):
        stream = pickle.dumps(data, protocol=5, buffer_callback=lambda b: None)
        garbage = [b"\x78\x9c garbage that no decoder takes" * 16]
        path = tmp_path / f"c{codec}.jl"
        _core.write_container(
            str(path), [(stream, 0, 0, None), (data, codec, 0, garbage)], 1 << 20, False
        )
        with pytest.raises(CorruptFileError) as info:
            joblite.load(path)
        assert info.value.path == str(path) and "damaged" in info.value.reason


def test_os_errors_keep_errno_and_name_the_path():
    # the binding maps every OS error to OSError(errno, strerror, filename)
    if os.path.exists("/dev/full"):
        with pytest.raises(OSError) as info:
            _core.write_container("/dev/full", [(b"x" * 100_000, 0, 0, None)], 1 << 20, False)
        assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"
    with pytest.raises(FileNotFoundError) as info:
        _core.ContainerReader.open("/nonexistent/dir/x.jl")
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == "/nonexistent/dir/x.jl"


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
    raw = format1({"x": np.arange(10)})
    with pytest.raises(CorruptFileError) as info:
        joblite.loads(raw[:-5])
    assert info.value.path is None
    with pytest.raises(CorruptFileError):
        joblite.loads(io.BytesIO(b"\x80\x05garbage").getvalue())


@pytest.mark.parametrize(
    "stream",
    [b"\x80\x05garbage", b"\x80\x05\x97.", b"\x80\x05h\x00.", b"\x80\x05(]t0.", b"."],
    ids=["garbage", "next-buffer-without-buffer", "memo-miss", "pop-mark", "empty-stack"],
)
def test_forged_container_pickle_streams_raise_corrupt_file_error(tmp_path, stream):
    # valid digests (the writer computed them), invalid pickle: no raw pickle error leaks
    path = tmp_path / "forged.jl"
    _core.write_container(str(path), [(stream, codecs.NONE, 0, None)], 1 << 20, False)
    for safe in (False, True):
        with pytest.raises(CorruptFileError) as info:
            joblite.load(path, allow_pickle=not safe)
        assert info.value.path == str(path) and "pickle stream" in info.value.reason


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
