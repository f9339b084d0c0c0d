"""Ctrl-C during a long Parallel call: the caller stops, leaving no worker process and
no shared-memory file behind. Each case runs a real script in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from joblite import Parallel, delayed

    def task(a, i):
        time.sleep(0.2)
        return float(a[i])

    backend, folder = sys.argv[1], sys.argv[2]
    a = np.ones(500_000)  # 4 MB: shared with process workers through a file
    print("ready", flush=True)
    Parallel(n_jobs=2, backend=backend, temp_folder=folder, batch_size=1)(
        delayed(task)(a, i) for i in range(1000)
    )
    print("not interrupted", flush=True)
    """
)


@pytest.mark.parametrize("backend", ["threading", "loky", "multiprocessing"])
def test_ctrl_c_leaves_no_workers_and_no_files(backend, tmp_path):
    script = tmp_path / "long_call.py"
    script.write_text(SCRIPT)
    shared = tmp_path / "shared"
    shared.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), backend, str(shared)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:
            workers = parent.children(recursive=True)
            files = [f for _, _, names in os.walk(shared) for f in names]
            if backend == "threading" or (len(workers) >= 2 and files):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the call never started: workers={workers}")
        time.sleep(0.5)  # well inside the 1000 x 0.2 s call
        workers = parent.children(recursive=True)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    assert "not interrupted" not in out
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == []
    assert os.listdir(shared) == []


LONG_TASKS = textwrap.dedent(
    """
    import time
    from joblite import Parallel, delayed

    def task(i):
        end = time.monotonic() + 60
        while time.monotonic() < end:  # Python code, holding the GIL between sleeps
            sum(range(1000))
            time.sleep(0.001)
        return i

    print("ready", flush=True)
    Parallel(n_jobs=2, backend="threading")(delayed(task)(i) for i in range(4))
    print("not interrupted", flush=True)
    """
)


def test_ctrl_c_on_threads_exits_without_waiting_for_running_tasks(tmp_path):
    # joblib's worker threads are daemons: the process ends at once. Ours used to be
    # joined at exit, so Ctrl-C printed KeyboardInterrupt and then hung until every
    # running task (here 60 s) was done.
    script = tmp_path / "long_tasks.py"
    script.write_text(LONG_TASKS)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # both workers are inside a task
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in err
    assert "not interrupted" not in out
    assert "Fatal Python error" not in err and "panicked" not in err
    assert proc.returncode in (-signal.SIGINT, 1, 130), (proc.returncode, err)
    assert took < 10, f"exit took {took:.1f} s after Ctrl-C"
