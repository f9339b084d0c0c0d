"""Attacks on Memory's store: hangs and wrong answers across processes.

- A compute-once lock left by a killed process whose pid is now someone else's (pids are
  reused, soon in a container; a restarted container's process often has the very pid of the
  one that was killed) was taken for a live owner: every caller of that entry waited
  ``compute_once_timeout`` (10 minutes by default), and a process whose own pid was in the
  lock waited on itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from _support import assert_lock_is_broken, entry_lock, write_lock
from joblite import Memory
from joblite.exceptions import CacheWarning

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/stat"), reason="start markers are read from /proc"
)


def _start_marker(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    boot = Path("/proc/sys/kernel/random/boot_id").read_bytes().strip()
    fields = stat[stat.rfind(b")") + 2 :].split()
    return f"{fields[19].decode()}@{boot[:8].decode()}"


def test_a_lock_naming_our_own_pid_that_we_did_not_take_is_broken(tmp_path):
    """A restarted container: the lock of the killed process names our pid and host."""
    f, lock = entry_lock(tmp_path, lambda x: x + 1, 5, compute_once_timeout=60)
    write_lock(lock, os.getpid(), "1@00000000")
    assert_lock_is_broken(f, lock, 5, 6, within=10)


def test_an_empty_lock_left_by_a_killed_writer_is_broken(tmp_path):
    """A writer killed between creating its lock and writing its owner left an empty lock:
    before, nobody could tell it from a live one until ``stale_lock_after``."""
    f, lock = entry_lock(tmp_path, lambda x: x + 1, 5, compute_once_timeout=60)
    lock.write_bytes(b"")
    old = time.time() - 10
    os.utime(lock, (old, old))
    assert_lock_is_broken(f, lock, 5, 6, within=10)


def test_a_lock_whose_pid_now_runs_another_process_is_broken(tmp_path):
    f, lock = entry_lock(tmp_path, lambda x: x * 2, 21, compute_once_timeout=60)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # the lock's owner had this pid, but started at another time: not this process
        write_lock(lock, other.pid, "1@00000000")
        assert_lock_is_broken(f, lock, 21, 42, within=10)
    finally:
        other.kill()
        other.wait()


def test_a_lock_of_a_live_owner_is_still_waited_for(tmp_path):
    """The start marker must not break the lock of the process that really holds it."""
    f, lock = entry_lock(tmp_path, lambda x: x - 1, 9, compute_once_timeout=1.5)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        marker = _start_marker(owner.pid)
        write_lock(lock, owner.pid, marker)
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert f(9) == 8
        assert time.monotonic() - start >= 1.4  # waited for it, then computed anyway
        assert any(issubclass(w.category, CacheWarning) for w in caught)
    finally:
        owner.kill()
        owner.wait()


def test_threads_of_one_process_still_compute_once(tmp_path):
    """Our own pid on a lock this process took (another thread's) is a live owner."""
    import threading

    calls = []
    mem = Memory(tmp_path, verbose=0)

    @mem.cache
    def slow(x):
        calls.append(x)
        time.sleep(0.5)
        return x

    threads = [threading.Thread(target=slow, args=(3,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [3]


# ------------------------------------------------------- damaged entries: never a wrong value

DAMAGE_VALUES = {
    "int": 12345,
    "str": "hello world" * 3,
    "tuple": (1, 2.5, "x", None, True),
    "dict": {"a": [1, 2, 3], "b": {"c": b"bytes"}},
    "small array": ("np", "arange", 50),
    "mid array": ("np", "linspace", 20000),
}


def _build(spec):
    import numpy as np

    if isinstance(spec, tuple) and spec and spec[0] == "np":
        return (
            np.arange(spec[2], dtype=np.int32)
            if spec[1] == "arange"
            else np.linspace(0, 1, spec[2])
        )
    return spec


def _same(a, b) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("compress", [False, 3, "lz4"])
@pytest.mark.parametrize("name", sorted(DAMAGE_VALUES))
def test_a_flipped_bit_or_truncation_anywhere_in_an_entry_never_gives_a_wrong_value(
    tmp_path, name, compress
):
    """Every single-bit flip and every truncation of a stored result (sampled positions) loads
    as the right value or as a miss that recomputes it; never another value, never an error."""
    import random

    if compress == "lz4":
        pytest.importorskip("lz4")
    value = _build(DAMAGE_VALUES[name])
    mem = Memory(tmp_path, verbose=0, compress=compress)
    calls = []

    @mem.cache
    def produce(tag):
        calls.append(tag)
        return _build(DAMAGE_VALUES[tag])

    produce(name)
    (path,) = tmp_path.glob("joblite/**/output.v1")
    original = path.read_bytes()
    rng = random.Random(f"{name}-{compress}")  # the same positions every run
    positions = rng.sample(range(len(original)), min(len(original), 60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        for pos in positions:
            flipped = bytearray(original)
            flipped[pos] ^= 1 << rng.randrange(8)
            for damaged in (bytes(flipped), original[:pos]):
                (path,) = tmp_path.glob("joblite/**/output.v1")
                path.write_bytes(damaged)
                got = produce(name)
                assert _same(value, got), (pos, damaged == original[:pos], got)
    assert len(calls) > len(positions)  # the damage was seen: entries were recomputed


# ------------------------------------- readers (memory-mapped too) while entries are removed

RACE_FUNCS = """
import numpy as np


def payload(i):
    return {"i": i, "arr": np.full(300_000 + i, i, dtype=np.int64)}  # 2.4 MB: memory-mapped


def small(i):
    return ("v", i, [i] * 10)
"""

RACE_READER = """
import sys, time, warnings
sys.path.insert(0, sys.argv[2])
from joblite import Memory
from race_funcs import payload, small

warnings.simplefilter("ignore")
mem = Memory(sys.argv[1], verbose=0, mmap_mode="r" if sys.argv[3] == "mmap" else None)
p, s = mem.cache(payload), mem.cache(small)
end = time.time() + float(sys.argv[4])
n = bad = 0
while time.time() < end:
    i = n % 5
    r = p(i)
    a = r["arr"]
    if r["i"] != i or a.shape != (300_000 + i,) or int(a[0]) != i or int(a[-1]) != i:
        bad += 1
    if s(i) != ("v", i, [i] * 10):
        bad += 1
    n += 1
print(n, bad)
"""

RACE_REMOVER = """
import sys, time, warnings
from joblite import Memory

warnings.simplefilter("ignore")
mem = Memory(sys.argv[1], verbose=0)
end = time.time() + float(sys.argv[2])
k = 0
while time.time() < end:
    if k % 3 == 0:
        mem.clear(warn=False)
    elif k % 3 == 1:
        mem.reduce_size(items_limit=2)
    else:
        mem.reduce_size(bytes_limit="3M")
    k += 1
    time.sleep(0.01)
print(k)
"""


def test_readers_get_right_values_while_another_process_clears_and_reduces(tmp_path):
    """Hits (memory-mapped and not) racing ``clear`` and ``reduce_size`` in another process:
    every call returns its own value, and nothing raises."""
    (tmp_path / "race_funcs.py").write_text(RACE_FUNCS)
    (tmp_path / "reader.py").write_text(RACE_READER)
    (tmp_path / "remover.py").write_text(RACE_REMOVER)
    cache = str(tmp_path / "cache")
    seconds = "3"
    readers = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "reader.py"), cache, str(tmp_path), mode, seconds],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("mmap", "plain", "mmap")
    ]
    remover = subprocess.run(
        [sys.executable, str(tmp_path / "remover.py"), cache, seconds],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert remover.returncode == 0, remover.stderr
    assert int(remover.stdout) > 3
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        calls, bad = map(int, out.split())
        assert calls > 0 and bad == 0, out
