"""The core thread limit: the Rust core's own threads (``joblite-core-<i>``) are counted in
``/proc/self/task`` after real hashing and compression, here and in process workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import joblite
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)"
)

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def core_threads() -> int:
    """Live threads of the Rust core in this process."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                count += comm.read().startswith("joblite-core")
        except OSError:  # the thread ended meanwhile
            pass
    return count


def work_then_count(_: int = 0) -> tuple[int, int]:
    """Hash and compress 32 MiB on the core threads; their count and the limit."""
    import tempfile

    data = np.random.default_rng(0).random(2**22)
    joblite.hash(data)
    with tempfile.TemporaryDirectory() as folder:
        joblite.dump(data, os.path.join(folder, "a.jl"), compress=True)
    return core_threads(), joblite.get_thread_limit()


COUNT_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import joblite
    from test_thread_limits import core_threads, work_then_count
    out = {{"default": work_then_count()}}
    with joblite.thread_limits(5):
        out["inside"] = work_then_count()
    work_then_count()
    deadline = time.monotonic() + 10
    while core_threads() != joblite.get_thread_limit() and time.monotonic() < deadline:
        time.sleep(0.05)  # the 5 threads of the previous limit exit once idle
    out["after"] = (core_threads(), joblite.get_thread_limit())
    print(json.dumps(out))
    """
)


def run_fresh(env_changes: dict[str, str]) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("JOBLITE_NUM_THREADS", "OMP_NUM_THREADS")
    }
    env.update(env_changes)
    code = COUNT_IN_FRESH_PROCESS.format(tests=os.path.dirname(__file__))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return {k: tuple(v) for k, v in json.loads(out.stdout).items()}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, CPUS),
        ({"JOBLITE_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "1"}, 1),  # set by joblib / loky / schedulers in workers
        ({"JOBLITE_NUM_THREADS": "2", "OMP_NUM_THREADS": "7"}, 2),  # ours wins
        ({"JOBLITE_NUM_THREADS": "zero", "OMP_NUM_THREADS": "0"}, CPUS),  # invalid: ignored
    ],
)
def test_the_environment_sets_the_number_of_core_threads(env, expected):
    out = run_fresh(env)
    assert out["default"] == (expected, expected)
    # thread_limits overrides it, then gives it back, and the pool follows both ways
    assert out["inside"] == (5, 5)
    assert out["after"] == (expected, expected)


def test_thread_limits_restores_nested_limits_in_order():
    default = joblite.get_thread_limit()
    with joblite.thread_limits(3) as outer:
        assert joblite.get_thread_limit() == 3
        with joblite.thread_limits(1):
            assert joblite.get_thread_limit() == 1
        assert joblite.get_thread_limit() == 3
        with joblite.thread_limits(None):  # back to the default inside
            assert joblite.get_thread_limit() == default
        assert joblite.get_thread_limit() == 3
    assert joblite.get_thread_limit() == default
    outer.restore()  # twice: no effect
    assert joblite.get_thread_limit() == default
    limit = joblite.thread_limits(2)  # without with: until restore()
    try:
        assert joblite.get_thread_limit() == 2
    finally:
        limit.restore()
    assert joblite.get_thread_limit() == default


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_thread_limits_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="limit must be an int >= 1 or None"):
        joblite.thread_limits(bad)
    assert joblite.get_thread_limit() >= 1


def test_results_do_not_depend_on_the_limit(tmp_path):
    data = np.random.default_rng(1).random(2**21)
    with joblite.thread_limits(1):
        one = joblite.hash(data)
        joblite.dump(data, tmp_path / "one.jl", compress=True)
    with joblite.thread_limits(4):
        four = joblite.hash(data)
        back = joblite.load(tmp_path / "one.jl")
    assert one == four
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
@pytest.mark.parametrize("n_jobs", [2, 4])
def test_process_workers_cap_core_threads_to_their_share(backend, n_jobs):
    share = max(CPUS // n_jobs, 1)
    with joblite.thread_limits(6):  # the caller's own limit is not what workers get
        seen = joblite.Parallel(n_jobs=n_jobs, backend=backend)(
            joblite.delayed(work_then_count)(i) for i in range(2 * n_jobs)
        )
    assert set(seen) == {(share, share)}, seen


def test_inner_max_num_threads_sets_the_workers_core_threads():
    with joblite.parallel_config(backend="loky", inner_max_num_threads=3):
        seen = joblite.Parallel(n_jobs=2)(joblite.delayed(work_then_count)(i) for i in range(4))
    assert set(seen) == {(3, 3)}, seen


def test_joblibs_workers_cap_joblites_core_threads_too():
    joblib = pytest.importorskip("joblib")
    share = max(CPUS // 2, 1)
    seen = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(work_then_count)(i) for i in range(4)
    )
    assert set(seen) == {(share, share)}, seen


@pytest.mark.slow
def test_sixteen_workers_never_start_sixteen_times_all_cores():
    # Forked workers start fast; each reports its own core threads after real work.
    share = max(CPUS // 16, 1)
    seen = joblite.Parallel(n_jobs=16, backend="multiprocessing", batch_size=1)(
        joblite.delayed(work_then_count)(i) for i in range(32)
    )
    assert set(seen) == {(share, share)}, seen
    assert 16 * share <= max(CPUS, 16)  # in all: one share of the cores per worker


def test_the_environment_is_read_at_import_not_when_a_library_changes_it_later():
    """dask's LocalCluster sets OMP_NUM_THREADS=1 in the process that starts it (for its
    workers); read lazily, that made joblite's core single-threaded in the caller for the
    rest of its life (persistence benchmarks after dask's ran at half speed). Like BLAS, the
    limit comes from the environment the process was started with."""
    code = (
        "import os, joblite; os.environ['OMP_NUM_THREADS'] = '1'; "
        "os.environ['JOBLITE_NUM_THREADS'] = '1'; print(joblite.get_thread_limit())"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "JOBLITE_NUM_THREADS")
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert int(out.stdout) == len(os.sched_getaffinity(0)), out.stderr
    env["OMP_NUM_THREADS"] = "1"  # set before the process starts: honoured
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert int(out.stdout) == 1, out.stderr
