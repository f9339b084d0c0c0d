"""Large ``bytes`` / ``bytearray`` / ``str`` (pickled in band) as records of their own
(docs/format.md, "In-band objects"): exact round trips with every codec, shared references
kept, joblib reading the files, and damage found by the checksums."""

from __future__ import annotations

import gc
import sys
import warnings

import joblite
import numpy as np
import pytest
from joblite import CorruptFileError, _core
from joblite.persistence import format2

MIN = format2.IN_BAND_MIN
CODECS = [0, 3, "zlib", "gzip", "bz2", "xz", "lz4", "zstd", "lzma"]
SLOW = ("bz2", "xz", "lzma")


def _joblib_load(path, **kwargs):
    joblib = pytest.importorskip("joblib")
    hook = sys.unraisablehook  # joblib 1.6 + python-lz4 leave a reader for the collector
    sys.unraisablehook = lambda unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = joblib.load(path, **kwargs)
            gc.collect()
        return value
    finally:
        sys.unraisablehook = hook


def _payload(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def values() -> dict:
    b = _payload(MIN + 3)
    return {
        "bytes": b,
        "bytearray": bytearray(_payload(2 * MIN)),
        "ascii": "abcdefgh" * (MIN // 8 + 1),
        "non_ascii": "héllo wörld € 🐍 " * (MIN // 10),
        "surrogates": "\ud800x\udfff" * (MIN // 4),  # lone surrogates: 'surrogatepass'
        "shared": [b, b, {"again": b}, (b,), "s" * MIN, bytearray(MIN)],
        "nested": {"k": [bytearray(_payload(MIN)), "z" * MIN, 5]},
        "many": [_payload(MIN + i) for i in range(12)],
        "empty": [b"", bytearray(), ""],
        "under": ["y" * (MIN - 1), _payload(MIN - 1), bytearray(MIN - 1)],
        "at": ["y" * MIN, _payload(MIN), bytearray(MIN)],
    }


def same(a, b) -> bool:
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def _records(path) -> int:
    """How many in-band records the dump at ``path`` holds."""
    reader = _core.F2Reader.open(str(path))
    assert reader is not None
    stream, _ = reader.stream(True)
    return len(format2._in_band_records(reader, reader.buffers(), stream))


def _n_big(value) -> int:
    """The in-band objects of ``value`` that reach the threshold, each counted once."""
    seen: dict[int, object] = {}

    def walk(v):
        if isinstance(v, (bytes, bytearray)) and len(v) >= MIN:
            seen[id(v)] = v
        elif isinstance(v, str) and len(v.encode("utf-8", "surrogatepass")) >= MIN:
            seen[id(v)] = v
        elif isinstance(v, dict):
            list(map(walk, v.values()))
        elif isinstance(v, (list, tuple)):
            list(map(walk, v))

    walk(value)
    return len(seen)


@pytest.mark.parametrize("codec", CODECS, ids=str)
def test_round_trips_with_every_codec(tmp_path, codec):
    if codec == "zstd":
        pytest.importorskip("zstandard")
    every = values()
    if codec in SLOW:  # each 1 MiB costs a second of bz2 / xz: the kinds, once
        every = {k: every[k] for k in ("shared", "non_ascii", "surrogates", "nested")}
    for name, value in every.items():
        path = tmp_path / f"{name}.pkl"
        joblite.dump(value, path, compress=codec)
        got = joblite.load(path)
        assert same(value, got), name
        if codec != "lzma":  # a single-stream file: no random access, records inside
            assert _records(path) == _n_big(value), name
        if codec not in ("zstd",):  # joblib reads no joblite-zstd file
            assert same(value, _joblib_load(path)), name
        assert same(value, joblite.loads(joblite.dumps(value, compress=codec))), name


def test_threshold_and_records_in_the_file(tmp_path):
    path = tmp_path / "t.pkl"
    for value, n in [
        (_payload(MIN - 1), 0),
        (_payload(MIN), 1),
        ("é" * (MIN // 2), 1),  # 2 UTF-8 bytes each: at the threshold
        ("é" * (MIN // 2 - 1) + "a", 0),
        ([bytearray(MIN), "a" * MIN, _payload(MIN)], 3),
    ]:
        joblite.dump(value, path)
        assert _records(path) == n
        data = path.read_bytes()
        # a record is the bytes themselves, 64-byte aligned in the file, and nothing of
        # the object is in the stream around it
        reader = _core.F2Reader.open(str(path))
        for _nbytes, own, offset in reader.buffers():
            assert own and offset % 64 == 0
        assert same(value, joblite.load(path))
        assert len(data) < 3 * MIN + 8192  # each object once


def test_shared_references_stay_shared(tmp_path):
    b, s, ba = _payload(MIN), "q" * MIN, bytearray(_payload(MIN + 1))
    value = {"x": [b, s, ba], "y": (b, s, ba)}
    path = tmp_path / "shared.pkl"
    for compress in (0, 3, "lz4"):
        joblite.dump(value, path, compress=compress)
        assert _records(path) == 3
        for got in (joblite.load(path), _joblib_load(path)):
            assert same(value, got)
            for i in range(3):
                assert got["x"][i] is got["y"][i]


def test_types_and_independence(tmp_path):
    # each load gives objects of their own: a bytearray is writable and not shared
    path = tmp_path / "ba.pkl"
    joblite.dump([bytearray(MIN), _payload(MIN)], path)
    a = joblite.load(path)
    c = joblite.load(path)
    a[0][0] = 7
    assert c[0][0] == 0 and type(a[0]) is bytearray and type(a[1]) is bytes
    assert a[1] == c[1] and a[1] is not c[1]


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_mmap_mode_reads_them_into_memory(tmp_path, mode):
    arr = np.arange(MIN, dtype=np.uint8)
    value = {"arr": arr, "b": _payload(MIN), "s": "m" * MIN, "ba": bytearray(MIN)}
    path = tmp_path / "m.pkl"
    joblite.dump(value, path)
    got = joblite.load(path, mmap_mode=mode)
    assert isinstance(got["arr"], np.memmap)  # the array is still mapped
    assert same(
        {k: v for k, v in value.items() if k != "arr"}, {k: got[k] for k in "b s ba".split()}
    )
    del got
    got = _joblib_load(path, mmap_mode="r")
    assert got["b"] == value["b"] and got["s"] == value["s"] and type(got["ba"]) is bytearray


def test_safe_load(tmp_path):
    value = [_payload(MIN), "ü" * MIN, bytearray(MIN), "\ud800" * MIN]
    path = tmp_path / "safe.pkl"
    joblite.dump(value, path)
    assert same(value, joblite.load(path, allow_pickle=False))


def test_dump_to_file_object_and_at_an_offset(tmp_path):
    value = [_payload(MIN), "w" * MIN]
    path = tmp_path / "f.pkl"
    with open(path, "wb") as f:
        f.write(b"prefix")
        joblite.dump(value, f)
        joblite.dump(value, f, compress=3)
    with open(path, "rb") as f:
        assert f.read(6) == b"prefix"
        assert same(value, joblite.load(f))
        assert same(value, joblite.load(f))


# --- damage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "zlib", "lz4", "zstd"])
def test_flipped_bits_in_a_record_are_found(codec):
    if codec == "zstd":
        pytest.importorskip("zstandard")
    value = {"b": _payload(MIN), "s": "é" * (MIN // 2), "ba": bytearray(_payload(MIN + 5))}
    data = joblite.dumps(value, compress=0 if codec == "none" else codec)
    reader = _core.F2Reader.from_buffer(data)
    stream, _ = reader.stream(True)
    assert len(format2._in_band_records(reader, reader.buffers(), stream)) == 3
    positions = set(range(0, len(data), max(1, len(data) // 300)))
    for _n, _own, offset in reader.buffers():
        if offset is not None:  # uncompressed: the record header and its first bytes
            positions.update(range(offset - 300, offset + 8))
    buf = bytearray(data)
    for pos in sorted(positions):
        for bit in (0, 5):
            buf[pos] ^= 1 << bit
            try:
                got = joblite.loads(bytes(buf))
            except CorruptFileError:
                pass
            else:
                assert same(value, got), (pos, bit)
            buf[pos] ^= 1 << bit


@pytest.mark.parametrize("codec", [0, 3, "lz4"], ids=str)
def test_truncated_files_are_corrupt(tmp_path, codec):
    value = ["t" * MIN, _payload(2 * MIN)]
    data = joblite.dumps(value, compress=codec)
    path = tmp_path / "cut.pkl"
    for cut in sorted({1, 100, len(data) // 3, len(data) // 2, len(data) - 1000, len(data) - 1}):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError) as info:
            joblite.load(path)
        assert info.value.path == str(path)


def test_a_forged_record_declaring_gigabytes_is_refused_without_reserving_them(tmp_path):
    # a stream `builtins.bytes(<record>)` whose record declares 1,000 chunks of 64 MiB
    # (62.5 GiB) that 1 KiB of bz2 garbage each cannot hold: refused as damaged under a
    # 1 GiB address-space limit, without the declared size ever being resident
    import os

    from test_persistence_hostile_format2 import _one_chunk, forge, run_limited

    codec, n = "bz2", 1000
    raw = 64 << 20
    chunks = [(os.urandom(1024), raw) for _ in range(n)]
    prefix = format2.IN_BAND_PREFIX[0]
    head = prefix + b"\xff" * (64 - len(prefix))
    h_len = _core.f2_index_len(n + 2, 1) + 12
    first = (_one_chunk(codec, head), 64)
    buffers = [(h_len + len(prefix), h_len + 64, raw * n)]
    last = (_one_chunk(codec, format2.IN_BAND_SUFFIX[0] + b"."), 3)
    path = tmp_path / "bomb.bz2"
    path.write_bytes(forge(codec, [first, *chunks, last], buffers))
    reader = _core.F2Reader.open(str(path))
    stream, _ = reader.stream(True)
    assert format2._in_band_records(reader, reader.buffers(), stream) == {0}
    out = run_limited(path, 1 << 30)
    assert out["result"] == "corrupt", out
    assert out["rss_growth"] < 200 << 20, out


def test_records_of_compressed_files_say_they_cannot_be_mapped(tmp_path):
    # joblib 1.2 maps an array whose wrapper allows it even in a compressed file (and fails:
    # "mmap length is greater than file size"); joblib writes allow_mmap=False there, as
    # joblite does (docs/format.md)
    import zlib

    value = {"arr": np.arange(100_000.0), "b": _payload(MIN)}
    flag = b"\x8c\x0aallow_mmap"
    raw = joblite.dumps(value, compress=0)
    assert raw.count(flag + b"\x88") == 2 and flag + b"\x89" not in raw
    stream = zlib.decompress(joblite.dumps(value, compress="zlib"))
    assert stream.count(flag + b"\x89") == 2 and flag + b"\x88" not in stream
    assert same(value["b"], joblite.loads(joblite.dumps(value, compress="zlib"))["b"])
