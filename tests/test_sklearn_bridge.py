"""Libraries that call the real joblib (scikit-learn) follow joblite's parallel_config.

Every fit of a recording estimator leaves a file naming the process and thread it ran in,
so each test counts where all of GridSearchCV's / cross_val_score's fits really ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import joblib
import joblite
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, cross_val_score

X = np.random.default_rng(0).random((60, 4))
Y = np.arange(60) % 2
MAIN_PID = os.getpid()


def native_thread_name() -> str:
    """The OS name of this thread (Rust pool threads are not ``threading.Thread`` objects)."""
    comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
    return comm.read_text().strip() if comm.exists() else threading.current_thread().name


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the first class; each fit writes ``pid thread-id thread-name`` to a file."""

    def __init__(self, log_dir: str = "", c: float = 1.0, fail: bool = False) -> None:
        self.log_dir = log_dir
        self.c = c
        self.fail = fail

    def fit(self, X, y):
        if self.fail:
            raise ArithmeticError(f"fit failed on purpose (c={self.c})")
        line = f"{os.getpid()} {threading.get_ident()} {native_thread_name()}"
        Path(self.log_dir, uuid.uuid4().hex).write_text(line)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def fits(log_dir: Path) -> list[tuple[int, int, str]]:
    out = []
    for path in log_dir.iterdir():
        pid, ident, name = path.read_text().split(" ", 2)
        out.append((int(pid), int(ident), name))
        path.unlink()
    return out


def grid_search(log_dir: Path) -> list[tuple[int, int, str]]:
    search = GridSearchCV(
        RecordingClassifier(str(log_dir)), {"c": [1.0, 2.0, 3.0]}, cv=3, refit=False
    )
    search.fit(X, Y)
    out = fits(log_dir)
    assert len(out) == 9  # 3 candidates x 3 folds, refit off: only the parallel fits
    return out


def cross_val(log_dir: Path) -> list[tuple[int, int, str]]:
    cross_val_score(RecordingClassifier(str(log_dir)), X, Y, cv=4)
    out = fits(log_dir)
    assert len(out) == 4
    return out


def in_main_thread(records) -> bool:
    me = (MAIN_PID, threading.get_ident())
    return all((pid, ident) == me for pid, ident, _ in records)


def on_threads(records) -> bool:
    me = threading.get_ident()
    return all(pid == MAIN_PID and ident != me for pid, ident, _ in records)


def in_workers(records) -> bool:
    return all(pid != MAIN_PID for pid, _, _ in records)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize("run", [grid_search, cross_val])
def test_no_configuration_runs_in_the_caller(log_dir, run):
    assert in_main_thread(run(log_dir))


@pytest.mark.parametrize("run", [grid_search, cross_val])
def test_parallel_backend_threading_runs_every_fit_on_the_rust_pool(log_dir, run):
    with joblite.parallel_backend("threading", n_jobs=2):
        records = run(log_dir)
    assert on_threads(records)
    # joblite's "threading" is its Rust thread pool, for joblib's callers too
    assert all(name.startswith("joblite-thread") for _, _, name in records), records
    assert in_main_thread(run(log_dir))  # restored on exit


@pytest.mark.parametrize("run", [grid_search, cross_val])
def test_parallel_config_n_jobs_alone_runs_fits_in_worker_processes(log_dir, run):
    with joblite.parallel_config(n_jobs=2):
        records = run(log_dir)
    assert in_workers(records)
    assert in_main_thread(run(log_dir))


@pytest.mark.parametrize("api", ["parallel_config", "parallel_backend"])
def test_loky_runs_fits_in_worker_processes(log_dir, api):
    with getattr(joblite, api)("loky", n_jobs=2):
        assert in_workers(grid_search(log_dir))
        assert in_workers(cross_val(log_dir))
    assert in_main_thread(grid_search(log_dir))


def test_nested_configurations_apply_innermost_and_restore_in_order(log_dir):
    with joblite.parallel_config(backend="threading", n_jobs=2):
        with joblite.parallel_config(backend="sequential"):
            assert in_main_thread(grid_search(log_dir))
            with joblite.parallel_config(backend="loky"):  # n_jobs=2 from the outer one
                assert in_workers(cross_val(log_dir))
            assert in_main_thread(cross_val(log_dir))
        assert on_threads(grid_search(log_dir))
        with joblite.parallel_config(n_jobs=1):  # only n_jobs: the backend stays threads
            assert in_main_thread(cross_val(log_dir))
        assert on_threads(cross_val(log_dir))
    assert in_main_thread(grid_search(log_dir))


