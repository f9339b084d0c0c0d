"""Custom compressors: ``register_compressor`` with joblib's and joblite's interfaces."""

from __future__ import annotations

import bz2
import io
import os
import subprocess
import sys
import threading
import zlib

import joblib
import joblite
import numpy as np
import pytest
from joblite.compressor import ChunkCompressor, CompressorWrapper
from joblite.persistence import codecs

# joblib warns that mmap_mode is ignored for compressed files, and so does joblite
pytestmark = pytest.mark.filterwarnings("ignore:mmap_mode .* is not compatible with compressed")

CHUNK = 1 << 20  # a chunk of format 2's parallel codecs


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts with no registered compressor and leaves none behind."""
    monkeypatch.setattr(codecs, "REGISTERED", {})


class CountingZlib(ChunkCompressor):
    """zlib per chunk, recording each call's level and thread."""

    extension = ".cz"

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.threads: set[str] = set()
        self.decoded = 0
        self._lock = threading.Lock()

    def compress(self, data: memoryview, level: int) -> bytes:
        with self._lock:
            self.levels.append(level)
            self.threads.add(threading.current_thread().name)
        return b"CZ" + zlib.compress(data, level)

    def decompress(self, data: bytes) -> bytes:
        assert data[:2] == b"CZ"
        with self._lock:
            self.decoded += 1
        return zlib.decompress(data[2:])


class MagicZlibFile(io.BytesIO):
    """A file-object compressor with its own magic bytes (for joblib's interface)."""

    MAGIC = b"JLTZ\x01"

    def __init__(self, fileobj, mode: str = "rb", compresslevel: int = 6) -> None:
        # joblib hands over a file name, joblite a file object
        self._owned = None
        if isinstance(fileobj, (str, os.PathLike)):
            fileobj = self._owned = open(fileobj, mode)
        self._sink = fileobj if "w" in mode else None
        self._level = compresslevel
        if self._sink is None:
            data = fileobj.read()
            if not data.startswith(self.MAGIC):
                raise OSError("not a MagicZlib stream")
            super().__init__(zlib.decompress(data[len(self.MAGIC) :]))
        else:
            super().__init__()

    def close(self) -> None:
        if self._sink is not None and not self.closed:
            self._sink.write(self.MAGIC + zlib.compress(self.getvalue(), self._level))
        if self._owned is not None:
            self._owned.close()
        super().close()


