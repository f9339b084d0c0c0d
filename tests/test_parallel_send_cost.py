"""Auto-batching amortizes a backend's fixed cost of sending a batch (``send_seconds``).

A backend reports, per batch, the seconds its tasks computed (``future.duration``) and the
seconds sending the batch cost regardless of its size (``future.send_seconds``: large
shared arrays compared with, or written to, their files). The figures here are reported by
the test's backend, not measured, so the batch sizes they lead to are exact.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from joblite import Parallel, delayed, parallel_config, register_parallel_backend
from joblite.backends.threads import ThreadingBackend

TASK_SECONDS = 0.001  # what every task "computed", as the backend reports it


class ReportingBackend(ThreadingBackend):
    send_seconds: float = 0.0

    def submit(self, batch, **kwargs):
        future = super().submit(batch, **kwargs)
        future.n_tasks = len(batch)
        return future

    def retrieve(self, future):
        results = super().retrieve(future)
        future.duration = TASK_SECONDS * future.n_tasks
        if self.send_seconds:
            future.send_seconds = self.send_seconds
        return results


def batch_sizes(send_seconds: float) -> list[int]:
    class Backend(ReportingBackend):
        pass

    Backend.send_seconds = send_seconds
    register_parallel_backend("reporting", Backend)
    events: list = []
    with parallel_config(backend="reporting", n_jobs=2):
        out = Parallel(callback=events.append)(delayed(abs)(-i) for i in range(5000))
    assert out == list(range(5000))
    return [len(e.indices) for e in events]


def test_batches_follow_the_target_without_send_cost():
    sizes = batch_sizes(0.0)
    # 50 ms of work per batch at 1 ms a task, once the task time is known
    assert max(sizes) == 50


@pytest.mark.parametrize("send_seconds", [0.01, 0.05])
def test_batches_grow_until_sending_is_a_tenth_of_their_work(send_seconds):
    sizes = batch_sizes(send_seconds)
    expected = round(send_seconds / (0.1 * TASK_SECONDS))  # 100, 500 tasks
    assert max(sizes) == expected
    assert sum(sizes) == 5000


def test_process_backends_report_the_cost_of_their_shared_arrays(tmp_path):
    from joblite.backends import BatchedCalls, make_backend

    big = np.full(2**18, 2.0)  # 2 MiB: above max_nbytes, written to a shared file
    backend = make_backend("loky")
    backend.configure(n_jobs=2, temp_folder=str(tmp_path), max_nbytes="1M")
    try:
        first = backend.submit(BatchedCalls([(np.sum, (big,), {})]))
        assert first.send_seconds > 0  # written once
        small = backend.submit(BatchedCalls([(abs, (-1,), {})]))
        assert small.send_seconds == 0.0  # nothing shared: nothing to amortize
        assert backend.retrieve(first) == [big.sum()]
        assert backend.retrieve(small) == [1]
    finally:
        backend.terminate()


def test_results_stay_exact_when_shared_arrays_change_between_tasks():
    arrays = [np.zeros(2**18) for _ in range(3)]  # 2 MiB each, compared before reuse

    def tasks():
        for i in range(90):
            arrays[i % 3][:] = i  # changed after earlier tasks were sent
            yield delayed(np.max)(arrays[i % 3])

    out = Parallel(n_jobs=2, backend="loky")(tasks())
    # A task sees its array as it was at a moment after the task was created (as with
    # joblib, which pickles a batch when sending it): the value given then or a later one
    # of the same array, never an earlier one.
    assert all(v >= i and (v - i) % 3 == 0 for i, v in enumerate(out)), out


def _stamp(array, i):
    """Which array, which task, and when it ran (monotonic ns) in which process."""
    return int(array[0]), i, time.monotonic_ns(), os.getpid()


def _stamp_or_fail(array, i):
    if i == 13:
        raise ValueError("task 13")
    return int(array[0]), i


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_tasks_sharing_arrays_run_grouped_and_results_keep_their_order(backend):
    """In a process worker, the calls of one batch that share a large array run one after
    another (cache locality); results still come back in the given order."""
    arrays = [np.full(200_000, k, dtype=np.float64) for k in range(4)]
    n = 64
    with Parallel(n_jobs=2, backend=backend, batch_size=16, max_nbytes="1M") as parallel:
        out = parallel(delayed(_stamp)(arrays[i % 4], i) for i in range(n))
    assert [(a, i) for a, i, _, _ in out] == [(i % 4, i) for i in range(n)]
    for b in range(n // 16):
        batch = out[16 * b : 16 * (b + 1)]
        assert len({pid for *_, pid in batch}) == 1  # one batch, one worker
        ran = [a for a, _, _, _ in sorted(batch, key=lambda r: r[2])]
        # each array's calls ran back to back, groups in order of first appearance
        first = [batch[k][0] for k in range(4)]
        assert ran == [a for a in first for _ in range(4)], ran


def test_grouped_batches_keep_error_semantics():
    arrays = [np.full(200_000, k, dtype=np.float64) for k in range(2)]
    with pytest.raises(ValueError, match="task 13"):
        Parallel(n_jobs=2, backend="loky", batch_size=8, max_nbytes="1M")(
            delayed(_stamp_or_fail)(arrays[i % 2], i) for i in range(32)
        )
    out = Parallel(n_jobs=2, backend="loky", batch_size=8, max_nbytes="1M", return_exceptions=True)(
        delayed(_stamp_or_fail)(arrays[i % 2], i) for i in range(32)
    )
    assert isinstance(out[13], ValueError)
    assert [r for k, r in enumerate(out) if k != 13] == [(i % 2, i) for i in range(32) if i != 13]


def _nap(array, i):
    time.sleep(0.002)
    return i


def test_tail_batches_stay_whole_when_tasks_share_arrays():
    """Auto batches shrink at the end of the input so that workers finish together, except
    when they share several large arrays: a batch then costs a read of every array from
    memory (its calls run grouped by array), so the tail stops shrinking at a full batch."""

    def sizes(shared: bool) -> list:
        arrays = [np.full(200_000 if shared else 10, k, dtype=np.float64) for k in range(4)]
        seen: list = []
        with Parallel(n_jobs=2, backend="loky", max_nbytes="1M") as parallel:
            parallel(delayed(_nap)(arrays[i % 4], i) for i in range(40))  # learn the cost
            parallel.callback = lambda event: seen.append(len(event.indices))
            out = parallel(delayed(_nap)(arrays[i % 4], i) for i in range(300))
        assert out == list(range(300))
        return seen

    unshared = sizes(shared=False)
    shared = sizes(shared=True)
    # guided self-scheduling: the last batches of plain tasks get down to a few tasks each
    assert sum(n < 8 for n in unshared) >= 2, unshared
    # with shared arrays only the very last batch (what is left) may be that small
    assert sum(n < 8 for n in shared) <= 1, shared
