"""Behaviour of Parallel / delayed, the same suite run on every backend."""

from __future__ import annotations

import math
import os
import threading
import time
import traceback

import joblite
import numpy as np
import pytest
from joblite import Parallel, delayed

ALL_BACKENDS = ["sequential", "threading", "loky", "multiprocessing"]
POOL_BACKENDS = ["threading", "loky", "multiprocessing"]
PROCESS_BACKENDS = ["loky", "multiprocessing"]


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def slow_square(x, delay=0.01):
    time.sleep(delay)
    return x * x


def worker_identity(_):
    return os.getpid(), threading.get_ident()


def inner_call(x):
    inner = Parallel(n_jobs=-1)
    values = inner(delayed(square)(x + i) for i in range(3))
    return values, inner.n_jobs


def full_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("batch_size", ["auto", 1, 7])
def test_results_in_input_order(backend, batch_size):
    expected = [i * i for i in range(100)]
    parallel = Parallel(n_jobs=2, backend=backend, batch_size=batch_size)
    assert parallel(delayed(square)(i) for i in range(100)) == expected
    assert parallel([delayed(square)(i) for i in range(100)]) == expected
    assert parallel(delayed(square)(x=i) for i in range(5)) == expected[:5]
    assert parallel([]) == []


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_generators(backend):
    ordered = Parallel(n_jobs=2, backend=backend, return_as="generator")
    out = ordered(delayed(slow_square)(i, 0.01 * (i % 3)) for i in range(20))
    assert not isinstance(out, list)
    assert list(out) == [i * i for i in range(20)]
    unordered = Parallel(n_jobs=2, backend=backend, return_as="generator_unordered")
    values = list(unordered(delayed(slow_square)(i, 0.01 * (i % 3)) for i in range(20)))
    assert sorted(values) == [i * i for i in range(20)]


