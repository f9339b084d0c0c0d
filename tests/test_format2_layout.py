"""The bytes ``joblite.dump`` writes (docs/format.md), frozen: the layout (records, padding,
chunk bounds, buffer entries, header length) must not change by accident, since joblib and
earlier joblite versions read these files and memory maps rely on their alignment.

The digests were taken from the writer before the layout moved from Python to Rust
(``rust/format2/layout.rs``). The objects avoid numpy (whose pickles name numpy's modules,
which differ between versions): out-of-band buffers come from ``pickle.PickleBuffer``. An
uncompressed dump is compared byte for byte; a compressed one by its decompressed stream,
with the index fields that depend on the compressor's output (stored offsets and lengths,
chunk checksums, the index checksum) zeroed, since another build of a codec library may
compress differently.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import pickle
import struct
import zlib
from typing import Any, Callable

import joblite
import pytest

MiB = 1 << 20


def _pattern(n: int, seed: int) -> bytearray:
    """``n`` bytes, compressible but not trivially (a small LCG, reproducible anywhere)."""
    out = bytearray(n)
    x = seed
    for i in range(0, n, 64):
        x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        out[i : i + 64] = (x.to_bytes(8, "little") * 8)[: n - i]
    return out


def _objects() -> dict[str, Callable[[], Any]]:
    def buffers() -> Any:
        sizes = [0, 1, 100, 65535, 65536, 70000, MiB - 7, MiB, MiB + 3, 2 * MiB + 5]
        return [
            pickle.PickleBuffer(bytes(_pattern(n, n)) if k % 2 else _pattern(n, n))
            for k, n in enumerate(sizes)
        ] + [{"after": 1}]

    def many() -> Any:  # hundreds of buffers: the index grows past its first estimate
        return [pickle.PickleBuffer(_pattern(k, k)) for k in range(300)]

    def in_band() -> Any:
        b = bytes(_pattern(MiB + 1, 1))
        return {
            "bytes": b,
            "again": b,
            "bytearray": _pattern(2 * MiB, 2),
            "str": "h\u00e9llo \u20ac \ud800 " * (MiB // 8),
            "under": bytes(_pattern(MiB - 1, 3)),
            "ascii": "abc" * MiB,
        }

    def stream() -> Any:  # a pickle stream of several chunks, no large payload
        return [str(i) * (i % 7) for i in range(250_000)]

    def mixed() -> Any:
        return (
            1,
            "x",
            pickle.PickleBuffer(_pattern(5 * MiB + 17, 9)),
            [str(i) for i in range(50_000)],
            _pattern(MiB + 100, 4),
            pickle.PickleBuffer(_pattern(1000, 5)),
        )

    def small() -> Any:
        return {"a": 1, "b": [1.5, "x", None], "c": b"abc"}

    def text() -> Any:  # a large ASCII str alone: written without the pickler (format2.py)
        return "joblite " * (MiB // 4)

    return {
        "buffers": buffers,
        "many": many,
        "in_band": in_band,
        "stream": stream,
        "mixed": mixed,
        "small": small,
        "text": text,
    }


def _decompress(codec: str, data: bytes) -> bytes:
    if codec == "zlib":
        return zlib.decompress(data)
    if codec == "gzip":
        return gzip.decompress(data)
    if codec == "bz2":
        return bz2.decompress(data)
    if codec == "xz":
        return lzma.decompress(data)
    if codec == "lz4":
        lz4_frame = pytest.importorskip("lz4.frame")
        out, rest = [], data
        while rest:
            d = lz4_frame.LZ4FrameDecompressor()
            out.append(d.decompress(rest))
            rest = d.unused_data
        return b"".join(out)
    assert codec == "zstd"
    zstandard = pytest.importorskip("zstandard")
    (size,) = struct.unpack_from("<I", data, 4)  # the leading skippable frame
    with zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(data[8 + size :]), read_across_frames=True
    ) as r:
        return r.read()


def _masked_stream(codec: str, data: bytes) -> bytes:
    """The decompressed stream, with what depends on the compressor's output zeroed."""
    s = bytearray(_decompress(codec, data))
    assert s[:3] == b"\x80\x05\x8e"
    (n,) = struct.unpack_from("<Q", s, 3)
    at = 11
    (n_chunks,) = struct.unpack_from("<Q", s, at + 16)
    s[at + 40 : at + 48] = bytes(8)  # stored_len
    for i in range(n_chunks):
        e = at + 64 + 40 * i
        s[e : e + 16] = bytes(16)  # stored_off, stored_len
        s[e + 32 : e + 40] = bytes(8)  # xxh3 of the stored bytes
    s[at + n - 8 : at + n] = bytes(8)  # the index checksum
    return bytes(s)


CODECS = ["none", "zlib", "gzip", "bz2", "xz", "lz4", "zstd"]