def test_unregister_without_with_restores_joblib_too(log_dir):
    config = joblite.parallel_config(backend="threading", n_jobs=2)
    try:
        assert on_threads(cross_val(log_dir))
    finally:
        config.unregister()
    assert in_main_thread(cross_val(log_dir))
    config.unregister()  # twice: harmless
    assert in_main_thread(cross_val(log_dir))


def test_configuration_is_per_thread_like_joblib(tmp_path):
    inside, started, done = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    def configured() -> None:
        with joblite.parallel_config(backend="threading", n_jobs=2):
            inside.set()
            started.wait(10)
            outcome["configured"] = cross_val(tmp_path / "a")
            done.wait(10)

    thread = threading.Thread(target=configured)
    thread.start()
    try:
        inside.wait(10)
        mine = cross_val(tmp_path / "b")  # this thread never entered a configuration
        started.set()
    finally:
        done.set()
        thread.join(10)
    me = threading.get_ident()
    assert all(pid == MAIN_PID and ident == me for pid, ident, _ in mine)
    configured_records = outcome["configured"]
    assert all(name.startswith("joblite-thread") for _, _, name in configured_records)


def joblib_view() -> tuple:
    """What a library calling joblib gets from the active configuration."""
    parallel = joblib.Parallel()
    backend, n_jobs = joblib.parallel.get_active_backend()
    kwargs = {k: v for k, v in parallel._backend_kwargs.items() if k != "context"}
    inner = getattr(backend, "inner_max_num_threads", None)
    return parallel.n_jobs, parallel.verbose, n_jobs, type(backend).__name__, inner, kwargs


