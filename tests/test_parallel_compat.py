"""Parallel behaving as joblib's where joblib users rely on it: backends written for joblib,
initializers, multiprocessing contexts, timeouts, nesting rules, configuration, progress."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import ThreadPool

import joblib
import joblite
import pytest
from joblite import Parallel, delayed, parallel_backend, parallel_config


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


# -- backends written for joblib's interface ------------------------------------------


class FutureBackend(joblib.parallel.ParallelBackendBase):
    """A backend as joblib's docs describe one: submit + retrieve_result_callback."""

    supports_retrieve_callback = True
    uses_threads = True
    supports_sharedmem = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def effective_n_jobs(self, n_jobs):
        return 2 if n_jobs < 0 else n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
        self.calls.append(("configure", n_jobs, type(parallel).__name__))
        self.pool = ThreadPoolExecutor(self.effective_n_jobs(n_jobs))
        return self.effective_n_jobs(n_jobs)

    def start_call(self):
        self.calls.append("start_call")

    def stop_call(self):
        self.calls.append("stop_call")

    def submit(self, func, callback=None):
        future = self.pool.submit(func)
        future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out):
        return out.result()

    def terminate(self):
        self.calls.append("terminate")
        self.pool.shutdown()


class ApplyAsyncBackend(joblite.ParallelBackendBase):
    """An older style backend: apply_async on a pool, results fetched with .get()."""

    def effective_n_jobs(self, n_jobs):
        return 2 if n_jobs < 0 else n_jobs

    def configure(self, n_jobs=1, parallel=None, **kwargs):
        self.pool = ThreadPool(self.effective_n_jobs(n_jobs))
        return self.effective_n_jobs(n_jobs)

    def apply_async(self, func, callback=None):
        return self.pool.apply_async(func, callback=callback)

    def terminate(self):
        self.pool.terminate()
        self.pool.join()


@pytest.mark.parametrize("factory", [FutureBackend, ApplyAsyncBackend])
def test_backend_written_for_joblib_runs_tasks(factory):
    joblite.register_parallel_backend("joblib-style", factory)
    with parallel_config(backend="joblib-style", n_jobs=2):
        assert Parallel()(delayed(square)(i) for i in range(30)) == [i * i for i in range(30)]
        with pytest.raises(ValueError, match="bad value 7"):
            Parallel(batch_size=1)(delayed(fail_on)(i, 7) for i in range(20))
    backend = factory()
    out = Parallel(n_jobs=2, backend=backend, return_as="generator")(
        delayed(square)(i) for i in range(10)
    )
    assert list(out) == [i * i for i in range(10)]
    if isinstance(backend, FutureBackend):
        expected = [("configure", 2, "Parallel"), "start_call", "stop_call", "terminate"]
        assert backend.calls == expected


def test_joblite_backend_without_submit_names_the_interface():
    class Incomplete(joblite.ParallelBackendBase):
        pass

    with pytest.raises(NotImplementedError, match="submit"):
        Parallel(n_jobs=2, backend=Incomplete())(delayed(square)(i) for i in range(3))


# -- initializer, multiprocessing contexts -------------------------------------------


def _mark(status):
    status[os.getpid()] = "initialized"


def _check_marked(status):
    return status.get(os.getpid())


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_initializer_runs_in_every_worker(backend):
    with multiprocessing.Manager() as manager:
        status = manager.dict()
        out = Parallel(n_jobs=2, backend=backend, initializer=_mark, initargs=(status,))(
            delayed(_check_marked)(status) for _ in range(20)
        )
        assert out == ["initialized"] * 20
        with parallel_config(backend=backend, n_jobs=2, initializer=_mark, initargs=(status,)):
            out = Parallel()(delayed(_check_marked)(status) for _ in range(20))
        assert out == ["initialized"] * 20


def _pid_after_marking(status):
    assert status.get(os.getpid()) == "initialized"
    time.sleep(0.05)
    return os.getpid()