def _digest(name: str, codec: str, start: int) -> str:
    value = _objects()[name]()
    f = io.BytesIO()
    f.write(b"\0" * start)
    joblite.dump(value, f, compress=0 if codec == "none" else (codec, 3))
    data = f.getvalue()[start:]
    if codec != "none":
        data = _masked_stream(codec, data)
    return hashlib.sha256(data).hexdigest()[:32]


# (object, codec, where the dump starts in its file) -> digest
GOLDEN: dict[tuple[str, str, int], str] = {
    ("buffers", "none", 0): "68554bc0ef86dba646e0683f2f5f41f9",
    ("buffers", "zlib", 0): "5872ef1a0e3d86471098a0fe55b9b25c",
    ("buffers", "gzip", 0): "4925d5175b4e4920ff39465a35976814",
    ("buffers", "bz2", 0): "6d61fc276a53bc8cf9b83d3a3fe76782",
    ("buffers", "xz", 0): "5a79d05dc01748e06ba845286015d14b",
    ("buffers", "lz4", 0): "c4439791117f92e4f41004c7c45dba43",
    ("buffers", "zstd", 0): "34f555a39643a71e134597ef9578b227",
    ("many", "none", 0): "058538557680488a2c3590fbc094cb93",
    ("many", "zlib", 0): "b20113c8d8d7a878d493d48188a6ca5a",
    ("many", "gzip", 0): "a829d6fbe242dc504b2b40af50d6d08e",
    ("many", "bz2", 0): "3f303a341bb0f95dd7c87303b15365b9",
    ("many", "xz", 0): "e5afb0e594fe05341645ce5b22dfbfeb",
    ("many", "lz4", 0): "167748a5f735d871bc3e4f75c84ea39c",
    ("many", "zstd", 0): "fc0a59e49ae814a6e0be6b656e279d96",
    ("in_band", "none", 0): "e6991708c7e600a6c6793bd21e054d0d",
    ("in_band", "zlib", 0): "3a270df68444451f4118ccaf483de90a",
    ("in_band", "gzip", 0): "794e73d6e2ae81cb36b726f82c332a38",
    ("in_band", "bz2", 0): "c572d5acf5aca7b04170c4b2bfe876e6",
    ("in_band", "xz", 0): "40289cf2a5e11a4b2288aec222bf5870",
    ("in_band", "lz4", 0): "5e39d2fb2977fb530ef057236ab7e47c",
    ("in_band", "zstd", 0): "ce53183fec2fbb9decbb2b0c4b902959",
    ("stream", "none", 0): "e16b3d576b99a858fe19a11355147592",
    ("stream", "zlib", 0): "c2a40bf0350008b212506031b303f72d",
    ("stream", "gzip", 0): "1476f63798e245257c8acf9f73a29057",
    ("stream", "bz2", 0): "2b37f7d19e551b6a8dedd9a87832cf78",
    ("stream", "xz", 0): "797e85550eaf89c10abc7ff740423da3",
    ("stream", "lz4", 0): "ee79faa55da8a80346af6662b7667264",
    ("stream", "zstd", 0): "f6a35e2c96a863c2fd50e6617cc53444",
    ("mixed", "none", 0): "3e7f212a4796246c0ae780cb465077f4",
    ("mixed", "zlib", 0): "cc890f6d8c7f1b6ff02f2942db8f2158",
    ("mixed", "gzip", 0): "1a336d1aa8fabc07813e3ae56ba50e11",
    ("mixed", "bz2", 0): "53e4601431d8bcf0f9a1720faaa701d5",
    ("mixed", "xz", 0): "c76277f8cc93e42d9833ecb80514bf7d",
    ("mixed", "lz4", 0): "7f98085ac17eab0a6da9304f969c0d6d",
    ("mixed", "zstd", 0): "7bc28e9634d0809771e2d575e8483ff4",
    ("small", "none", 0): "4c360603d281b7eabc825b5373f50135",
    ("small", "zlib", 0): "4086bc8adfce87765159e4d8b1e16b71",
    ("small", "gzip", 0): "dc00b438c060817578f7f155583d80bb",
    ("small", "bz2", 0): "c2a3f52651f3ff81e304ebc1b2abf2d6",
    ("small", "xz", 0): "7bc3fd93af5e5715d31f2f02871bc930",
    ("small", "lz4", 0): "b4fff863000a789f025082bbce1be452",
    ("small", "zstd", 0): "a1f3138d49395d32b857ee72966931bd",
    ("buffers", "none", 7): "6a493e7d34cee05fcbb901a970eb28a9",
    ("buffers", "none", 77): "29db694b4b54189e58af6606f342ccff",
    ("in_band", "none", 7): "3a699ea72fe1b289436efc64a7c03fd5",
    ("in_band", "none", 77): "f5566795b333d79f11ed85201d2b9364",
    ("mixed", "none", 7): "430164640e4d739a4487cf2a69f94295",
    ("mixed", "none", 77): "9672fb5f5d2a7252f4c77472e1245090",
    ("small", "none", 7): "4c360603d281b7eabc825b5373f50135",
    ("small", "none", 77): "4c360603d281b7eabc825b5373f50135",
    ("mixed", "zlib", 5): "cc890f6d8c7f1b6ff02f2942db8f2158",
    # taken from the writer before a large ASCII str skipped the pickler
    ("text", "none", 0): "cf3ef0cbe4cc32de92b7629f1835f581",
    ("text", "none", 7): "9156c1cc5db52ee165bf39f9ee154c89",
    ("text", "zlib", 0): "c93988073681437719f6e2f8eeab149f",
    ("text", "lz4", 0): "ddaac4f1d4e34fd923e3aac5835266f3",
}


