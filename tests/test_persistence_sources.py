"""Where a dump's bytes come from (a path, a file object, a stream): hostile sizes are
never trusted before they are verified, and nothing blocks on a file that is not regular.

Each test is a finding of issue 18's review (or a sibling of one).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys

import joblite
import numpy as np
import pytest
from _support import run_measured
from joblite import CorruptFileError


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_core_reader_refuses_a_fifo_without_blocking(tmp_path):
    """The public load refuses a FIFO before the core sees it; the core must not block on
    one either (a plain open of a FIFO with no writer waits forever)."""
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "from joblite import _core, CorruptFileError\n"
        "try:\n"
        "    _core.F2Reader.open(sys.argv[1])\n"
        "except CorruptFileError as e:\n"
        "    print(e.path == sys.argv[1], e.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    same_path, reason = done.stdout.strip().split(" ", 1)
    assert same_path == "True" and "FIFO" in reason, done.stdout


def test_core_reader_refuses_a_directory(tmp_path):
    from joblite import _core

    with pytest.raises(CorruptFileError, match="directory") as exc:
        _core.F2Reader.open(str(tmp_path))
    assert exc.value.path == str(tmp_path)


# a stream (a socket): load reads one dump and never past it, nor trusts a size unverified


class NoEnd(io.RawIOBase):
    """A stream like a socket whose peer keeps it open: ``data``, then a read that would
    block forever (here it fails the test instead). No ``tell``: load must find the dump's
    end by itself."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.data) or n < 0:
            raise AssertionError(f"read({n}) at {self.pos}: would block (read past the dump)")
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def tell(self) -> int:
        raise OSError("not seekable")

    def seek(self, *args: object) -> int:
        raise OSError("not seekable")


VALUE = {"x": np.arange(50_000.0), "s": "text"}
NEXT = b"the next message on the socket"


def test_stream_load_stops_at_the_dump_end():
    src = NoEnd(joblite.dumps(VALUE) + NEXT)
    got = joblite.load(src)
    assert np.array_equal(got["x"], VALUE["x"]) and got["s"] == "text"
    assert src.data[src.pos :] == NEXT


def index_len_patched(declared: int) -> bytes:
    blob = bytearray(joblite.dumps(VALUE))
    struct.pack_into("<Q", blob, 3, declared)
    return bytes(blob)


@pytest.mark.parametrize("extra", [2 << 20, 1 << 33, (1 << 62)])
def test_stream_index_length_is_bounded_before_reading(extra):
    """An index length no table can fill is refused after the index's fixed part, never read
    (on a socket it would block, or swallow the next messages; before the fix it read up to
    16 GiB first)."""
    blob = joblite.dumps(VALUE)
    n = int.from_bytes(blob[3:11], "little")
    src = NoEnd(index_len_patched(n + extra) + NEXT)
    with pytest.raises(CorruptFileError, match="index"):
        joblite.load(src)
    assert src.pos <= 11 + 64


def test_stream_stored_length_is_verified_before_reading():
    """The data length in the index is believed only once the index checksum and tables are
    verified (before the fix a damaged stored_len was trusted: read past the dump)."""
    blob = bytearray(joblite.dumps(VALUE))
    at = 11 + 40  # index field stored_len
    stored = int.from_bytes(blob[at : at + 8], "little")
    struct.pack_into("<Q", blob, at, stored + (1 << 30))
    src = NoEnd(bytes(blob) + NEXT)
    with pytest.raises(CorruptFileError, match="checksum"):
        joblite.load(src)
    # an attacker who recomputes the checksum: the chunk table still disagrees
    from joblite import _core

    n = int.from_bytes(blob[3:11], "little")
    index = blob[11 : 11 + n]
    struct.pack_into("<Q", blob, 11 + n - 8, _core.xxh3_64(bytes(index[:-8])))
    src = NoEnd(bytes(blob) + NEXT)
    with pytest.raises(CorruptFileError, match="cover"):
        joblite.load(src)
    assert src.pos <= 12 + n  # the header unit, never the declared data


