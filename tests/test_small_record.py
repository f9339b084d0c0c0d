"""The local cache's small-result record (``JLTSMALL1``, docs/format.md): ``load`` and
``loads`` read it like any dump, damage is a CorruptFileError, safe mode applies, and entries
written by earlier versions (the same record) still hit."""

from __future__ import annotations

import hashlib
import os
import pickle

import joblite
import pytest
from joblite import CorruptFileError, UnsafeLoadError


def record(value, protocol: int = 5) -> bytes:
    """A record built from the layout docs/format.md gives, not from joblite's writer."""
    body = pickle.dumps(value, protocol=protocol)
    return b"JLTSMALL1\n" + hashlib.blake2b(body, digest_size=16).digest() + body


def output_files(root):
    return [os.path.join(p, "output.v1") for p, _, files in os.walk(root) if "output.v1" in files]


def test_load_reads_a_cache_entrys_small_result(tmp_path):
    mem = joblite.Memory(tmp_path, verbose=0)
    assert mem.cache(divmod)(17, 5) == (3, 2)
    (path,) = output_files(tmp_path)
    with open(path, "rb") as f:
        assert f.read(10) == b"JLTSMALL1\n"  # small results are stored as the record
    assert joblite.load(path) == (3, 2)
    assert joblite.load(path, allow_pickle=False) == (3, 2)
    with open(path, "rb") as f:
        assert joblite.loads(f.read()) == (3, 2)


def test_an_entry_written_by_an_earlier_version_still_hits(tmp_path):
    calls = []

    def f(x):
        calls.append(x)
        return {"x": x}

    cached = joblite.Memory(tmp_path, verbose=0).cache(f)
    assert cached(1) == {"x": 1}
    (path,) = output_files(tmp_path)
    with open(path, "wb") as fh:  # what joblite 0.1 wrote (protocol 4 pickles included)
        fh.write(record({"x": "from the old entry"}, protocol=4))
    assert cached(1) == {"x": "from the old entry"}
    assert calls == [1]


@pytest.mark.parametrize("cut", [5, 10, 20, 26, 30])
def test_truncated_or_damaged_records_are_corrupt_files(tmp_path, cut):
    raw = record(list(range(20)))
    path = tmp_path / "r.bin"
    path.write_bytes(raw[:cut])
    with pytest.raises(CorruptFileError) as info:
        joblite.load(path)
    assert info.value.path == str(path)
    flipped = bytearray(raw)
    flipped[-3] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError, match="checksum"):
        joblite.load(path)
    with pytest.raises(CorruptFileError):
        joblite.loads(bytes(flipped))


def test_oversized_record_is_refused(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(record(b"x" * (200 << 10)))
    with pytest.raises(CorruptFileError, match="larger"):
        joblite.load(path)


def test_safe_mode_refuses_globals_in_a_record(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(record(print))  # a global
    with pytest.raises(UnsafeLoadError):
        joblite.load(path, allow_pickle=False)
    assert joblite.load(path) is print


def test_a_damaged_small_entry_is_recomputed_with_a_warning(tmp_path):
    calls = []

    def g(x):
        calls.append(x)
        return x + 1

    cached = joblite.Memory(tmp_path, verbose=0).cache(g)
    assert cached(1) == 2
    (path,) = output_files(tmp_path)
    with open(path, "rb") as fh:
        raw = bytearray(fh.read())
    raw[-2] ^= 0x10
    with open(path, "wb") as fh:
        fh.write(bytes(raw))
    with pytest.warns(UserWarning):
        assert cached(1) == 2
    assert calls == [1, 1]