def _value() -> dict:
    rng = np.random.default_rng(0)
    return {
        "ints": rng.integers(0, 8, 3 * CHUNK // 8 + 5),  # several chunks, compressible
        "floats": np.round(rng.standard_normal(1000), 2),
        "text": [f"row {i}" for i in range(100)],
    }


def _check(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    np.testing.assert_array_equal(got["ints"], want["ints"])
    np.testing.assert_array_equal(got["floats"], want["floats"])
    assert got["text"] == want["text"]


def _header_codec_name(path) -> bytes:
    with open(path, "rb") as f:
        header = f.read(64)
    return header[17 : 17 + header[16]]


def test_chunk_compressor_roundtrips_at_the_requested_level(tmp_path):
    codec = CountingZlib()
    joblite.register_compressor("czlib", codec)
    value = _value()
    path = tmp_path / "data.joblite"
    assert joblite.dump(value, path, compress=("czlib", 7)) == [str(path)]
    # the whole stream went through the codec at level 7 (as in joblib)
    assert len(codec.levels) >= 1 and set(codec.levels) == {7}
    assert os.path.getsize(path) < value["ints"].nbytes / 2
    _check(joblite.load(path), value)
    assert codec.decoded >= 1
    # the in-memory functions too, at the default level 3
    codec.levels.clear()
    _check(joblite.loads(joblite.dumps(value, compress="czlib")), value)
    assert set(codec.levels) == {3}


def test_joblib_style_wrapper_roundtrips(tmp_path):
    joblite.register_compressor("bz2-file", CompressorWrapper(bz2.BZ2File, prefix=b"BZh"))
    value = _value()
    path = tmp_path / "data.pkl"
    joblite.dump(value, path, compress="bz2-file")
    assert os.path.getsize(path) < value["ints"].nbytes / 4
    _check(joblite.load(path), value)
    # compressed arrays under mmap_mode are decompressed into memory, read-only for "r"
    got = joblite.load(path, mmap_mode="r")
    np.testing.assert_array_equal(got["ints"], value["ints"])
    assert not got["ints"].flags.writeable


def test_the_extension_of_a_registered_compressor_selects_it(tmp_path):
    codec = CountingZlib()
    joblite.register_compressor("czlib", codec)
    path = tmp_path / "data.cz"
    joblite.dump(_value(), path)
    assert codec.levels and path.read_bytes()[:2] == b"CZ"
    _check(joblite.load(path), _value())
    # other extensions still mean no compression
    codec.levels.clear()
    joblite.dump(_value(), tmp_path / "data.pkl")
    assert codec.levels == []


def test_loading_without_the_compressor_registered_names_it(tmp_path):
    joblite.register_compressor("czlib", CountingZlib())
    path = tmp_path / "data.joblite"
    joblite.dump(_value(), path, compress="czlib")
    code = (
        "import joblite, sys\n"
        "try:\n"
        "    joblite.load(sys.argv[1])\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "register_compressor" in out and str(path) in out


def test_joblib_files_written_with_a_registered_compressor_load(tmp_path):
    wrapper_joblib = joblib.compressor.CompressorWrapper(
        obj=MagicZlibFile, prefix=MagicZlibFile.MAGIC, extension=".mz"
    )
    joblib.register_compressor("magicz", wrapper_joblib, force=True)
    path = tmp_path / "written-by-joblib.pkl"
    value = _value()
    joblib.dump(value, path, compress=("magicz", 3))
    with open(path, "rb") as f:
        assert f.read(5) == MagicZlibFile.MAGIC
    # joblib's own wrapper object is accepted as it is
    joblite.register_compressor("magicz", wrapper_joblib)
    _check(joblite.load(path), value)
    # and joblite can write with it too
    joblite.dump(value, tmp_path / "by-joblite.mz")
    _check(joblite.load(tmp_path / "by-joblite.mz"), value)


@pytest.mark.parametrize(
    "name, match",
    [
        (b"bytes", "Compressor name should be a string"),
        ("", "1 to 47 bytes"),
        ("x" * 48, "1 to 47 bytes"),
        ("tab\there", "printable"),
        ("zlib", "built-in"),
        ("LZ4", "built-in"),
    ],
)
def test_bad_names_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        joblite.register_compressor(name, CountingZlib())
    assert codecs.REGISTERED == {}


@pytest.mark.parametrize("name", ["zstd", "ZSTD", "none", "xz", "lzma", "gzip", "bz2"])
@pytest.mark.parametrize("force", [False, True])
def test_every_name_dump_keeps_for_itself_is_refused(name, force):
    # issue 18: register_compressor("zstd", ...) was accepted and then silently never used
    # (the check read format 1's codec table, the writer format 2's)
    compressor = CountingZlib()
    with pytest.raises(ValueError, match="built-in"):
        joblite.register_compressor(name, compressor, force=force)
    assert codecs.REGISTERED == {}
    joblite.dumps(b"x" * 1000, compress=name.lower() if name != "none" else 0)
    assert compressor.levels == []


def test_a_registered_compressor_is_used_by_dump(tmp_path):
    compressor = CountingZlib()
    joblite.register_compressor("my-zstd", compressor)
    value = np.arange(100_000)
    path = tmp_path / "data.pkl"
    joblite.dump(value, path, compress="my-zstd")
    assert compressor.levels  # really called
    np.testing.assert_array_equal(joblite.load(path), value)


def test_registering_twice_needs_force(tmp_path):
    first, second = CountingZlib(), CountingZlib()
    joblite.register_compressor("czlib", first)
    with pytest.raises(ValueError, match=r"already registered.*force=True"):
        joblite.register_compressor("czlib", second)
    joblite.register_compressor("czlib", second, force=True)
    joblite.dumps(b"x" * 1000, compress="czlib")
    assert first.levels == [] and second.levels


def test_an_object_with_neither_interface_is_refused():
    with pytest.raises(ValueError, match=r"CompressorWrapper interface.*ChunkCompressor"):
        joblite.register_compressor("nothing", object())


def test_unknown_codec_message_lists_registered_ones():
    joblite.register_compressor("czlib", CountingZlib())
    with pytest.raises(ValueError, match=r"Non valid compression method given: .nope.*czlib"):
        joblite.dumps(1, compress="nope")


class ReturnsText(ChunkCompressor):
    def compress(self, data, level):
        return "not bytes"

    def decompress(self, data):
        return data


def test_a_compressor_returning_non_bytes_leaves_no_file(tmp_path):
    joblite.register_compressor("text", ReturnsText())
    target = tmp_path / "out.joblite"
    with pytest.raises(TypeError, match="'text' returned str"):
        joblite.dump(np.zeros(100), target, compress="text")
    assert os.listdir(tmp_path) == []


class Lossy(ChunkCompressor):
    prefix = b"\x78\x9c"  # recognised as this codec's file, so its decoder's failure counts

    def compress(self, data, level):
        return zlib.compress(data)

    def decompress(self, data):
        return zlib.decompress(data)[:-1]  # one byte short


class Raising(Lossy):
    def decompress(self, data):
        raise RuntimeError("codec library failed")


@pytest.mark.parametrize("codec", [Lossy(), Raising()])
def test_a_decoder_that_fails_gives_a_corrupt_file_error(tmp_path, codec):
    joblite.register_compressor("bad", codec)
    path = tmp_path / "data.joblite"
    joblite.dump(np.zeros(10_000), path, compress="bad")
    with pytest.raises(joblite.CorruptFileError, match=r"data\.joblite"):
        joblite.load(path)
