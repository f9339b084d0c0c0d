"""One crash-safety mechanism for every writer (``joblite/_files.py``): what a killed writer
left (a temporary file or folder named with its pid and host) is removed by the next writer
into that folder, in any process, and a writer that still runs is never disturbed: for
``dump``, the local cache store and the fsspec store alike."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import joblite
import pytest
from joblite import _files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sweep is POSIX only")


@pytest.fixture
def writers():
    """(a dead writer's pid, a live writer's pid) of this host."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield dead.pid, live.pid
    finally:
        live.kill()
        live.wait()


def plant(folder, pid: int, is_dir: bool = False) -> str:
    """A leftover named as docs/development.md says (pid and host in the name)."""
    name = f".output.v1.{uuid.uuid4().hex[:8]}.{pid}-{_files.HOST_TAG}{_files.TEMP_SUFFIX}"
    path = os.path.join(folder, name)
    if is_dir:
        os.mkdir(path)
        with open(os.path.join(path, "output.v1"), "wb") as f:
            f.write(b"partial")
    else:
        with open(path, "wb") as f:
            f.write(b"partial")
    return name


def run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_dump_sweeps_dead_writers_temp_files_and_keeps_live_ones(tmp_path, writers):
    dead, live = writers
    gone, kept = plant(tmp_path, dead), plant(tmp_path, live)
    other_host = f".x.{uuid.uuid4().hex[:8]}.{dead}-00000000{_files.TEMP_SUFFIX}"
    (tmp_path / other_host).write_bytes(b"")  # another host's pid means nothing here
    run(f"import joblite; joblite.dump([1, 2], {str(tmp_path / 'x.pkl')!r})")
    names = set(os.listdir(tmp_path))
    assert gone not in names
    assert {kept, other_host, "x.pkl"} <= names
    assert joblite.load(tmp_path / "x.pkl") == [1, 2]


def test_local_store_sweeps_dead_writers_entry_folders(tmp_path, writers):
    dead, live = writers
    script = f"import joblite; joblite.Memory({str(tmp_path)!r}, verbose=0).cache(abs)(-3)"
    run(script)
    writing = next(p for p, dirs, _ in os.walk(tmp_path) if p.endswith(".writing"))
    gone, kept = plant(writing, dead, is_dir=True), plant(writing, live, is_dir=True)
    run(script.replace("(-3)", "(-4)"))  # the next writer of that function, a new process
    names = set(os.listdir(writing))
    assert gone not in names and kept in names
    mem = joblite.Memory(tmp_path, verbose=0)
    assert mem.cache(abs)(-4) == 4


def test_fsspec_store_sweeps_dead_writers_temp_files(tmp_path, writers):
    pytest.importorskip("fsspec")
    dead, live = writers
    url = f"file://{tmp_path}/cache"
    script = f"import joblite; joblite.Memory({url!r}, verbose=0).cache(abs).call(-3)"
    run(script)
    entry = next(p for p, _, files in os.walk(tmp_path) if "metadata.json" in files)
    gone, kept = plant(entry, dead), plant(entry, live)
    run(script)  # the entry written again by a new process
    names = set(os.listdir(entry))
    assert gone not in names and kept in names
    assert joblite.Memory(url, verbose=0).cache(abs)(-3) == 3


def test_cleanup_removes_dead_writers_folders_and_keeps_live_ones(tmp_path, writers):
    dead, live = writers
    mem = joblite.Memory(tmp_path, verbose=0)
    assert mem.cache(abs)(-3) == 3
    writing = next(p for p, dirs, _ in os.walk(tmp_path) if p.endswith(".writing"))
    gone, kept = plant(writing, dead, is_dir=True), plant(writing, live, is_dir=True)
    store = mem.store_backend
    assert store.cleanup() >= 1
    names = set(os.listdir(writing))
    assert gone not in names and kept in names


def test_atomic_write_leaves_no_partial_file_and_names_the_users_path(tmp_path):
    target = tmp_path / "missing-dir" / "x.pkl"
    with pytest.raises(FileNotFoundError) as info:
        joblite.dump([1], target)
    assert info.value.filename == str(target)
    assert not (tmp_path / "missing-dir").exists()
    joblite.dump(list(range(10)), tmp_path / "y.pkl")
    assert os.listdir(tmp_path) == ["y.pkl"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(1024, 1024), ("10M", 10 << 20), ("1.5G", int(1.5 * (1 << 30))), ("2KiB", 2048), (None, None)],
)
def test_size_limits_parse_like_joblib(tmp_path, text, expected):
    mem = joblite.Memory(tmp_path, verbose=0, bytes_limit=text)
    assert mem.bytes_limit == expected


@pytest.mark.parametrize("bad", ["ten", "-1M", -5])
def test_bad_sizes_are_refused_with_the_argument_named(tmp_path, bad):
    with pytest.raises(ValueError, match="bytes_limit"):
        joblite.Memory(tmp_path, verbose=0, bytes_limit=bad)