def test_unordered_generator_yields_fast_tasks_first():
    parallel = Parallel(n_jobs=2, backend="threading", return_as="generator_unordered")
    delays = [0.5, 0.0, 0.0, 0.0]
    out = list(parallel(delayed(slow_square)(i, d) for i, d in enumerate(delays)))
    assert out[-1] == 0  # the slow first task finishes last
    assert sorted(out) == [0, 1, 4, 9]


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_generator_back_pressure(backend):
    started = []
    lock = threading.Lock()

    def task(i):
        with lock:
            started.append(i)
        return i

    parallel = Parallel(
        n_jobs=2, backend=backend, return_as="generator", pre_dispatch=4, batch_size=1
    )
    out = parallel(delayed(task)(i) for i in range(1000))
    consumed = 0
    for value in out:
        assert value == consumed
        consumed += 1
        time.sleep(0.0005)
        with lock:
            # never more than pre_dispatch batches beyond what was consumed
            assert len(started) <= consumed + 4
        if consumed == 50:
            break
    out.close()
    time.sleep(0.05)
    assert len(started) <= 50 + 4


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_first_error_is_raised_with_worker_traceback(backend):
    parallel = Parallel(n_jobs=2, backend=backend)
    with pytest.raises(ValueError, match="bad value 13") as info:
        parallel(delayed(fail_on)(i, 13) for i in range(40))
    text = full_traceback(info.value)
    assert "fail_on" in text
    assert 'raise ValueError(f"bad value {x}")' in text
    # the next call on the same object works
    assert parallel(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def record_and_maybe_fail(i, folder, bad):
    if i == bad:
        raise KeyError(i)
    time.sleep(0.02)
    with open(os.path.join(folder, str(i)), "w"):
        pass
    return i


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_error_cancels_remaining_tasks(backend, tmp_path):
    n = 300
    with pytest.raises(KeyError):
        Parallel(n_jobs=2, backend=backend, batch_size=1)(
            delayed(record_and_maybe_fail)(i, str(tmp_path), 3) for i in range(n)
        )
    time.sleep(0.3)  # anything still running would have written more files by now
    assert len(os.listdir(tmp_path)) < 30


def add_all(*values, start=0):
    return start + sum(values)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_batches_of_every_call_shape(backend):
    # Batches travel in a compact form when they allow it (one function, no keyword
    # arguments, one argument per call): each shape, and batches mixing them, must
    # give the same results.
    shapes = {
        "one argument": [delayed(add_all)(i) for i in range(20)],
        "two arguments": [delayed(add_all)(i, 1) for i in range(20)],
        "no argument": [delayed(add_all)() for _ in range(20)],
        "tuple argument": [delayed(len)((i, i)) for i in range(20)],
        "mixed counts": [delayed(add_all)(*range(i % 3)) for i in range(20)],
        "keywords": [delayed(add_all)(i, start=i) for i in range(20)],
        "mixed functions": [delayed(add_all if i % 2 else square)(i) for i in range(20)],
    }
    parallel = Parallel(n_jobs=2, backend=backend, batch_size=7)
    for name, tasks in shapes.items():
        expected = [f(*args, **kwargs) for f, args, kwargs in tasks]
        assert parallel(tasks) == expected, name
    tasks = [delayed(fail_on)(i, 4) if i % 2 else delayed(fail_on)(i) for i in range(10)]
    out = Parallel(n_jobs=2, backend=backend, batch_size=5, return_exceptions=True)(tasks)
    assert [type(x) for x in out] == [TypeError if i % 2 == 0 else int for i in range(10)]
    out = Parallel(n_jobs=2, backend=backend, batch_size=5, return_exceptions=True)(
        delayed(math.sqrt)(i) for i in (4, -1, 9)
    )
    assert out[0] == 2.0 and isinstance(out[1], ValueError) and out[2] == 3.0


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_return_exceptions(backend):
    out = Parallel(n_jobs=2, backend=backend, return_exceptions=True)(
        delayed(fail_on)(i, bad) for i in range(6) for bad in (4,)
    )
    assert out[:4] == [0, 1, 2, 3] and out[5] == 5
    assert isinstance(out[4], ValueError) and "bad value 4" in str(out[4])
    assert "fail_on" in full_traceback(out[4])


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_timeout(backend):
    # start the workers and import this module in them before the clock matters
    assert Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(2)) == [0, 1]
    parallel = Parallel(n_jobs=2, backend=backend, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        parallel(delayed(slow_square)(i, 3.0 if i == 1 else 0.0) for i in range(4))
    assert time.monotonic() - start < 2.5  # raised long before the slow task ends
    # tasks that keep within the timeout are fine (after the fresh workers are warm)
    Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(2))
    assert parallel(delayed(slow_square)(i, 0.01) for i in range(4)) == [0, 1, 4, 9]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_nested_calls_do_not_oversubscribe(backend):
    out = Parallel(n_jobs=2, backend=backend)(delayed(inner_call)(i) for i in range(4))
    assert [values for values, _ in out] == [[(i + k) ** 2 for k in range(3)] for i in range(4)]
    cap = max(joblite.cpu_count() // 2, 1) if backend != "sequential" else joblite.cpu_count()
    assert all(1 <= n_jobs <= cap for _, n_jobs in out)


def test_second_level_nesting_is_sequential():
    def leaf(_):
        return threading.get_ident()

    def middle(_):
        # two levels down: runs in this very thread, whatever n_jobs says
        return threading.get_ident(), Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))

    def top(_):
        return Parallel(n_jobs=2)(delayed(middle)(i) for i in range(2))

    out = Parallel(n_jobs=2, backend="threading")(delayed(top)(i) for i in range(2))
    for pairs in out:
        for ident, leaves in pairs:
            assert leaves == [ident] * 4


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_context_manager_reuses_workers(backend):
    with Parallel(n_jobs=2, backend=backend) as parallel:
        first = set(parallel(delayed(worker_identity)(i) for i in range(20)))
        second = set(parallel(delayed(worker_identity)(i) for i in range(20)))
    assert len(first | second) <= 2


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_lambdas_and_closures(backend):
    offset = 10

    def add_offset(x):
        return x + offset

    parallel = Parallel(n_jobs=2, backend=backend)
    assert parallel(delayed(lambda x: x * 3)(i) for i in range(5)) == [0, 3, 6, 9, 12]
    assert parallel(delayed(add_offset)(i) for i in range(3)) == [10, 11, 12]