@pytest.mark.parametrize("case", sorted(GOLDEN), ids=lambda c: "-".join(map(str, c)))
def test_dump_bytes_are_frozen(case):
    assert _digest(*case) == GOLDEN[case]


def test_a_path_gets_the_same_bytes(tmp_path):
    path = tmp_path / "a.pkl"
    joblite.dump(_objects()["mixed"](), path)
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:32] == GOLDEN[("mixed", "none", 0)]


@pytest.mark.parametrize("start", [0, 1, 63, 100])
def test_uncompressed_buffers_are_aligned_in_the_file(tmp_path, start):
    np = pytest.importorskip("numpy")
    value = {"a": np.arange(1000.0), "b": [np.ones(3, np.int8), b"x" * (MiB + 1)], "c": "s"}
    path = tmp_path / "a.pkl"
    with open(path, "wb") as f:
        f.write(b"\0" * start)
        joblite.dump(value, f)
    reader = joblite._core.F2Reader.open(str(path), start)
    offsets = [off for n, own, off in reader.buffers() if n]
    assert len(offsets) == 3 and all(off % 64 == 0 for off in offsets)
    with open(path, "rb") as f:
        f.seek(start)
        got = joblite.load(f)
    assert got["b"][1] == value["b"][1] and (got["a"] == value["a"]).all()


def test_the_writer_refuses_a_stream_that_disagrees_with_its_buffers():
    buf = pickle.PickleBuffer(bytearray(10))
    stream = pickle.dumps([buf], protocol=5, buffer_callback=lambda b: False)
    dump = joblite._core.f2_dump
    assert dump(None, [stream], [memoryview(bytearray(10))], 0, 0, 0, False)
    with pytest.raises(ValueError, match="disagree"):
        dump(None, [stream], [], 0, 0, 0, False)
    with pytest.raises(ValueError, match="disagree"):
        dump(None, [stream], [b"a", b"b"], 0, 0, 0, False)
    with pytest.raises(ValueError, match="STOP"):
        dump(None, [stream[:-1]], [b"0123456789"], 0, 0, 0, False)
    with pytest.raises(ValueError, match="codec"):
        dump(None, [stream], [b"0123456789"], 99, 0, 0, False)


@pytest.mark.parametrize(
    "value",
    [
        "a" * MiB,  # the smallest str that becomes a record
        "xyz" * MiB + "!",
        "a" * (MiB - 1),  # under it: pickled as usual
        "\u00e9" * MiB,  # not ASCII: pickled as usual
        "a" * MiB + "\ud800",  # a lone surrogate (surrogatepass)
    ],
    ids=["min", "odd", "under", "latin1", "surrogate"],
)
@pytest.mark.parametrize("compress", [0, ("zlib", 1), ("lz4", 1)])
def test_a_large_str_gets_the_bytes_the_pickler_gives_it(value, compress):
    from joblite.persistence import format2

    stream, _ = format2._stream(value)
    if len(value) >= MiB and value.isascii():
        assert any(part is value for part in stream)  # the characters, never copied
    f = io.BytesIO()
    joblite.dump(value, f, compress=compress)
    name, level = ("none", 0) if compress == 0 else compress
    parts, _ = format2._pickle(value)
    want = joblite._core.f2_dump(None, parts, [], format2.CODEC_IDS[name], level, 0, False)
    assert f.getvalue() == want
    assert joblite.load(io.BytesIO(want)) == value


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_uncompressed_checksums_do_not_depend_on_the_core_threads(tmp_path, threads):
    # the writing thread and a core thread share the checksums of the chunks (one thread:
    # the writer alone); the bytes are the frozen ones either way
    with joblite.thread_limits(threads):
        for name in ("mixed", "in_band"):
            path = tmp_path / f"{name}.pkl"
            joblite.dump(_objects()[name](), path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
            assert digest == GOLDEN[(name, "none", 0)]
            joblite.load(path)  # every chunk verified