def test_truncated_stream_is_reported():
    blob = joblite.dumps(VALUE)
    for cut in (5, 40, 11 + 200, len(blob) - 1):
        with pytest.raises(CorruptFileError):
            joblite.load(io.BufferedReader(Unseekable(blob[:cut])))


class Unseekable(io.RawIOBase):
    """A stream that ends (a closed socket), without ``tell``."""

    def __init__(self, data: bytes) -> None:
        self.src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        return self.src.readinto(b)

    def tell(self) -> int:
        raise OSError("not seekable")

    def seek(self, *args: object) -> int:
        raise OSError("not seekable")


def test_lzma_stream_index_length_is_bounded(tmp_path):
    """Sibling through a decompressor (compress="lzma"): a hostile index length over a
    stream of zeros made load read (and keep) everything the decoder produced, 2x; now the
    index's fixed part bounds it."""
    import lzma

    path = tmp_path / "bomb.pkl"
    comp = lzma.LZMACompressor(format=lzma.FORMAT_ALONE, preset=1)
    parts = [comp.compress(index_len_patched(1 << 33))]
    zeros = bytes(16 << 20)
    parts += [comp.compress(zeros) for _ in range(16)]  # 256 MiB once decoded
    parts.append(comp.flush())
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 1 << 20
    code = (
        "try:\n"
        f"    joblite.load({str(path)!r})\n"
        "except CorruptFileError as e:\n"
        "    out['reason'] = e.reason\n"
        "    out['path'] = e.path\n"
    )
    out = run_measured(code)
    assert "index" in out["reason"] and out["path"] == str(path), out
    assert out["rss_growth"] < 64 << 20, out


# one home for "starts as zstd but is no readable dump" (it was checked in Python and Rust)


@pytest.mark.parametrize("first", [0x50, 0x54, 0x5F])
def test_damaged_zstd_opening_is_refused(tmp_path, first):
    """A joblite zstd dump whose skippable note frame and index magic are both damaged (so
    no bit-distance rule applies) is refused as damaged, never read as a joblib pickle."""
    blob = bytearray(joblite.dumps(VALUE, compress="zstd"))
    assert blob[:4] == b"\x55\x2a\x4d\x18"
    blob[0] = first
    blob[8:40] = bytes(32)  # the note's text: no longer joblite's note
    at = blob.find(b"JOBLITE\x02")
    blob[at : at + 8] = b"XXXXXXXX"
    path = tmp_path / "z.pkl"
    path.write_bytes(bytes(blob))
    for load in (lambda: joblite.load(path), lambda: joblite.loads(bytes(blob))):
        with pytest.raises(CorruptFileError, match="skippable frame"):
            load()


def test_plain_zstd_stream_is_no_joblite_dump(tmp_path):
    """A plain zstd stream (what a registered zstd compressor writes) is not called a
    damaged joblite dump: without its compressor registered it is an unknown format."""
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "p.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\x80\x04K\x01."))
    with pytest.raises(CorruptFileError, match="register") as exc:
        joblite.load(path)
    assert exc.value.path == str(path)


@pytest.mark.parametrize("compress", [3, ("gzip", 3), "lz4", "zstd"])
def test_stream_load_of_a_compressed_dump_stops_at_its_end(compress):
    """Every codec whose header unit is stored as is: the dump's length comes from its
    verified index, so a socket's next message is left unread (it used to read to EOF:
    blocking on an open socket)."""
    src = NoEnd(joblite.dumps(VALUE, compress=compress) + NEXT)
    got = joblite.load(src)
    assert np.array_equal(got["x"], VALUE["x"]) and got["s"] == "text"
    assert src.data[src.pos :] == NEXT