def test_initialized_workers_reused_only_with_equal_initargs():
    with multiprocessing.Manager() as manager:
        same = manager.dict()
        runs = [
            set(
                Parallel(n_jobs=2, backend="loky", initializer=_mark, initargs=(same,))(
                    delayed(_pid_after_marking)(same) for _ in range(8)
                )
            )
            for _ in range(2)
        ]
        assert runs[0] == runs[1]  # same initializer and initargs: the same workers
        other = manager.dict()
        pids = set(
            Parallel(n_jobs=2, backend="loky", initializer=_mark, initargs=(other,))(
                delayed(_pid_after_marking)(other) for _ in range(8)
            )
        )
        assert not pids & runs[0]  # other initargs: fresh workers, initialised with them


def _start_method(_):
    return multiprocessing.get_start_method()


def test_backend_may_be_a_multiprocessing_context():
    context = multiprocessing.get_context("spawn")
    out = Parallel(n_jobs=2, backend=context)(delayed(square)(i) for i in range(6))
    assert out == [i * i for i in range(6)]
    with parallel_config(backend=context, n_jobs=2):
        assert Parallel()(delayed(_start_method)(i) for i in range(2)) == ["spawn", "spawn"]


# -- timeout ---------------------------------------------------------------------------


def test_timeout_raises_while_other_tasks_keep_finishing():
    # The long task is the oldest one: other tasks finishing do not extend its time.
    tasks = [delayed(time.sleep)(2.0)] + [delayed(time.sleep)(0.05)] * 60
    with pytest.raises(TimeoutError) as info:
        Parallel(n_jobs=2, backend="threading", timeout=0.5, batch_size=1)(tasks)
    assert isinstance(info.value, multiprocessing.TimeoutError)  # what joblib raises
    with pytest.raises(multiprocessing.TimeoutError):
        Parallel(n_jobs=2, backend="loky", timeout=0.2)(delayed(time.sleep)(5) for _ in range(4))
    assert Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


# -- errors and their messages -------------------------------------------------------


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("no pickling")


def test_unpicklable_argument_is_a_pickling_error():
    with pytest.raises(pickle.PicklingError, match="the task to send"):
        Parallel(n_jobs=2, backend="loky")(delayed(id)(Unpicklable()) for _ in range(4))


def _failing_input(at):
    for i in range(20):
        if i == at:
            raise ValueError("input broke")
        yield delayed(square)(i)


@pytest.mark.parametrize("backend", ["threading", "loky", "multiprocessing"])
def test_error_of_the_input_iterator_in_a_managed_block(backend):
    with Parallel(n_jobs=2, backend=backend) as parallel:
        for at in (0, 5, 19):
            with pytest.raises(ValueError, match="input broke"):
                parallel(_failing_input(at))
        assert parallel(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_bad_hints_and_constraints():
    with pytest.raises(ValueError, match="prefer=wrong is not a valid backend hint"):
        parallel_config(prefer="wrong")
    with pytest.raises(ValueError, match="require=wrong is not a valid backend constraint"):
        Parallel(require="wrong")
    with pytest.raises(ValueError, match="inconsistent"):
        Parallel(prefer="processes", require="sharedmem")
    with pytest.raises(ValueError, match="does not support shared memory"):
        Parallel(backend="loky", require="sharedmem")
    with pytest.raises(ValueError, match="Invalid backend: 'nope'"):
        Parallel(backend="nope")
    with pytest.raises(ValueError, match="only supported when backend is a string"):
        parallel_config(backend=FutureBackend(), some_param=1)
    with pytest.raises(AssertionError, match="does not accept setting the inner_max"):
        parallel_backend("threading", inner_max_num_threads=2)


def test_dask_without_dask_fails_at_once_and_changes_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    for context in (parallel_config, parallel_backend):
        with pytest.raises(ValueError, match="Please install dask"):
            context("dask")
    # the failed context did not become this thread's default
    assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(3)) == [0, 1, 4]


# -- n_jobs=None, nesting ---------------------------------------------------------------