CONFIGS = [
    {"n_jobs": 3},
    {"backend": "loky", "n_jobs": 3, "verbose": 7, "inner_max_num_threads": 2},
    {"temp_folder": "/tmp", "max_nbytes": "2M", "mmap_mode": "c"},
    {"max_nbytes": None, "mmap_mode": None},
    {"prefer": "threads", "n_jobs": 2},
    {"prefer": "processes"},
    {"require": "sharedmem"},
    {"backend": "multiprocessing", "n_jobs": -1},
    {"backend": "sequential", "verbose": 60},
    {"n_jobs": None, "verbose": 3},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_argument_reaches_joblib_as_joblibs_own_config_does(config):
    with joblib.parallel_config(**config):
        expected = joblib_view()
    with joblite.parallel_config(**config):
        got = joblib_view()
    assert got == expected


def test_nested_arguments_combine_as_in_joblib():
    with joblib.parallel_config(backend="loky", n_jobs=3):
        with joblib.parallel_config(verbose=5, mmap_mode="r+"):
            expected = joblib_view()
        expected_after = joblib_view()
    with joblite.parallel_config(backend="loky", n_jobs=3):
        with joblite.parallel_config(verbose=5, mmap_mode="r+"):
            got = joblib_view()
        got_after = joblib_view()
    assert (got, got_after) == (expected, expected_after)
    outside = joblib_view()
    assert outside[:2] == (1, 0)


def test_inner_max_num_threads_caps_blas_in_joblib_workers():
    def omp_threads() -> str:
        return os.environ.get("OMP_NUM_THREADS", "")

    with joblite.parallel_config(backend="loky", n_jobs=2, inner_max_num_threads=3):
        seen = joblib.Parallel()(joblib.delayed(omp_threads)() for _ in range(4))
    assert seen == ["3"] * 4


def test_errors_of_fits_on_the_rust_pool_reach_the_caller(log_dir):
    search = GridSearchCV(
        RecordingClassifier(str(log_dir), fail=True),
        {"c": [1.0, 2.0]},
        cv=2,
        error_score="raise",
    )
    with joblite.parallel_backend("threading", n_jobs=2):
        with pytest.raises(ArithmeticError, match="fit failed on purpose"):
            search.fit(X, Y)
    assert in_main_thread(cross_val(log_dir))  # the pool still works, config restored


def test_a_multiprocessing_context_as_backend_reaches_joblib_callers(log_dir):
    import multiprocessing

    with joblite.parallel_config(backend=multiprocessing.get_context("spawn"), n_jobs=2):
        assert in_workers(cross_val(log_dir))


@pytest.mark.parametrize(
    ("name", "where"), [("joblite-threading", on_threads), ("joblite-loky", in_workers)]
)
def test_joblite_backends_in_joblibs_registry(log_dir, name, where):
    from joblite.backends.joblib_bridge import register_in_joblib

    # Not there unless asked for: code written for joblib enumerates joblib's registry.
    assert name not in joblib.parallel.BACKENDS
    try:
        assert name in register_in_joblib()
        # Code written for joblib can then pick joblite's backends by name.
        with joblib.parallel_config(backend=name, n_jobs=2):
            records = grid_search(log_dir)
    finally:
        for key in [k for k in joblib.parallel.BACKENDS if k.startswith("joblite-")]:
            del joblib.parallel.BACKENDS[key]
    assert where(records)
    if name == "joblite-threading":
        assert all(n.startswith("joblite-thread") for _, _, n in records)


def test_joblite_loky_adapter_shares_large_arrays_and_raises_worker_errors():
    from joblite.backends.joblib_bridge import joblib_backend

    big = np.arange(2**18, dtype=np.float64)  # 2 MiB: above max_nbytes, shared memory
    with joblib.parallel_config(backend=joblib_backend("loky"), n_jobs=2):
        sums = joblib.Parallel()(joblib.delayed(np.sum)(big) for _ in range(6))
        assert sums == [big.sum()] * 6
        with pytest.raises(ZeroDivisionError):
            joblib.Parallel()(joblib.delayed(divmod)(1, i) for i in (1, 0, 2))


def test_a_custom_joblite_backend_serves_joblib_callers(log_dir):
    from joblite.backends.threads import ThreadingBackend

    made = []

    class CountingBackend(ThreadingBackend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    joblite.register_parallel_backend("counting-threads", CountingBackend)
    with joblite.parallel_config(backend="counting-threads", n_jobs=2):
        assert on_threads(cross_val(log_dir))
    assert made


SUBPROCESS = textwrap.dedent(
    """
    import os, sys, threading
    import joblite
    def name():
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()
    with joblite.parallel_config(backend="threading", n_jobs=2):
        assert "joblib" not in sys.modules, "joblite imported joblib"
        import joblib  # first imported inside the block, as `import sklearn` would
        names = joblib.Parallel()(
            joblib.delayed(name)() for _ in range(4)
        )
    assert all(n.startswith("joblite-thread") for n in names), names
    after = joblib.Parallel()(joblib.delayed(threading.get_ident)() for _ in range(2))
    assert after == [threading.get_ident()] * 2
    print("ok")
    """
)


def test_joblib_imported_inside_the_block_follows_it():
    out = subprocess.run(
        [sys.executable, "-c", SUBPROCESS], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


WITHOUT_JOBLIB = textwrap.dedent(
    """
    import sys
    class NoJoblib:
        def find_spec(self, name, path=None, target=None):
            if name == "joblib" or name.startswith("joblib."):
                raise ModuleNotFoundError("No module named 'joblib'", name=name)
    sys.meta_path.insert(0, NoJoblib())
    import joblite
    with joblite.parallel_config(backend="threading", n_jobs=2):
        out = joblite.Parallel()(joblite.delayed(abs)(-i) for i in range(5))
    assert out == [0, 1, 2, 3, 4]
    try:
        import joblib
    except ModuleNotFoundError:
        pass
    assert "joblib" not in sys.modules
    print("ok")
    """
)


def test_works_without_joblib_installed():
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_JOBLIB], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_backend_written_for_joblib_and_registered_in_joblite_serves_joblib_callers(log_dir):
    from joblib._parallel_backends import ThreadingBackend as JoblibThreading

    made = []

    class JoblibStyle(JoblibThreading):  # written against joblib's interface
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    joblite.register_parallel_backend("joblib-style-threads", JoblibStyle)
    with joblite.parallel_config(backend="joblib-style-threads", n_jobs=2):
        assert on_threads(cross_val(log_dir))
        assert joblite.Parallel()(joblite.delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    assert made
    assert in_main_thread(cross_val(log_dir))


def test_a_duck_typed_joblib_interface_backend_serves_joblib_callers(log_dir):
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(2)

    class DuckBackend:  # joblib's methods, neither joblib's nor joblite's base class
        def __init__(self, nesting_level=0, inner_max_num_threads=None):
            self.nesting_level = nesting_level

        supports_retrieve_callback = True
        uses_threads = True
        supports_sharedmem = True

        def effective_n_jobs(self, n_jobs):
            return 2

        def configure(self, n_jobs=1, parallel=None, **kwargs):
            return 2

        def submit(self, func, callback=None):
            future = pool.submit(func)
            if callback is not None:
                future.add_done_callback(callback)
            return future

        def retrieve_result_callback(self, future):
            return future.result()

        def terminate(self):
            pass

        def abort_everything(self, ensure_ready=True):
            pass

        def get_nested_backend(self):
            return None, None

    joblite.register_parallel_backend("duck", DuckBackend)
    try:
        with joblite.parallel_config(backend="duck", n_jobs=2):
            assert on_threads(cross_val(log_dir))
    finally:
        pool.shutdown()
