"""A process forked (``os.fork``, the multiprocessing "fork" start method) while joblite's
workers and threads are alive: the child inherits none of its parent's threads and every
lock they held at the fork stays held there for good. Each scenario runs in a fresh
interpreter whose forked child has 60 s to finish, so a hang fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

FORK = """
import os, signal, sys, threading, time
import joblite
from joblite import Parallel, delayed


def hold(lock):
    # another thread of the parent sits inside `lock` until the returned event is set
    holder_in, release = threading.Event(), threading.Event()

    def run():
        with lock:
            holder_in.set()
            release.wait(120)

    holder = threading.Thread(target=run, daemon=True)
    holder.start()
    assert holder_in.wait(60)
    return release


def in_child(work):
    # run `work` in a forked child, bounded: a child caught on a lock is killed by SIGALRM
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        try:
            work()
            code = 0
        except BaseException as error:
            print("child failed:", repr(error), flush=True)
            code = 1
        # the child's own process workers are stopped (kept for later calls, they would
        # outlive this test: os._exit runs no exit handler)
        from joblite.backends import processes

        for executor, _ in list(processes._executors.values()):
            executor.shutdown(wait=True)
        sys.stdout.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""


def _run(code: str, timeout: float = 240) -> list[str]:
    script = FORK + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "threading"])
def test_a_forked_child_runs_its_own_calls(backend):
    # The process backends kept one executor per process: the child got its parent's,
    # whose threads do not exist there, and its call waited forever.
    out = _run(
        f"""
        def work():
            got = Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(6))
            assert got == list(range(6)), got

        assert Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(6)) == [
            0, 1, 2, 3, 4, 5
        ]
        print("child", in_child(work))
        # the parent's workers still serve it
        assert Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(6)) == [
            0, 1, 2, 3, 4, 5
        ]
        print("parent ok")
        """
    )
    assert out == ["child", "0", "parent", "ok"]


def test_a_with_block_goes_on_in_a_forked_child():
    out = _run(
        """
        with Parallel(n_jobs=2, backend="threading") as parallel:
            assert parallel(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]

            def work():
                assert parallel(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]

            print("child", in_child(work))
            assert parallel(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
        print("parent ok")
        """
    )
    assert out == ["child", "0", "parent", "ok"]


@pytest.mark.parametrize(
    ("lock", "backend"),
    [
        ("joblite.backends.threads._pools_lock", "threading"),
        ("joblite.backends.processes._executors_lock", "loky"),
        ("joblite.backends.processes._executors_lock", "multiprocessing"),
    ],
)
def test_a_lock_held_by_another_thread_at_the_fork_does_not_hang_the_child(lock, backend):
    # Another thread of the parent is inside joblite (starting workers, say) at the very
    # moment of the fork: the child must not wait for it, it does not exist there. The
    # lock is taken by hand here to make that moment certain.
    module, _, name = lock.rpartition(".")
    out = _run(
        f"""
        import importlib

        release = hold(getattr(importlib.import_module({module!r}), {name!r}))

        def work():
            got = Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(4))
            assert got == [0, 1, 2, 3], got

        print("child", in_child(work))
        release.set()
        print("parent", Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(2)))
        """
    )
    assert out == ["child", "0", "parent", "[0,", "1]"]


def test_a_forked_child_leaves_its_parents_shared_arrays_alone(tmp_path):
    # The folder of arrays shared with the process workers was deleted by a forked child's
    # exit (its atexit handlers ran on the parent's folders), under the parent's call.
    pytest.importorskip("numpy")
    out = _run(
        f"""
        import numpy as np

        data = np.arange(1_000_000, dtype=np.float64)
        base = {str(tmp_path)!r}
        with Parallel(n_jobs=2, backend="loky", max_nbytes="1K", temp_folder=base) as parallel:
            assert parallel(delayed(np.sum)(data) for _ in range(2)) == [data.sum()] * 2
            before = sorted(os.listdir(base))
            pid = os.fork()
            if pid == 0:
                # the end of a child forked from another thread than the one in this
                # block: its exit handlers run, then it ends
                import atexit

                atexit._run_exitfuncs()
                os._exit(0)
            os.waitpid(pid, 0)
            print("kept", sorted(os.listdir(base)) == before and before != [])
            assert parallel(delayed(np.sum)(data) for _ in range(2)) == [data.sum()] * 2
        print("parent ok")
        """
    )
    assert out == ["kept", "True", "parent", "ok"]


@pytest.mark.parametrize(
    ("setup", "lock", "work"),
    [
        (  # the hash handler registry: every object of a class hashed for the first time
            "class Thing:\n    pass",
            "joblite.hashing._registry._lock",
            "assert isinstance(joblite.hash(Thing()), str)",
        ),
        (  # the pool hashing a tall frame's columns at once
            "import numpy as np, pandas as pd\n"
            "frame = pd.DataFrame({'a': np.arange(1 << 18), 'b': np.arange(1 << 18) * 0.5})\n"
            "joblite.hash(frame)\n"
            "import joblite.hashing._parallel as hp",
            "hp._lock",
            "assert joblite.hash(frame) == expected",
        ),
        (  # a local store's own lock (its access log), taken by a cache hit
            "import tempfile\n"
            "mem = joblite.Memory(tempfile.mkdtemp(), verbose=0)\n"
            "double = mem.cache(lambda x: 2 * x)\n"
            "assert double(21) == 42",
            "mem.store_backend._lock",
            "assert double(21) == 42; mem.store_backend.flush()",  # the hit's access record
        ),
    ],
    ids=["hash registry", "column hashing pool", "local store"],
)
def test_a_lock_of_the_cache_held_at_the_fork_does_not_hang_the_child(setup, lock, work):
    out = _run(
        setup
        + "\nexpected = None\n"
        + ("expected = joblite.hash(frame)\n" if "frame" in setup else "")
        + textwrap.dedent(
            f"""
            release = hold({lock})

            def work():
                {work}

            print("child", in_child(work))
            release.set()
            """
        )
    )
    assert out == ["child", "0"]
