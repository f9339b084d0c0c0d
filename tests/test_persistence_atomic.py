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
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_dump_never_leaves_a_torn_file(tmp_path):
    rng = random.Random(1234)
    base = np.arange(1 << 20, dtype=np.float64)
    outcomes = {"absent": 0, "complete": 0}
    for trial in range(24):
        path = tmp_path / f"target{trial % 3}.joblite"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(trial % 2)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if not path.exists():
            outcomes["absent"] += 1
            continue
        got = joblite.load(path)  # verifies every checksum: a torn file would raise
        assert np.array_equal(got["data"], base + got["version"])
        outcomes["complete"] += 1
    assert outcomes["complete"] > 0
    # only our own temporary files may remain beside the targets, never partial targets;
    # some must remain, or no kill landed in the middle of a write and nothing was tested
    names = os.listdir(tmp_path)
    assert all(n.startswith("target") or n.endswith(".joblite-tmp") for n in names), names
    assert any(n.endswith(".joblite-tmp") for n in names), names