def test_n_jobs_none_means_not_given():
    with parallel_config(backend="threading", n_jobs=3):
        assert Parallel(n_jobs=None).n_jobs == 3
        assert joblite.effective_n_jobs(None) == 3
        with parallel_config(n_jobs=None):  # explicitly reset: the backend's default
            assert Parallel().n_jobs == 1
    with parallel_backend("threading"):
        assert Parallel(n_jobs=None).n_jobs == joblite.cpu_count()
    assert joblite.effective_n_jobs(None) == 1


def _inner(backend):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(3))
    assert out == [0, 1, 4]
    return [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "outer, inner, words",
    [
        ("loky", "multiprocessing", "cannot be nested, below loky"),
        ("threading", "multiprocessing", "cannot be nested below threads"),
        ("threading", "loky", "cannot be nested below threads"),
        ("multiprocessing", "loky", "cannot be called in a multiprocessing"),
        ("loky", "loky", None),
    ],
)
def test_nested_process_pools_warn_and_run_sequentially(outer, inner, words):
    messages = Parallel(n_jobs=2, backend=outer)(delayed(_inner)(inner) for _ in range(2))
    for found in messages:
        if words is None:
            assert found == []
        else:
            assert len(found) == 1 and words in found[0] and "setting n_jobs=1" in found[0]


# -- progress -------------------------------------------------------------------------


class CountingParallel(Parallel):
    """The popular recipe: a subclass reading joblib's counters in print_progress."""

    def __init__(self, *args, **kwargs):
        self.seen = []
        super().__init__(*args, **kwargs)

    def print_progress(self):
        self.seen.append((self.n_completed_tasks, self.n_dispatched_tasks))


@pytest.mark.parametrize("backend", ["sequential", "threading", "loky"])
def test_print_progress_override_sees_the_counters(backend):
    parallel = CountingParallel(n_jobs=2, backend=backend, batch_size=1)
    assert parallel(delayed(square)(i) for i in range(20)) == [i * i for i in range(20)]
    assert parallel.seen[-1] == (20, 20)
    # sequential, as in joblib: one more call once the generator's end is found
    extra = [20] if backend == "sequential" else []
    assert [done for done, _ in parallel.seen] == list(range(1, 21)) + extra
    assert all(done <= dispatched for done, dispatched in parallel.seen)
    assert parallel.n_completed_tasks == parallel.n_dispatched_tasks == 20


