"""dump to a path is atomic: a process killed (SIGKILL) at any point while dumping leaves
either no file, the previous complete version, or the new complete one, never a torn file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import joblite
import numpy as np
import pytest

CHILD = r"""
import sys
import numpy as np
import joblite
path, compress = sys.argv[1], int(sys.argv[2])
base = np.arange(1 << 20, dtype=np.float64)  # 8 MiB per version
print("go", flush=True)
version = 0
while True:
    version += 1
    joblite.dump({"version": version, "data": base + version}, path, compress=compress)
    print(version, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_dump_never_leaves_a_torn_file(tmp_path):
    rng = random.Random(1234)
    base = np.arange(1 << 20, dtype=np.float64)
    outcomes = {"absent": 0, "complete": 0}
    kills_mid_write = 0
    for trial in range(24):
        path = tmp_path / f"target{trial % 3}.joblite"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(trial % 2)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "go"
        if trial % 4 >= 2:
            # half the kills come after a first dump is complete, however slow the machine
            # (on a loaded one, 0.25 s was seen not to be enough for any): they land in the
            # dumps that replace it
            assert proc.stdout.readline().strip() == "1"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        # a temp file left now (the next child's first dump sweeps it) means the kill
        # landed in the middle of a write
        kills_mid_write += any(n.endswith(".joblite-tmp") for n in os.listdir(tmp_path))
        if not path.exists():
            outcomes["absent"] += 1
            continue
        got = joblite.load(path)  # verifies every checksum: a torn file would raise
        assert np.array_equal(got["data"], base + got["version"])
        outcomes["complete"] += 1
    assert outcomes["complete"] > 0
    # only our own temporary files may remain beside the targets, never partial targets;
    # some kills must have landed mid-write, or nothing was tested
    names = os.listdir(tmp_path)
    assert all(n.startswith("target") or n.endswith(".joblite-tmp") for n in names), names
    assert kills_mid_write > 0
    # the next dump into the folder removes what the killed writers left
    joblite.dump(0, tmp_path / "after.joblite")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".joblite-tmp")]


BIG_DUMP = r"""
import sys
import numpy as np
import joblite
data = np.ones(64 << 20)  # 512 MiB: a write long enough to be stopped in the middle
print("go", flush=True)
joblite.dump(data, sys.argv[1])
"""


def _stop_mid_write(tmp_path, path) -> tuple[subprocess.Popen, list]:
    proc = subprocess.Popen([sys.executable, "-c", BIG_DUMP, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"go"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [n for n in os.listdir(tmp_path) if n.endswith(".joblite-tmp")]
        if temps:
            proc.send_signal(signal.SIGSTOP)
            return proc, temps
        if proc.poll() is not None:
            break
        time.sleep(0.001)
    proc.kill()
    pytest.fail("the child's dump never showed its temporary file")


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")
def test_temp_files_are_swept_only_once_their_writer_is_gone(tmp_path):
    proc, temps = _stop_mid_write(tmp_path, tmp_path / "big.joblite")
    try:
        # the writer is alive (stopped): its file is in use and must stay
        joblite.dump([1, 2], tmp_path / "other.joblite")
        assert set(temps) <= set(os.listdir(tmp_path))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert set(temps) <= set(os.listdir(tmp_path))  # killed: nothing removed it yet
    joblite.dump([1, 2], tmp_path / "other.joblite")
    assert sorted(os.listdir(tmp_path)) == ["other.joblite"]
    assert joblite.load(tmp_path / "other.joblite") == [1, 2]


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")
def test_a_process_scans_a_folder_for_leftovers_once(tmp_path):
    # a folder of many files is listed once per process, not on every dump into it
    joblite.dump(1, tmp_path / "a.joblite")
    proc, temps = _stop_mid_write(tmp_path, tmp_path / "big.joblite")
    proc.kill()
    proc.wait()
    proc.stdout.close()
    joblite.dump(2, tmp_path / "a.joblite")
    assert set(temps) <= set(os.listdir(tmp_path))
    # the next process to dump there removes the leftover
    code = "import joblite, sys; joblite.dump(3, sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.joblite")], check=True)
    assert sorted(os.listdir(tmp_path)) == ["a.joblite", "b.joblite"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_replacing_a_large_file_frees_it_off_the_callers_time_without_leaking(tmp_path):
    """A dump over a large file frees the old one on a background thread (the rename no
    longer waits for its pages to be released); the new content is what loads, and the
    descriptor held across the rename is closed."""
    path = tmp_path / "big.pkl"
    old = np.zeros(40 << 17)  # 40 MiB
    new = np.arange(40 << 17, dtype=np.float64)
    joblite.dump(old, path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        joblite.dump(new, path)
    assert np.array_equal(joblite.load(path), new)
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) <= before
    assert [p.name for p in tmp_path.iterdir()] == ["big.pkl"]
