"""Thread workers retired by an aborted ``backend="threading"`` call: they finish what they
run, then end (a program aborting many calls does not pile up idle threads), and the calls
that shared them keep getting right results."""

from __future__ import annotations

import threading
import time

import pytest
from joblite import Parallel, delayed


def _joblite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("joblite-thread")]


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class _Stuck:
    """How many tasks are waiting on ``release`` right now (each on a live thread)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.now = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            self.now += 1
        try:
            self.release.wait(60)
        finally:
            with self._lock:
                self.now -= 1


def _abort_one_call(how: str, n_jobs: int, stuck: _Stuck) -> None:
    """A call whose every worker is stuck on ``stuck.release`` when it is aborted."""

    def task(i):
        if i != n_jobs - 1:
            stuck.wait()
        elif how == "error":
            raise ValueError("task failed")
        return i

    calls = (delayed(task)(i) for i in range(2 * n_jobs))
    if how == "timeout":
        with pytest.raises(TimeoutError):
            Parallel(n_jobs=n_jobs, backend="threading", timeout=0.3)(calls)
    elif how == "error":
        with pytest.raises(ValueError, match="task failed"):
            Parallel(n_jobs=n_jobs, backend="threading")(calls)
    else:
        gen = Parallel(n_jobs=n_jobs, backend="threading", return_as="generator_unordered")
        for value in gen(calls):
            assert value == n_jobs - 1
            break


@pytest.mark.parametrize("how", ["error", "timeout", "break"])
def test_retired_threads_end_once_their_stuck_tasks_finish(how):
    n_jobs = 3
    before = len(_joblite_threads())
    stuck = _Stuck()
    rounds = 5
    try:
        for _ in range(rounds):
            _abort_one_call(how, n_jobs, stuck)
            # every call got fresh workers, and is right
            again = Parallel(n_jobs=n_jobs, backend="threading")(
                delayed(abs)(-i) for i in range(20)
            )
            assert again == list(range(20))
        # the workers stuck in the aborted calls are all still running their tasks (threads
        # cannot be killed; counted by the tasks themselves: idle threads of pools retired by
        # earlier tests may end meanwhile, so a count of threads could not tell)
        assert stuck.now >= (rounds - 1) * (n_jobs - 1)
    finally:
        stuck.release.set()
    # Once their tasks return they end, without another call: only the pool in service
    # (n_jobs threads) is left above the count before the test.
    assert _wait_for(lambda: len(_joblite_threads()) <= before + n_jobs), [
        t.name for t in _joblite_threads()
    ]
    assert Parallel(n_jobs=n_jobs, backend="threading")(delayed(pow)(i, 2) for i in range(50)) == [
        i * i for i in range(50)
    ]
    assert len(_joblite_threads()) <= before + n_jobs


def test_a_with_block_aborted_many_times_keeps_few_threads():
    n_jobs = 2
    before = len(_joblite_threads())
    release = threading.Event()
    try:
        with Parallel(n_jobs=n_jobs, backend="threading", timeout=0.3) as parallel:
            for _ in range(6):

                def task(i):
                    if i < n_jobs:
                        release.wait(0.6)  # outlives the timeout, then returns
                    return i

                with pytest.raises(TimeoutError):
                    parallel(delayed(task)(i) for i in range(4))
                assert parallel(delayed(abs)(-i) for i in range(10)) == list(range(10))
    finally:
        release.set()
    assert _wait_for(lambda: len(_joblite_threads()) <= before + n_jobs), [
        t.name for t in _joblite_threads()
    ]


def test_a_call_sharing_a_retired_pool_gets_all_its_results():
    # Two calls with one n_jobs share the workers; one of them is aborted while the other
    # still has batches queued and more to dispatch: the queued ones still run on the
    # retired workers, the later ones go to fresh workers, and every result is right.
    n_jobs = 2
    release = threading.Event()
    results: list = []
    errors: list = []

    def slow(i):
        time.sleep(0.005)
        return i * 3

    def other_call():
        try:
            results.extend(
                Parallel(n_jobs=n_jobs, backend="threading", batch_size=1, pre_dispatch=4)(
                    delayed(slow)(i) for i in range(300)
                )
            )
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    def task(i):
        if i == 0:
            release.wait(30)
        elif i == 1:
            time.sleep(0.05)
            raise ValueError("task failed")
        return i

    runner = threading.Thread(target=other_call)
    runner.start()
    try:
        time.sleep(0.1)  # the other call is under way
        for _ in range(3):
            with pytest.raises(ValueError, match="task failed"):
                Parallel(n_jobs=n_jobs, backend="threading", batch_size=1)(
                    delayed(task)(i) for i in range(4)
                )
    finally:
        release.set()
    runner.join(60)
    assert not runner.is_alive()
    assert errors == []
    assert results == [i * 3 for i in range(300)]


def test_retiring_never_waits_for_the_running_tasks():
    n_jobs = 2
    stuck = _Stuck()
    try:
        start = time.monotonic()
        _abort_one_call("error", n_jobs, stuck)
        assert Parallel(n_jobs=n_jobs, backend="threading")(
            delayed(abs)(-i) for i in range(4)
        ) == list(range(4))
        assert time.monotonic() - start < 20  # the stuck tasks wait up to 60 s
    finally:
        stuck.release.set()
