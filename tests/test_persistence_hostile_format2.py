"""Hostile format-2 files (issue 18): forged indexes, flipped bits, truncations.

Every file here is either built from scratch by :func:`forge` (the format as docs/format.md
documents it, with checksums anyone can compute) or is a real dump damaged on purpose. The
rule checked everywhere: a load returns the exact value or raises ``CorruptFileError`` naming
the file; it never aborts the interpreter and never costs more memory than the file's bytes
can decode to.
"""

from __future__ import annotations

import bz2
import json
import lzma
import os
import struct
import subprocess
import sys
import zlib

import joblite
import numpy as np
import pytest
from joblite import CorruptFileError, _core

CODECS = ["none", "zlib", "gzip", "bz2", "xz", "lz4", "zstd"]
COMPRESSED = CODECS[1:]
CODEC_ID = {name: i for i, name in enumerate(CODECS)}
COMPRESS_ARG = {"none": 0, "zlib": "zlib", "gzip": "gzip", "bz2": "bz2", "xz": "xz"}
COMPRESS_ARG.update({"lz4": "lz4", "zstd": "zstd"})


def _adler32_combine(a1: int, a2: int, len2: int) -> int:
    base = 65521
    rem = len2 % base
    s1 = a1 & 0xFFFF
    s2 = (rem * s1) % base
    s1 += (a2 & 0xFFFF) + base - 1
    s2 += (a1 >> 16) + (a2 >> 16) + base - rem
    s1 %= base
    s2 %= base
    return s1 | (s2 << 16)


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _crc32_combine(c1: int, c2: int, len2: int) -> int:
    if len2 == 0:
        return c1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = [_gf2_times(odd, odd[n]) for n in range(32)]
    odd = [_gf2_times(even, even[n]) for n in range(32)]
    while True:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            c1 = _gf2_times(even, c1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            c1 = _gf2_times(odd, c1)
        len2 >>= 1
        if not len2:
            break
    return c1 ^ c2


def test_checksum_combiners_match_zlib():
    a, b = os.urandom(1000), os.urandom(777)
    assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
    assert _crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def _stored_blocks(h: bytes) -> bytes:
    out = b""
    for i in range(0, len(h), 65535):
        block = h[i : i + 65535]
        out += b"\x00" + struct.pack("<HH", len(block), len(block) ^ 0xFFFF) + block
    return out


_OPENINGS: dict[str, bytes] = {}


def _opening(codec: str, length: int) -> bytes:
    """The first ``length`` bytes joblite itself writes for ``codec`` (fixed framing)."""
    if codec not in _OPENINGS:
        _OPENINGS[codec] = joblite.dumps(1, compress=COMPRESS_ARG[codec])[:300]
    return _OPENINGS[codec][:length]


def frame_header(codec: str, h: bytes) -> bytes:
    """The header unit holding ``h`` (docs/format.md, "Framing per codec")."""
    if codec == "none":
        return h
    if codec == "zlib":
        return b"\x78\x01" + _stored_blocks(h)
    if codec == "gzip":
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + _stored_blocks(h)
    if codec == "lz4":
        assert len(h) <= 4 << 20
        return _opening("lz4", 7) + struct.pack("<I", len(h) | 1 << 31) + h + b"\0" * 4
    if codec == "zstd":
        assert len(h) <= 128 << 10
        frame = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", len(h))
        return _opening("zstd", 264) + frame + struct.pack("<I", len(h) << 3 | 1)[:3] + h
    if codec == "bz2":
        return bz2.compress(h)
    return lzma.compress(h, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def forge(codec: str, chunks: list[tuple[bytes, int]], buffers=(), extra_index: int = 0):
    """A format-2 dump whose index is valid (checksum included) and describes ``chunks``
    (stored bytes, declared raw length) and ``buffers`` ((record_off, data_off, data_len));
    the chunks' contents are whatever the caller gives."""
    n_index = _core.f2_index_len(len(chunks), len(buffers)) + extra_index
    h_len = n_index + 12
    raw_len = h_len + sum(r for _, r in chunks)
    stored_len = sum(len(s) for s, _ in chunks)
    body_check = 0x1234567 if codec in ("zlib", "gzip") else 0
    fixed = b"JOBLITE\x02" + struct.pack("<HHBBH", 2, 0, CODEC_ID[codec], 0, 0)
    table = b""
    stored_off, raw_off = 0, h_len
    for stored, raw in chunks:
        table += struct.pack("<5Q", stored_off, len(stored), raw_off, raw, _core.xxh3_64(stored))
        stored_off += len(stored)
        raw_off += raw
    for entry in buffers:
        table += struct.pack("<3Q", *entry)

    def index(base: int) -> bytes:
        head = fixed + struct.pack(
            "<6Q", len(chunks), len(buffers), raw_len, stored_len, base, body_check
        )
        body = (head + table).ljust(n_index - 8, b"\0")
        return body + struct.pack("<Q", _core.xxh3_64(body))

    def raw_header(base: int) -> bytes:
        return b"\x80\x05\x8e" + struct.pack("<Q", n_index) + index(base) + b"0"

    if codec in ("bz2", "xz"):
        unit = frame_header(codec, raw_header(0))
    else:
        base = len(frame_header(codec, raw_header(0)))
        unit = frame_header(codec, raw_header(base))
    h = raw_header(0 if codec in ("bz2", "xz") else len(unit))
    data = unit + b"".join(s for s, _ in chunks)
    body_len = raw_len - h_len
    if codec == "zlib":
        total = _adler32_combine(zlib.adler32(h), body_check, body_len)
        data += b"\x03\x00" + struct.pack(">I", total)
    elif codec == "gzip":
        total = _crc32_combine(zlib.crc32(h), body_check, body_len)
        data += b"\x03\x00" + struct.pack("<II", total, raw_len & 0xFFFFFFFF)
    return data


def test_forge_builds_files_the_reader_accepts(tmp_path):
    # one chunk holding a whole pickle body: the forged framing is what joblite reads
    body = b"K\x07."  # BININT1 7, STOP
    for codec in CODECS:
        stored = _one_chunk(codec, body)
        path = tmp_path / f"ok.{codec}"
        path.write_bytes(forge(codec, [(stored, len(body))]))
        assert joblite.load(path) == 7, codec


def _one_chunk(codec: str, raw: bytes) -> bytes:
    """``raw`` compressed as one chunk of ``codec`` (as the writer frames it)."""
    if codec in ("zlib", "gzip"):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(raw) + c.flush(zlib.Z_FULL_FLUSH)
    if codec == "bz2":
        return bz2.compress(raw)
    if codec == "xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if codec == "lz4":
        return _opening("lz4", 7) + struct.pack("<I", len(raw) | 1 << 31) + raw + b"\0" * 4
    if codec == "zstd":
        zstd = pytest.importorskip("zstandard")
        return zstd.ZstdCompressor().compress(raw)
    return raw


# --- 1. index-valid bombs: many chunks, huge declared sizes -----------------------------------

_RATIO = {"zlib": 1032, "gzip": 1032, "lz4": 255, "zstd": 32768, "bz2": 65536, "xz": 65536}


def bomb(codec: str, n_chunks: int, stored_len: int, owned: bool) -> bytes:
    """``n_chunks`` chunks of ``stored_len`` garbage bytes, each declaring the most raw bytes
    the index accepts (64 MiB at most); ``owned``: all of them one buffer's."""
    raw = min(stored_len * _RATIO[codec] + 64, 64 << 20)
    chunks = [(os.urandom(stored_len), raw) for _ in range(n_chunks)]
    if not owned:
        return forge(codec, chunks)
    # a small first chunk holding the record, then the buffer's chunks, then STOP
    n_index = _core.f2_index_len(n_chunks + 2, 1)
    h_len = n_index + 12
    # the stream's own chunks are real, so only the buffer's garbage is left to find
    first = (_one_chunk(codec, b"N" * 64), 64)
    data_off = h_len + 64
    data_len = raw * n_chunks
    buffers = [(h_len + 10, data_off, data_len)]
    return forge(codec, [first, *chunks, (_one_chunk(codec, b"."), 1)], buffers)


def run_limited(path, address_space: int, timeout: float = 120) -> dict:
    """Load ``path`` in a fresh interpreter limited to ``address_space`` bytes more than it
    uses after importing; report the outcome and the peak resident memory it added."""
    script = f"""
import json, resource
import numpy as np, joblite
from joblite import CorruptFileError
with open('/proc/self/status') as f:
    vm = [int(l.split()[1]) * 1024 for l in f if l.startswith('VmSize')][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + {address_space}, vm + {address_space}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {{}}
try:
    joblite.load({str(path)!r})
    out['result'] = 'loaded'
except CorruptFileError as e:
    out['result'] = 'corrupt'
    out['path'] = e.path
except MemoryError as e:
    out['result'] = 'memory'
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out['rss_growth'] = (after - before) * 1024
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"the load killed the interpreter: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("owned", [False, True], ids=["stream", "buffer"])
@pytest.mark.parametrize("codec", COMPRESSED)
def test_index_valid_bomb_never_aborts_nor_reserves_its_declared_size(tmp_path, codec, owned):
    # 1,000 chunks of 1 KiB, each declaring what its codec could expand 1 KiB to (bz2: the
    # issue's 64 MiB each, 62.5 GiB in all), under a 1 GiB address-space limit
    path = tmp_path / f"bomb.{codec}"
    path.write_bytes(bomb(codec, 1000, 1024, owned))
    out = run_limited(path, 1 << 30)
    assert out["result"] == "corrupt", out
    assert out["path"] == str(path)
    assert out["rss_growth"] < 200 << 20, out


def test_bomb_in_memory_also_refused():
    data = bomb("bz2", 200, 1024, False)
    with pytest.raises(CorruptFileError):
        joblite.loads(data)


# --- 2. flipped bits: the exact value or CorruptFileError, never an unchecked load -----------


def sample_value():
    rng = np.random.default_rng(5)
    return {
        "small": np.arange(40, dtype=np.int16),
        "big": rng.integers(0, 50, 30_000).astype(np.int32),
        "text": "héllo" * 50,
        "nested": [1.5, None, (2, b"bytes" * 40)],
    }


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def check_flips(data: bytes, value, positions) -> list:
    """Loads of ``data`` with each bit of ``positions`` flipped; returns the bad outcomes."""
    bad = []
    buf = bytearray(data)
    for pos in positions:
        for bit in range(8):
            buf[pos] ^= 1 << bit
            try:
                got = joblite.loads(bytes(buf))
            except CorruptFileError:
                got = CorruptFileError
            except Exception as e:  # any other outcome is a finding
                bad.append((pos, bit, f"{type(e).__name__}: {e}"[:200]))
            else:
                if not same(value, got):
                    bad.append((pos, bit, "loaded a different value"))
            buf[pos] ^= 1 << bit
    return bad


@pytest.mark.parametrize("codec", CODECS)
def test_every_bit_of_the_first_4_kib_flipped(codec):
    value = sample_value()
    data = joblite.dumps(value, compress=COMPRESS_ARG[codec])
    assert same(joblite.loads(data), value)
    bad = check_flips(data, value, range(min(4096, len(data))))
    assert not bad, bad[:20]


def opening_len(codec: str, data: bytes) -> int:
    """Bytes before the index magic (bz2 / xz: the stream magic, the rest is compressed)."""
    if codec == "bz2":
        return 4
    if codec == "xz":
        return 6
    return data.index(b"JOBLITE\x02")


@pytest.mark.parametrize("codec", CODECS)
def test_a_damaged_opening_never_turns_the_checksums_off(tmp_path, codec):
    # issue 18: a flipped bit of the PROTO byte made the file no longer look like format 2,
    # so it went to the joblib reader, which has no checksums: a second flipped bit in array
    # data then loaded silently. Every bit of every opening byte, with a data flip.
    value = {"x": np.arange(300_000, dtype=np.float64)}
    data = joblite.dumps(value, compress=COMPRESS_ARG[codec])
    if codec == "none":
        at = data.index(np.arange(300_000, dtype=np.float64)[1000:1004].tobytes())
    else:
        at = len(data) * 3 // 4
    path = tmp_path / f"damaged.{codec}"
    for pos in range(opening_len(codec, data)):
        for bit in range(8):
            buf = bytearray(data)
            buf[pos] ^= 1 << bit
            buf[at] ^= 0x10
            path.write_bytes(bytes(buf))
            try:
                got = joblite.load(path)
            except CorruptFileError as e:
                assert e.path == str(path)
            except Exception as e:
                pytest.fail(f"byte {pos} bit {bit}: {type(e).__name__}: {e}")
            else:
                what = "the" if same(got, value) else "damaged"
                pytest.fail(f"byte {pos} bit {bit}: loaded {what} data unchecked")


# --- 3. truncation at every record boundary -------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_at_every_boundary(tmp_path, codec):
    value = {"a": np.arange(100_000, dtype=np.int64), "b": np.ones((300, 7)), "s": "x" * 999}
    data = joblite.dumps(value, compress=COMPRESS_ARG[codec])
    reader = _core.F2Reader.from_buffer(data)
    cuts = {1, 2, 3, 11, 12, len(data) - 1}
    base = len(data) - reader.dump_len  # 0: the dump is the whole data
    for nbytes, _own, offset in reader.buffers():
        if offset is not None:
            cuts.update({offset - 1, offset, offset + 1, offset + nbytes - 1})
    # header unit, index end, and every chunk boundary the index gives
    n_index = data.find(b"JOBLITE\x02")
    if n_index >= 0:
        cuts.update({n_index, n_index + 8, n_index + 64})
    cuts.update(range(0, len(data), max(1, len(data) // 200)))
    path = tmp_path / f"cut.{codec}"
    for cut in sorted(c for c in cuts if 0 < c < len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError) as info:
            joblite.load(path)
        assert info.value.path == str(path), cut
        with pytest.raises(CorruptFileError):
            joblite.loads(data[:cut])
    assert base == 0


def test_file_changed_under_an_open_reader_never_sizes_an_allocation(tmp_path):
    # mark_mapped_writable (mmap_mode="r+") re-reads the index length from the file: a file
    # rewritten since it was opened must not make it allocate what the new length claims
    path = tmp_path / "changed.jl"
    joblite.dump({"x": np.arange(1000.0)}, path)
    code = f"""
import struct, joblite
from joblite import _core, CorruptFileError
r = _core.F2Reader.open({str(path)!r})
with open({str(path)!r}, "r+b") as f:
    f.seek(3)
    f.write(struct.pack("<Q", 1 << 60))
try:
    r.mark_mapped_writable()
except CorruptFileError:
    print("refused")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "refused"


@pytest.mark.parametrize("codec", CODECS)
def test_joblib_file_holding_a_dumps_bytes_is_no_damaged_dump(tmp_path, codec):
    # joblib pickles a large bytes object as PROTO, BINBYTES8 and the payload at offset 11:
    # an uncompressed joblite dump stored that way puts the index magic at offset 22, where
    # an lz4 dump has it; that is a sound joblib file, not a damaged dump
    import joblib

    payload = joblite.dumps(np.arange(100_000), compress=COMPRESS_ARG[codec])
    for value in (payload, {"blob": payload}, [b"x" * 7, payload]):
        path = tmp_path / f"wrapped.{codec}"
        joblib.dump(value, path)
        assert joblite.load(path) == value
