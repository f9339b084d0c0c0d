"""The Rust thread pool of ``joblite._core`` used directly."""

from __future__ import annotations

import threading

import pytest
from joblite._core import TaskPool


def test_runs_every_callable_on_pool_threads():
    pool = TaskPool(2, name="test-pool")
    done = threading.Semaphore(0)
    names = []

    def job():
        names.append(threading.current_thread().name)
        done.release()

    assert pool.n_threads == 2
    assert pool.submit_many([job] * 50) == 50
    pool.submit(job)
    for _ in range(51):
        assert done.acquire(timeout=10)
    assert len(names) == 51
    assert threading.current_thread().name not in names
    pool.shutdown()
    assert pool.closed


def test_cancel_withdraws_only_queued_jobs_of_the_group():
    pool = TaskPool(1)
    started, release = threading.Event(), threading.Event()
    ran = []
    pool.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    for group in (1, 2, 1, 2, 1):
        pool.submit(lambda g=group: ran.append(g), group)
    assert pool.pending == 5
    assert pool.cancel(1) == 3
    assert pool.pending == 2
    release.set()
    pool.shutdown(wait=True)
    assert ran == [] or set(ran) == {2}


def test_shutdown_refuses_new_work_and_bad_sizes_are_named():
    pool = TaskPool(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    with pytest.raises(ValueError, match="n_threads"):
        TaskPool(0)
    with pytest.raises(OverflowError):
        TaskPool(-1)


def test_an_error_in_a_job_is_reported_not_lost():
    pool = TaskPool(1)
    seen = []
    old_hook = threading.excepthook
    import sys

    old_unraisable = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(info.exc_value)
    try:
        done = threading.Event()
        pool.submit(lambda: 1 / 0)
        pool.submit(done.set)
        assert done.wait(10)
        pool.shutdown()
    finally:
        sys.unraisablehook = old_unraisable
        threading.excepthook = old_hook
    assert len(seen) == 1 and isinstance(seen[0], ZeroDivisionError)