def test_progress_total_and_description(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain stderr bar
    events = []
    tasks = (delayed(square)(i) for i in range(40))
    out = Parallel(
        n_jobs=2,
        backend="threading",
        batch_size=1,
        progress=True,
        total=40,
        desc="squares",
        callback=events.append,
    )(tasks)
    assert out == [i * i for i in range(40)]
    assert {event.n_total for event in events} == {40}  # known before the input ended
    lines = capsys.readouterr().err.split("\r")
    assert lines[1].startswith("squares: ") and "/40 (" in lines[1]
    assert "squares: 40/40 (100%)" in lines[-1]
    with pytest.raises(ValueError, match="total"):
        Parallel(total=-1)


# -- arrays, environment -----------------------------------------------------------


def _with_byteorder(x):
    return x, x.dtype.byteorder


@pytest.mark.parametrize("max_nbytes", [1, "1M"])
def test_big_endian_arrays_keep_their_byte_order_both_ways(max_nbytes):
    np = pytest.importorskip("numpy")
    x = np.arange(6, dtype=">i4").reshape(2, 3)
    out = Parallel(n_jobs=2, backend="loky", max_nbytes=max_nbytes)(
        delayed(_with_byteorder)(x) for _ in range(3)
    )
    for returned, in_worker in out:
        assert in_worker == ">" and returned.dtype.byteorder == ">"
        np.testing.assert_array_equal(returned, x)
        # the worker's map given back is a plain, writable array in memory (as joblib)
        assert type(returned) is np.ndarray and returned.flags.writeable
        base = returned
        while base is not None:
            assert not isinstance(base, (np.memmap, __import__("mmap").mmap))
            base = getattr(base, "base", None)


def _env(name):
    return os.environ.get(name)


def test_thread_limit_set_in_the_callers_environment_reaches_workers(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    out = Parallel(n_jobs=2, backend="loky")(delayed(_env)(n) for n in ["OPENBLAS_NUM_THREADS"] * 2)
    assert out == ["3", "3"]
    with parallel_config(backend="loky", inner_max_num_threads=1):  # an explicit cap wins
        out = Parallel(n_jobs=2)(delayed(_env)(n) for n in ["OPENBLAS_NUM_THREADS"] * 2)
    assert out == ["1", "1"]


def test_without_multiprocessing_the_default_is_threads(tmp_path):
    import subprocess

    (tmp_path / "_multiprocessing.py").write_text("raise ImportError('no _multiprocessing')")
    code = (
        "import joblite, math;"
        "p = joblite.Parallel(n_jobs=2);"
        "print(type(p._backend).__name__, p(joblite.delayed(math.sqrt)(i * i) for i in range(4)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ThreadingBackend [0.0, 1.0, 2.0, 3.0]"


def _recurse():
    return Parallel()(delayed(_recurse)() for _ in range(2))


def test_unbounded_recursion_raises_recursion_error_from_a_worker():
    # the worker's RecursionError is too deep to send with its traceback: its type and
    # message still come back (not a RuntimeError standing for it)
    with parallel_config(backend="loky", n_jobs=2):
        with pytest.raises(RecursionError):
            _recurse()


def test_timeout_that_cannot_apply_is_warned_about():
    with pytest.warns(UserWarning, match="'SequentialBackend' does not support timeout") as info:
        assert Parallel(n_jobs=1, timeout=1)(delayed(square)(i) for i in range(5))[-1] == 16
    assert len(info) == 1


def test_delayed_builds_the_tuple_joblib_code_unpacks():
    import copy
    import inspect
    import pickle

    import cloudpickle

    def scaled(x, factor=1):
        return x * factor

    call = delayed(scaled)(3, factor=2)
    function, args, kwargs = call
    assert (function, args, kwargs) == (scaled, (3,), {"factor": 2})
    assert function(*args, **kwargs) == 6
    # it reads as the tuple joblib builds: compares, indexes, slices, repr, len, iter
    assert call == (scaled, (3,), {"factor": 2}) and (scaled, (3,), {"factor": 2}) == call
    assert call != (scaled, (4,), {"factor": 2}) and call != [scaled, (3,), {"factor": 2}]
    assert call == delayed(scaled)(3, factor=2) and call != delayed(scaled)(3)
    assert call[0] is scaled and call[-3] is scaled and call[1] == (3,)
    assert call[1:] == ((3,), {"factor": 2}) and tuple(call) == (scaled, (3,), {"factor": 2})
    assert len(call) == 3 and list(call)[2] == {"factor": 2} and scaled in call
    assert repr(call) == repr((scaled, (3,), {"factor": 2}))
    with pytest.raises(IndexError):
        call[3]
    with pytest.raises(IndexError):
        call[2**70]
    with pytest.raises(TypeError, match="unhashable"):
        hash(call)
    # args and kwargs, built on first use, are the same objects at every later use
    single = delayed(scaled)(5)
    assert single[1] is single[1] and single[2] is single[2] and single[1] == (5,)
    unpacked = tuple(single)
    assert unpacked[1] is single[1] and unpacked[2] is single[2]
    # pickles and copies as joblib's plain tuple (what any joblib reads back)
    for back in (
        pickle.loads(pickle.dumps(delayed(abs)(-3))),
        cloudpickle.loads(cloudpickle.dumps(call)),
    ):
        assert (
            type(back) is tuple and back[1][0] in (3, -3) and back[0](*back[1], **back[2]) in (3, 6)
        )
    assert type(copy.copy(call)) is tuple and copy.deepcopy(call)[1:] == ((3,), {"factor": 2})
    with pytest.raises(TypeError, match="delayed"):
        type(call)()
    # every call gets its own kwargs dict: changing one never changes another
    first, second = delayed(scaled)(1), delayed(scaled)(2)
    first[2]["factor"] = 10
    assert second[2] == {} and delayed(scaled)(3)[2] == {}
    wrapper = delayed(scaled)
    assert wrapper is delayed(scaled)  # one wrapper for a run of calls of one function
    assert wrapper.__wrapped__ is scaled and wrapper.__name__ == "scaled"
    assert str(inspect.signature(wrapper)) == "(x, factor=1)"
    assert delayed(abs)(-1) == (abs, (-1,), {})  # another function: another wrapper
    assert pickle.loads(pickle.dumps(delayed(abs)))(-2) == (abs, (-2,), {})
    assert cloudpickle.loads(cloudpickle.dumps(wrapper))(4)[1:] == ((4,), {})
    with pytest.raises(AttributeError, match="no_such_attribute"):
        wrapper.no_such_attribute  # noqa: B018


class _Holder:
    pass


def test_delayed_calls_in_reference_cycles_are_collected():
    import gc
    import weakref

    holder = _Holder()
    holder.call = delayed(square)(holder)  # holder -> call -> args -> holder
    holder.keyword = delayed(square)(x=holder)  # and through the kwargs dict
    holder.unpacked = delayed(square)(holder)
    holder.unpacked[1]
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


def test_calls_joblib_code_builds_by_hand_still_run():
    # sklearn's and other libraries' own delayed build plain tuples, sometimes with a list
    # of arguments or another mapping of keywords: every backend runs them as f(*a, **k).
    from types import MappingProxyType

    def add(x, y=0):
        return x + y

    mutated = delayed(add)(6)
    mutated[2]["y"] = 4  # a keyword added through the call's own (first built) dict
    calls = [
        (add, (1,), {}),
        (add, [2], {"y": 1}),
        (add, (3,), MappingProxyType({"y": 2})),
        delayed(add)(4, y=3),
        delayed(add)(5),
        mutated,
    ]
    for n_jobs, backend in ((1, None), (2, "threading"), (2, "loky")):
        for return_exceptions in (False, True):
            out = Parallel(n_jobs=n_jobs, backend=backend, return_exceptions=return_exceptions)(
                calls
            )
            assert out == [1, 3, 5, 7, 5, 10]


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_parallel_that_ran_on_processes_pickles(backend):
    # docs/compatibility.md: Parallel objects are picklable; one that has run keeps its
    # worker pool (locks, threads): the copy gets none and starts its own
    parallel = Parallel(n_jobs=2, backend=backend)
    assert parallel(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    copy = pickle.loads(pickle.dumps(parallel))
    assert copy(delayed(abs)(-i) for i in range(5)) == list(range(5))
    assert parallel(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    with Parallel(n_jobs=2, backend=backend) as managed:
        assert managed(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        copy = pickle.loads(pickle.dumps(managed))
        assert copy(delayed(abs)(-i) for i in range(4)) == list(range(4))
        assert managed(delayed(abs)(-i) for i in range(2)) == [0, 1]


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_n_jobs_given_as_a_numeric_string_runs_as_in_joblib(backend):
    for n_jobs in ("2", "-1", "1"):
        got = Parallel(n_jobs=n_jobs, backend=backend)(delayed(abs)(-i) for i in range(5))
        want = joblib.Parallel(n_jobs=n_jobs, backend=backend)(
            joblib.delayed(abs)(-i) for i in range(5)
        )
        assert got == want == [0, 1, 2, 3, 4]
    for bad in ("x", "1.5", ""):
        with pytest.raises(ValueError, match="n_jobs could not be converted to int"):
            Parallel(n_jobs=bad, backend=backend)
        with pytest.raises(ValueError, match="n_jobs could not be converted to int"):
            joblib.Parallel(n_jobs=bad, backend=backend)