@pytest.mark.parametrize("compress", [3, "lz4", "zstd", "bz2"])
def test_stream_load_of_a_damaged_compressed_dump_is_refused(compress):
    blob = bytearray(joblite.dumps(VALUE, compress=compress))
    blob[len(blob) // 2] ^= 0x10
    with pytest.raises(CorruptFileError):
        joblite.load(io.BufferedReader(Unseekable(bytes(blob))))


# bz2 / xz dumps from a stream: their header unit is compressed, so the dump's end is found by
# decoding it as it arrives (before, load read such a stream to its end: on a socket kept
# open, it blocked forever)

BIG = {"x": np.arange(300_000.0), "r": np.random.default_rng(5).random(200_000), "s": "text"}


def same(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(
        np.array_equal(got[k], want[k]) if isinstance(want[k], np.ndarray) else got[k] == want[k]
        for k in want
    )


@pytest.mark.parametrize("compress", ["bz2", "xz", ("bz2", 1), ("xz", 9)])
def test_bz2_xz_stream_load_stops_at_the_dump_end(compress):
    """Without ``peek``: each read is at most what a valid dump still holds."""
    src = NoEnd(joblite.dumps(VALUE, compress=compress) + NEXT)
    got = joblite.load(src)
    assert np.array_equal(got["x"], VALUE["x"]) and got["s"] == "text"
    assert src.data[src.pos :] == NEXT


def load_from_socket(blob: bytes, timeout: float = 30) -> tuple:
    """``load`` from a real socket whose peer sent ``blob`` and ``NEXT`` and keeps the
    connection open; (value, the bytes that follow it on the socket). A load that reads past
    the dump waits for bytes that never come: the socket's timeout fails the test."""
    import socket
    import threading

    ours, peer = socket.socketpair()
    sender = threading.Thread(target=peer.sendall, args=(blob + NEXT,))
    sender.start()
    ours.settimeout(timeout)
    f = ours.makefile("rb")
    try:
        got = joblite.load(f)
        return got, f.read(len(NEXT))
    finally:
        sender.join()
        f.close()
        peer.close()
        ours.close()


@pytest.mark.parametrize("compress", ["bz2", "xz"])
@pytest.mark.parametrize("value", [VALUE, BIG], ids=["small", "big"])
def test_bz2_xz_dump_from_a_socket_kept_open(compress, value):
    blob = joblite.dumps(value, compress=compress)
    got, after = load_from_socket(blob)
    assert same(got, value) and after == NEXT


@pytest.mark.parametrize("buffering", [-1, 0], ids=["buffered", "raw"])
@pytest.mark.parametrize("compress", ["bz2", "xz"])
def test_bz2_xz_dump_from_a_pipe_kept_open(compress, buffering):
    """Buffered (``peek``: what is buffered is decoded, only the dump's bytes consumed) and
    raw (each read at most what a valid dump still holds)."""
    import threading

    blob = joblite.dumps(BIG, compress=compress)
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb", buffering=buffering), os.fdopen(w, "wb")
    sender = threading.Thread(target=lambda: (writer.write(blob + NEXT), writer.flush()))
    sender.start()
    result: list = []
    loader = threading.Thread(target=lambda: result.append(joblite.load(reader)), daemon=True)
    loader.start()
    loader.join(timeout=60)
    blocked = loader.is_alive()
    sender.join()
    writer.close()  # lets a blocked load return
    loader.join(timeout=60)
    try:
        assert not blocked, "load read past the dump: it waited for the writer to close"
        assert same(result[0], BIG) and reader.read(len(NEXT)) == NEXT
    finally:
        reader.close()


def recompressed(compress: str, patch) -> bytes:
    """A ``compress`` dump of VALUE whose header stream's ``H`` is ``patch(H)`` (a lying
    index, its checksum recomputed where ``patch`` wants), compressed again."""
    import bz2
    import lzma

    blob = joblite.dumps(VALUE, compress=compress)
    mod = bz2 if compress == "bz2" else lzma
    dec = mod.BZ2Decompressor() if compress == "bz2" else mod.LZMADecompressor()
    h = dec.decompress(blob)
    assert dec.eof and h[11:19] == b"JOBLITE\x02"
    return mod.compress(bytes(patch(bytearray(h)))) + dec.unused_data


def resum(h: bytearray) -> bytearray:
    from joblite import _core

    n = int.from_bytes(h[3:11], "little")
    struct.pack_into("<Q", h, 11 + n - 8, _core.xxh3_64(bytes(h[11 : 11 + n - 8])))
    return h


def _index_len(h: bytearray, add: int) -> bytearray:
    n = int.from_bytes(h[3:11], "little")
    struct.pack_into("<Q", h, 3, n + add)
    return h


def _stored_len(h: bytearray, add: int) -> bytearray:
    at = 11 + 40
    struct.pack_into("<Q", h, at, int.from_bytes(h[at : at + 8], "little") + add)
    return resum(h)


LIES = {
    "index length past its tables": lambda h: _index_len(h, 2 << 20),
    "index length of 2**62": lambda h: _index_len(h, 1 << 62),
    "index length short of its tables": lambda h: _index_len(h, -48),
    "index length past the header": lambda h: _index_len(h, 8),
    "stored length, checksum recomputed": lambda h: _stored_len(h, 1 << 30),
    "stored length, checksum not recomputed": lambda h: (
        _stored_len(h, 1 << 30)[:-9] + b"\x00" + _stored_len(h, 1 << 30)[-8:]
    ),
}


@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize("compress", ["bz2", "xz"])
def test_bz2_xz_stream_with_a_lying_index_is_refused_at_once(compress, lie):
    """On a socket kept open: refused from the header stream alone, never waiting for the
    bytes a lying length declares."""
    import time

    blob = recompressed(compress, LIES[lie])
    start = time.monotonic()
    with pytest.raises(CorruptFileError):
        load_from_socket(blob, timeout=20)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("compress", ["bz2", "xz"])
def test_bz2_xz_header_stream_bomb_is_refused_with_bounded_memory(tmp_path, compress):
    """A header stream whose index's fixed part declares 2**30 chunks, then 256 MiB of zeros
    (a few KiB compressed), read from a stream: refused after a few MiB of output, never
    decoded whole."""
    import bz2
    import lzma

    h = bytearray(joblite.dumps(VALUE)[: 11 + 64])
    struct.pack_into("<Q", h, 3, 64 + 40 * (1 << 30) + 8)
    struct.pack_into("<Q", h, 11 + 16, 1 << 30)
    h[11 + 12] = 3 if compress == "bz2" else 4
    mod = bz2 if compress == "bz2" else lzma
    enc = mod.BZ2Compressor(9) if compress == "bz2" else mod.LZMACompressor()
    parts = [enc.compress(bytes(h))] + [enc.compress(bytes(16 << 20)) for _ in range(16)]
    path = tmp_path / "bomb"
    path.write_bytes(b"".join(parts) + enc.flush() + mod.compress(b"chunk"))
    code = (
        "import io\n"
        "class Stream(io.RawIOBase):\n"
        "    def __init__(self, data): self.src = io.BytesIO(data)\n"
        "    def readable(self): return True\n"
        "    def readinto(self, b): return self.src.readinto(b)\n"
        "    def tell(self): raise OSError('not seekable')\n"
        "    def seek(self, *a): raise OSError('not seekable')\n"
        f"src = io.BufferedReader(Stream(open({str(path)!r}, 'rb').read()))\n"
        "try:\n"
        "    joblite.load(src)\n"
        "except CorruptFileError as e:\n"
        "    out['reason'] = e.reason\n"
    )
    out = run_measured(code)
    assert "reason" in out, out
    assert out["rss_growth"] < 48 << 20, out


def test_lz4_frame_reader_reads_its_file_as_it_decodes():
    """joblib's lz4 files: the frame reader reads the compressed file object a piece at a
    time as it decodes (it used to take the whole file's bytes first)."""
    import lz4.frame
    from joblite import _core

    data = np.arange(1_000_000, dtype=np.int64).tobytes()
    src = io.BytesIO(lz4.frame.compress(data) + b"not a frame")
    reader = _core.Lz4FrameReader(src)
    out = bytearray(1 << 16)
    assert reader.readinto(out) == len(out) and out == data[: len(out)]
    assert 0 < src.tell() < len(src.getvalue()) // 2  # read as far as the decoder needed
    got = bytearray(out)
    while n := reader.readinto(out):
        got += out[:n]
    assert got == data  # the bytes after the last frame end the stream