def read_array(a, write):
    if write:
        a[0] = -1.0
    return type(a).__name__, float(a[1:].sum()), float(a[0]), a.flags.writeable


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
@pytest.mark.parametrize("mmap_mode", ["r", "c", None])
def test_large_array_arguments_through_shared_memory(backend, mmap_mode, tmp_path):
    a = np.arange(300_000, dtype=np.float64)  # 2.4 MB > max_nbytes
    parallel = Parallel(
        n_jobs=2, backend=backend, max_nbytes="1M", mmap_mode=mmap_mode, temp_folder=tmp_path
    )
    write = mmap_mode != "r"
    out = parallel(delayed(read_array)(a, write) for _ in range(6))
    expected_sum = float(a[1:].sum())
    for kind, total, first, writeable in out:
        assert total == expected_sum
        if mmap_mode is None:
            assert kind == "ndarray" and writeable and first == -1.0
        else:
            assert kind == "memmap"
            assert writeable == write
            assert first == (-1.0 if write else 0.0)
    assert a[0] == 0.0  # the caller's array is never written
    assert os.listdir(tmp_path) == []  # the shared files are gone


def element(a, index):
    return float(a[index])


def _shared_files(folder) -> dict[str, int]:
    return {
        name: os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    }


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_shared_memory_of_a_block_does_not_grow_with_each_call(backend, tmp_path):
    # joblib #1351: in a `with Parallel(...)` block, each call's large arguments stayed
    # in shared memory until the block ended (38 MB a call in the report).
    with Parallel(n_jobs=2, backend=backend, max_nbytes="1M", temp_folder=tmp_path) as p:
        for i in range(5):
            a = np.full(500_000, float(i))  # 4 MB, a new array each call
            assert p(delayed(element)(a, 7) for _ in range(4)) == [float(i)] * 4
            files = _shared_files(tmp_path)
            # at most this call's array (kept: the next call may send it again)
            assert len(files) <= 1 and sum(files.values()) < 5_000_000, files
        del a
        b = np.ones(500_000)
        assert p(delayed(element)(b, 0) for _ in range(2)) == [1.0, 1.0]
        (kept,) = _shared_files(tmp_path)  # the last `a` is gone: only b's file
        assert p(delayed(element)(b, 1) for _ in range(2)) == [1.0, 1.0]
        assert list(_shared_files(tmp_path)) == [kept]  # reused, not written again
        del b
        assert p(delayed(element)(np.zeros(10), 0) for _ in range(2)) == [0.0, 0.0]
        assert _shared_files(tmp_path) == {}  # b no longer exists: its file went with it
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_a_shared_array_changed_between_tasks_is_never_stale(backend, tmp_path):
    # The same array object, changed in one element between dispatches: every task must
    # see the content it had when its task was dispatched, never an older file.
    a = np.zeros(300_000)

    def tasks():
        for i in range(6):
            a[12_345] = i
            yield delayed(element)(a, 12_345)

    parallel = Parallel(n_jobs=2, backend=backend, batch_size=1, temp_folder=tmp_path)
    assert parallel(tasks()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    with Parallel(n_jobs=2, backend=backend, temp_folder=tmp_path) as parallel:
        assert parallel(delayed(element)(a, 12_345) for _ in range(4)) == [5.0] * 4
        files = set(os.listdir(os.path.join(tmp_path, os.listdir(tmp_path)[0])))
        assert len(files) == 1  # one file for the four tasks
        a[12_345] = -1.0  # between two calls of one block
        assert parallel([delayed(element)(a, 12_345) for _ in range(4)]) == [-1.0] * 4
        a[12_345] = np.nan  # same value for ==, different bytes: compared bitwise
        out = parallel(delayed(element)(a, 12_345) for _ in range(2))
        assert all(math.isnan(x) for x in out)
        files_before = set(os.listdir(os.path.join(tmp_path, os.listdir(tmp_path)[0])))
        assert parallel(delayed(element)(a, 0) for _ in range(2)) == [0.0, 0.0]
        files_after = set(os.listdir(os.path.join(tmp_path, os.listdir(tmp_path)[0])))
        # unchanged content was not written again, and the files of the older contents
        # were deleted when their call ended
        assert files_after == files_before and len(files_after) == 1
    assert os.listdir(tmp_path) == []  # the block's files are gone


def swap_first(a, value):
    old = float(a[0])
    a[0] = value
    return old


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_read_write_mapping_shares_writes_between_the_tasks_of_a_call(backend, tmp_path):
    # "r+": tasks write into the shared file and later tasks of the call see it; the
    # caller's array, unchanged, keeps being sent as that same file.
    a = np.zeros(300_000)
    parallel = Parallel(
        n_jobs=2, backend=backend, mmap_mode="r+", batch_size=1, pre_dispatch=1,
        temp_folder=tmp_path,
    )  # fmt: skip
    assert parallel(delayed(swap_first)(a, i + 1) for i in range(4)) == [0.0, 1.0, 2.0, 3.0]
    assert a[0] == 0.0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_read_only_mapping_refuses_writes(backend, tmp_path):
    a = np.ones(200_000)
    with pytest.raises(ValueError, match="read-only"):
        Parallel(n_jobs=2, backend=backend, temp_folder=tmp_path)(
            delayed(read_array)(a, True) for _ in range(2)
        )
    assert os.listdir(tmp_path) == []


def thread_limits(_):
    from threadpoolctl import threadpool_info

    return os.environ.get("OMP_NUM_THREADS"), [p["num_threads"] for p in threadpool_info()]


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_process_workers_cap_blas_threads(backend):
    expected = max(joblite.cpu_count() // 2, 1)
    out = Parallel(n_jobs=2, backend=backend)(delayed(thread_limits)(i) for i in range(2))
    for env_value, counts in out:
        assert env_value == str(expected)
        assert all(n <= expected for n in counts)
    if backend == "multiprocessing":  # as joblib: only loky takes inner_max_num_threads
        with pytest.raises(AssertionError, match="does not accept setting the inner_max"):
            joblite.parallel_config(backend=backend, inner_max_num_threads=1)
        return
    with joblite.parallel_config(backend=backend, inner_max_num_threads=1):
        out = Parallel(n_jobs=2)(delayed(thread_limits)(i) for i in range(2))
    assert all(env_value == "1" and max(counts, default=1) == 1 for env_value, counts in out)
    with pytest.raises(ValueError, match="only supported when backend is not None"):
        joblite.parallel_config(inner_max_num_threads=1)


def make_array(i, n):
    return np.full(n, float(i))


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_large_results_come_back_through_shared_memory(backend, tmp_path):
    n = 300_000
    out = Parallel(n_jobs=2, backend=backend, temp_folder=tmp_path)(
        delayed(make_array)(i, n) for i in range(5)
    )
    for i, array in enumerate(out):
        assert type(array) is np.ndarray and array.shape == (n,)
        assert array[0] == i and array[-1] == i
        array[0] = 99  # results are the caller's to modify
    small = Parallel(n_jobs=2, backend=backend, temp_folder=tmp_path)(
        delayed(make_array)(i, 10) for i in range(3)
    )
    assert [float(x.sum()) for x in small] == [0.0, 10.0, 20.0]
    assert os.listdir(tmp_path) == []


def crash(kind, x):
    import signal

    if x == 2:
        if kind == "exit":
            os._exit(3)
        if kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "segfault":
            import ctypes

            ctypes.string_at(0)
    time.sleep(0.05)
    return x


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
@pytest.mark.parametrize(
    "kind, words", [("exit", "status 3"), ("sigkill", "SIGKILL"), ("segfault", "SIGSEGV")]
)
def test_worker_crash_is_reported_and_next_call_works(backend, kind, words):
    import faulthandler

    was_enabled = faulthandler.is_enabled()
    faulthandler.disable()  # keep the worker's segfault report out of the test output
    try:
        with pytest.raises(joblite.WorkerCrashedError) as info:
            Parallel(n_jobs=2, backend=backend)(delayed(crash)(kind, i) for i in range(8))
    finally:
        if was_enabled:
            faulthandler.enable()
    message = str(info.value)
    assert backend in message
    if backend == "loky" or kind != "exit":
        assert words in message
    assert Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(5)) == [
        0,
        1,
        4,
        9,
        16,
    ]


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_worker_crash_is_caught_as_lokys_terminated_worker_error(backend):
    # joblib users write `except TerminatedWorkerError` (loky's, re-exported by joblib)
    from loky.process_executor import TerminatedWorkerError

    caught = None
    try:
        Parallel(n_jobs=2, backend=backend)(delayed(crash)("sigkill", i) for i in range(8))
    except TerminatedWorkerError as error:
        caught = error
    assert isinstance(caught, joblite.WorkerCrashedError)
    assert isinstance(caught, RuntimeError)
    assert "SIGKILL" in str(caught)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_callback_progress_and_verbose(backend, capsys):
    events = []
    out = Parallel(n_jobs=2, backend=backend, callback=events.append, verbose=10)(
        delayed(square)(i) for i in range(50)
    )
    assert out == [i * i for i in range(50)]
    assert all(isinstance(event, joblite.parallel.ProgressEvent) for event in events)
    covered = sorted(i for event in events for i in event.indices)
    assert covered == list(range(50))
    assert events[-1].n_completed == 50
    assert [e.n_completed for e in events] == sorted(e.n_completed for e in events)
    err = capsys.readouterr().err
    n_jobs = 1 if backend == "sequential" else 2
    assert f"[Parallel(n_jobs={n_jobs})]: Using backend" in err
    assert f"[Parallel(n_jobs={n_jobs})]: Done 50 out of 50 | elapsed:" in err
    assert err.rstrip().endswith("finished")


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_progress_bar(with_tqdm, capsys, monkeypatch):
    if not with_tqdm:
        monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    out = Parallel(n_jobs=2, backend="threading", progress=True)(
        delayed(square)(i) for i in range(40)
    )
    assert out == [i * i for i in range(40)]
    err = capsys.readouterr().err
    assert "40/40" in err
    if not with_tqdm:
        assert "Parallel: 40/40 (100%)" in err


def test_auto_batching_groups_tiny_tasks():
    events = []
    Parallel(n_jobs=2, backend="threading", callback=events.append)(
        delayed(math.sqrt)(i) for i in range(20_000)
    )
    sizes = [len(e.indices) for e in events]
    assert sizes[0] == 1 and max(sizes) > 100
    events.clear()
    Parallel(n_jobs=2, backend="threading", batch_size=3, callback=events.append)(
        delayed(math.sqrt)(i) for i in range(10)
    )
    assert sorted(len(e.indices) for e in events) == [1, 3, 3, 3]


@pytest.mark.parametrize("return_as", ["list", "generator"])
def test_auto_batches_shrink_at_the_end_of_a_generator_input(return_as):
    # The length of a generator is unknown: reading a few batches ahead finds its end in
    # time to split the tail, so no worker is left running one last big batch alone.
    events = []
    parallel = Parallel(n_jobs=2, backend="threading", return_as=return_as, callback=events.append)
    list(parallel(delayed(slow_square)(i, 0.001) for i in range(100)))  # learn the task time
    events.clear()
    out = list(parallel(delayed(slow_square)(i, 0.001) for i in range(300)))
    assert out == [i * i for i in range(300)]
    sizes = [len(e.indices) for e in events]
    assert sorted(i for e in events for i in e.indices) == list(range(300))
    assert max(sizes) >= 4  # batches did grow: the tail split below means something
    last = next(e for e in events if 299 in e.indices)
    assert len(last.indices) <= -(-max(sizes) // 2)
    # the end was found before every task had completed
    assert any(e.n_total == 300 and e.n_completed < 300 for e in events)


def test_n_jobs_rules():
    n_cpus = joblite.cpu_count()
    assert 1 <= n_cpus <= os.cpu_count()
    assert joblite.effective_n_jobs(1) == 1
    assert joblite.effective_n_jobs(-1) == n_cpus
    assert joblite.effective_n_jobs(-2) == max(n_cpus - 1, 1)
    assert joblite.effective_n_jobs(-(n_cpus + 5)) == 1
    assert Parallel().n_jobs == 1
    assert Parallel(n_jobs=-1).n_jobs == n_cpus
    assert Parallel(n_jobs=3.0).n_jobs == 3
    assert Parallel(n_jobs="2").n_jobs == 2  # int() of it, as joblib does
    for bad in (0, "0", "two", "1.5", True):
        with pytest.raises(ValueError, match="n_jobs"):
            Parallel(n_jobs=bad)
    with joblite.parallel_config(n_jobs=2):
        assert Parallel().n_jobs == 2
        assert Parallel(n_jobs=1).n_jobs == 1


def test_cpu_count_honours_affinity():
    import subprocess
    import sys

    code = (
        "import os, joblite; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        " print(joblite.cpu_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def where_tasks_run(**kwargs) -> str:
    pid, thread = Parallel(n_jobs=2, **kwargs)([delayed(worker_identity)(0)])[0]
    if pid != os.getpid():
        return "processes"
    return "caller" if thread == threading.get_ident() else "threads"


def test_parallel_config_is_nestable_and_thread_local():
    seen = {}
    with joblite.parallel_config(backend="threading", verbose=0):
        assert where_tasks_run() == "threads"
        with joblite.parallel_config(backend="sequential"):
            assert where_tasks_run() == "caller"
        assert where_tasks_run() == "threads"
        thread = threading.Thread(target=lambda: seen.setdefault("other", where_tasks_run()))
        thread.start()
        thread.join()
    assert seen["other"] == "processes"
    assert where_tasks_run() == "processes"
    with joblite.parallel_backend("threading", n_jobs=2) as (backend, n_jobs):
        assert isinstance(backend, joblite.ParallelBackendBase) and n_jobs == 2
        assert Parallel().n_jobs == 2
        assert where_tasks_run() == "threads"
    config = joblite.parallel_config(backend="sequential")
    assert where_tasks_run() == "caller"
    config.unregister()
    assert where_tasks_run() == "processes"


def test_prefer_and_require():
    assert where_tasks_run() == "processes"
    assert where_tasks_run(prefer="threads") == "threads"
    assert where_tasks_run(prefer="processes") == "processes"
    assert where_tasks_run(require="sharedmem") == "threads"
    assert where_tasks_run(prefer="threads", backend="loky") == "processes"
    with joblite.parallel_config(backend="loky"):
        assert where_tasks_run(require="sharedmem") == "threads"
        assert where_tasks_run(prefer="threads") == "processes"
    with pytest.raises(ValueError, match="shared memory"):
        Parallel(backend="loky", require="sharedmem")


def test_shared_memory_requirement_really_shares():
    seen = []
    Parallel(n_jobs=2, require="sharedmem")(delayed(seen.append)(i) for i in range(10))
    assert sorted(seen) == list(range(10))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"return_as": "dict"}, "return_as"),
        ({"backend": "nope"}, "Invalid backend"),
        ({"batch_size": 0}, "batch_size"),
        ({"mmap_mode": "x"}, "mmap_mode"),
        ({"prefer": "gpu"}, "prefer"),
        ({"require": "x"}, "require"),
        ({"max_nbytes": "lots"}, "max_nbytes"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Parallel(**kwargs)


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_tasks_that_are_not_delayed_calls_are_named(backend):
    with pytest.raises(TypeError, match="delayed"):
        Parallel(n_jobs=2, backend=backend)([square, square])


def test_numpy_integers_are_valid_n_jobs():
    assert Parallel(n_jobs=np.int64(2), backend="threading").n_jobs == 2


def test_bad_pre_dispatch_is_named():
    with pytest.raises(ValueError, match="pre_dispatch"):
        Parallel(n_jobs=2, backend="threading", pre_dispatch="__import__('os')")(
            delayed(square)(i) for i in range(3)
        )


def test_a_running_parallel_cannot_be_called_again():
    parallel = Parallel(n_jobs=2, backend="threading", return_as="generator")
    out = parallel(delayed(square)(i) for i in range(10))
    with pytest.raises(RuntimeError, match="already running"):
        parallel(delayed(square)(i) for i in range(10))
    assert list(out) == [i * i for i in range(10)]
    assert list(parallel(delayed(square)(i) for i in range(3))) == [0, 1, 4]


def test_register_custom_backend():
    from joblite.backends.threads import ThreadingBackend

    submitted = []

    class CountingBackend(ThreadingBackend):
        def submit(self, batch, **kwargs):
            submitted.append(len(batch))
            return super().submit(batch, **kwargs)

    joblite.register_parallel_backend("counting", CountingBackend)
    with joblite.parallel_config(backend="counting"):
        assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(10)) == [
            i * i for i in range(10)
        ]
    assert sum(submitted) == 10
    with pytest.raises(TypeError, match="callable"):
        joblite.register_parallel_backend("broken", 42)


def test_wrap_non_picklable_objects():
    wrapped = joblite.wrap_non_picklable_objects(lambda x: x + 1)
    assert Parallel(n_jobs=2, backend="loky")(delayed(wrapped)(i) for i in range(3)) == [1, 2, 3]


def test_delayed_is_joblib_compatible():
    assert delayed(square)(3) == (square, (3,), {})
    assert delayed(square)(x=3) == (square, (), {"x": 3})
    assert delayed(square).__name__ == "square"
    assert delayed(slow_square)(1, delay=0) == (slow_square, (1,), {"delay": 0})


def halve_or_fail(x):
    if x == 7:
        raise ValueError("seven")
    return x / 2


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_map_is_the_delayed_call_without_building_calls(backend, return_as):
    parallel = Parallel(n_jobs=2, backend=backend, return_as=return_as)
    out = list(parallel.map(square, range(1000)))
    expected = [square(x) for x in range(1000)]
    assert (sorted(out) if return_as == "generator_unordered" else out) == expected
    two = list(parallel.map(pow, iter(range(50)), [3] * 60))  # zip stops at the shortest
    assert sorted(two) == [x**3 for x in range(50)]
    with pytest.raises(ValueError, match="seven") as caught:
        list(parallel.map(halve_or_fail, range(20)))
    assert "halve_or_fail" in full_traceback(caught.value)
    errors = Parallel(n_jobs=2, backend=backend, return_exceptions=True).map(
        halve_or_fail, range(10)
    )
    assert isinstance(errors[7], ValueError) and errors[6] == 3.0
    with pytest.raises(TypeError, match="callable"):
        parallel.map(42, range(3))


def test_map_keeps_timeout_and_progress():
    events = []
    parallel = Parallel(n_jobs=2, backend="threading", callback=events.append)
    assert parallel.map(square, range(100)) == [x * x for x in range(100)]
    assert events and events[-1].n_completed == 100
    with pytest.raises(TimeoutError):
        Parallel(n_jobs=2, backend="threading", timeout=0.2).map(time.sleep, [1.0] * 4)


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_a_generator_of_tiny_tasks_is_sent_while_it_is_read(backend):
    # Reading (building) 100k tiny calls takes the caller longer than running them: the
    # first batches go to the workers while the rest of the generator is read, instead
    # of after the whole of it (batch size learnt from the task time alone).
    parallel = Parallel(n_jobs=2, backend=backend)
    parallel(delayed(math.sqrt)(i) for i in range(5000))  # learn the task and read times
    dispatched_while_reading = []

    def calls():
        for i in range(100_000):
            if i % 5000 == 0:
                dispatched_while_reading.append(parallel.n_dispatched_tasks)
            yield delayed(math.sqrt)(i)

    assert parallel(calls()) == [math.sqrt(i) for i in range(100_000)]
    assert dispatched_while_reading[-1] > 0
