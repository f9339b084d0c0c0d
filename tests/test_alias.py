"""joblite as ``joblib``: install_as_joblib(), the JOBLITE_AS_JOBLIB variable, what
libraries find under ``joblib.*``, worker processes, and the joblib bridge's guards.

The alias replaces ``joblib`` for a whole process, so every check that installs it runs in a
fresh interpreter; this process keeps the real joblib (the bridge tests need it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings

import joblite
import pytest
from joblite import Parallel, delayed, parallel_backend, parallel_config

ENV = {k: v for k, v in os.environ.items() if k != "JOBLITE_AS_JOBLIB"}


def run(code: str, env: dict | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter with warnings as errors; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# every ``joblib.<name>`` scikit-learn 1.9 reads, and the joblib internals it imports
SKLEARN_NAMES = [
    "joblib.Parallel",
    "joblib.delayed",
    "joblib.Memory",
    "joblib.Memory.cache",
    "joblib.dump",
    "joblib.load",
    "joblib.hash",
    "joblib.cpu_count",
    "joblib.effective_n_jobs",
    "joblib.parallel_backend",
    "joblib.parallel_config",
    "joblib.register_parallel_backend",
    "joblib.logger.short_format_time",
    "joblib.parallel.mp",
    "joblib.parallel.get_active_backend",
    "joblib.numpy_pickle.NumpyPickler",
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "joblib._parallel_backends.ParallelBackendBase",
    "joblib._parallel_backends.AutoBatchingMixin",
    "joblib._parallel_backends.LokyBackend",
    "joblib._store_backends.StoreBackendBase",
    "joblib.externals.loky.get_reusable_executor",
    "joblib.externals.cloudpickle.dumps",
]


def test_alias_gives_joblite_under_joblibs_names():
    out = run(
        f"""
        import importlib, joblite
        joblite.install_as_joblib()
        import joblib
        for dotted in {SKLEARN_NAMES!r}:
            parts = dotted.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ImportError:
                    continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        import joblib.parallel, joblib.memory, joblib.numpy_pickle, loky
        assert joblib.Parallel is joblite.Parallel and joblib.Memory is joblite.Memory
        assert joblib.parallel.parallel_config is joblite.parallel_config
        assert joblib.externals.loky is loky
        assert joblib.parallel.mp is not None
        print(joblib.__version__, joblite.__version__)
        """
    )
    assert out.split() == [joblite.alias.JOBLIB_API_VERSION, joblite.__version__]
    assert joblite.alias.JOBLIB_API_VERSION != joblite.__version__


def test_environment_variable_installs_it_at_joblite_import():
    out = run("import joblite, joblib; print(joblib.__name__)", env={"JOBLITE_AS_JOBLIB": "1"})
    assert out.strip() == "joblite.alias.joblib"


def test_pytest_plugin_route_runs_a_suite_on_the_alias(tmp_path):
    # docs/alias.md: a library's conftest imports joblib before any test runs, so the
    # variable alone leaves pytest on the real joblib; ``-p joblite`` imports joblite first
    if importlib.util.find_spec("joblib") is None:
        pytest.skip("needs the real joblib (a test dependency)")
    (tmp_path / "conftest.py").write_text("import joblib\nSEEN = joblib.__name__\n")
    (tmp_path / "test_seen.py").write_text(
        "import conftest\n\ndef test_seen():\n    print('SEEN', conftest.SEEN)\n"
    )
    base = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
    base += ["-p", "no:randomly", "-o", "addopts=", "test_seen.py"]
    env = {**ENV, "JOBLITE_AS_JOBLIB": "1"}
    seen = {}
    for route, args in (("plugin", ["-p", "joblite"]), ("variable alone", [])):
        proc = subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        seen[route] = [line.split()[1] for line in proc.stdout.splitlines() if "SEEN" in line]
    assert seen == {"plugin": ["joblite.alias.joblib"], "variable alone": ["joblib"]}


def test_unsupported_submodule_says_so():
    out = run(
        """
        import joblite
        joblite.install_as_joblib()
        try:
            import joblib.pool
        except ModuleNotFoundError as error:
            assert error.name == "joblib.pool"
            print(error)
        """
    )
    assert "joblib.pool" in out and "alias" in out


def test_installing_after_joblib_is_refused():
    out = run(
        """
        import joblib, joblite
        try:
            joblite.install_as_joblib()
        except RuntimeError as error:
            print(error)
        assert joblib.__name__ == "joblib"
        """
    )
    assert "before joblib is imported" in out


@pytest.mark.parametrize(
    "backend",
    ["loky", "multiprocessing", "multiprocessing-spawn", "multiprocessing-forkserver"],
)
def test_worker_processes_get_the_alias(backend):
    """A task whose library imports joblib in the worker gets joblite there too."""
    out = run(
        f"""
        import multiprocessing, os, joblite
        joblite.install_as_joblib()
        from joblite import Parallel, delayed

        def joblib_seen(i):
            import joblib
            return os.getpid(), joblib.__name__

        if __name__ == "__main__":
            name = {backend!r}
            spec = name
            if name.startswith("multiprocessing-"):
                spec = multiprocessing.get_context(name.split("-")[1])
            with joblite.parallel_config(backend=spec):
                seen = Parallel(n_jobs=2)(delayed(joblib_seen)(i) for i in range(6))
            assert all(pid != os.getpid() for pid, _ in seen), seen
            print(sorted({{n for _, n in seen}}))
        """
    )
    assert out.strip() == "['joblite.alias.joblib']"


def test_numpy_pickler_writes_joblibs_format_read_by_both(tmp_path):
    np = pytest.importorskip("numpy")
    out = run(
        f"""
        import io, pickle, numpy as np, joblite
        joblite.install_as_joblib()
        import joblib
        from joblib.numpy_pickle import NumpyPickler

        class Swapped(NumpyPickler):  # scikit-learn's test of non-native byte order
            def save(self, obj):
                if isinstance(obj, np.ndarray):
                    obj = obj.byteswap().view(obj.dtype.newbyteorder())
                super().save(obj)

        value = {{"a": np.arange(10.0), "f": np.asfortranarray(np.ones((3, 4))),
                 "o": np.array([None, 1], dtype=object), "s": "text"}}
        f = io.BytesIO()
        Swapped(f).dump(value)
        back = joblib.load(io.BytesIO(f.getvalue()))
        assert back["a"].tolist() == list(range(10)) and back["f"].sum() == 12
        with open({str(tmp_path / "plain.pkl")!r}, "wb") as out:
            NumpyPickler(out).dump(value)
        """
    )
    del out
    import joblib  # the real one (this process has no alias)

    back = joblib.load(tmp_path / "plain.pkl")
    assert back["a"].tolist() == list(range(10)) and back["f"].flags.f_contiguous
    assert back["o"].tolist() == [None, 1] and back["s"] == "text"
    assert joblite.load(tmp_path / "plain.pkl")["f"].sum() == 12
    mapped = joblite.load(tmp_path / "plain.pkl", mmap_mode="r")["a"]
    assert isinstance(mapped, np.memmap) and mapped.tolist() == list(range(10))


# ------------------------------------------------------------- the bridge's guards
def _joblite_posing_as_joblib(code: str) -> str:
    """``sys.modules["joblib"] = joblite`` done by hand, ``joblib.parallel`` imported."""
    return run(
        textwrap.dedent(
            """
            import sys, warnings, joblite, joblite.parallel
            sys.modules["joblib"] = joblite
            sys.modules["joblib.parallel"] = joblite.parallel
            from joblite import Parallel, parallel_config
            """
        )
        + textwrap.dedent(code)
    )


def test_bridge_never_recurses_into_joblite_posing_as_joblib():
    out = _joblite_posing_as_joblib(
        """
        with parallel_config(backend="threading", n_jobs=2):
            inside = Parallel().n_jobs
        print(inside, Parallel().n_jobs, type(Parallel()._backend).__name__)
        """
    )
    assert out.split() == ["2", "1", "LokyBackend"]  # and no RuntimeWarning (-W error)


def test_bridge_never_recurses_under_the_alias():
    out = run(
        """
        import joblite
        joblite.install_as_joblib()
        import joblib, joblib.parallel
        for _ in range(3):
            with joblib.parallel_config(backend="threading", n_jobs=2):
                inside = joblib.Parallel().n_jobs
        print(inside, joblib.Parallel().n_jobs)
        """
    )
    assert out.split() == ["2", "1"]


def test_configuration_does_not_leak_with_real_joblib():
    import joblib

    with parallel_config(backend="threading", n_jobs=2):
        assert joblib.Parallel().n_jobs == 2
    assert Parallel().n_jobs == 1 and joblib.Parallel().n_jobs == 1


# --------------------------------------------------- the backend instance that runs
class CountingThreads(joblite.backends.get_backend_factory("threading")):  # type: ignore[misc]
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def start_call(self):
        self.calls += 1
        super().start_call()


def test_parallel_backend_yields_the_instance_that_runs_the_work():
    joblite.register_parallel_backend("counting-threads", CountingThreads)
    with parallel_backend("counting-threads", n_jobs=2) as (backend, n_jobs):
        assert n_jobs == 2
        Parallel()(delayed(abs)(-i) for i in range(4))
        Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
    assert backend.calls == 2
    with parallel_config(backend="counting-threads", n_jobs=2) as config:
        Parallel()(delayed(abs)(-i) for i in range(4))
    assert config.old_config is not None
    assert Parallel()._backend is not backend


@pytest.mark.parametrize("backend", ["threading", "loky", "sequential"])
def test_two_generator_calls_running_at_once_in_one_block(backend):
    """joblite's own backends: each call its own instance, so neither ends the other's pool."""
    with parallel_config(backend=backend, n_jobs=2):
        first = Parallel(return_as="generator")(delayed(abs)(-i) for i in range(30))
        second = Parallel(return_as="generator")(delayed(abs)(-i) for i in range(30))
        assert list(first) == list(range(30))
        assert list(second) == list(range(30))


def test_backend_instance_given_is_the_one_used():
    backend = CountingThreads()
    with parallel_backend(backend, n_jobs=2) as (yielded, _):
        Parallel()(delayed(abs)(-i) for i in range(4))
    assert yielded is backend and backend.calls == 1


# ---------------------------------------------- backends registered in joblib only
def _joblib_registry_backends():
    joblib_backends = pytest.importorskip("joblib._parallel_backends")
    import joblib.parallel

    class SparkShaped(joblib_backends.ParallelBackendBase, joblib_backends.AutoBatchingMixin):
        """joblibspark's shape: apply_async(func, callback) on a thread pool of its own."""

        supports_retrieve_callback = False
        uses_threads = True
        instances: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.runs = 0
            SparkShaped.instances.append(self)

        def effective_n_jobs(self, n_jobs):
            return 2 if n_jobs in (None, -1) else n_jobs

        def configure(self, n_jobs=1, parallel=None, **kwargs):
            from multiprocessing.pool import ThreadPool

            self.parallel = parallel
            self._pool = ThreadPool(self.effective_n_jobs(n_jobs))
            return self.effective_n_jobs(n_jobs)

        def apply_async(self, func, callback=None):
            self.runs += 1
            return self._pool.apply_async(func, callback=callback)

        def terminate(self):
            self._pool.terminate()

    class RayShaped(joblib_backends.MultiprocessingBackend):
        """Ray's shape: a MultiprocessingBackend whose configure builds its own pool."""

        instances: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            RayShaped.instances.append(self)

        def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
            from multiprocessing.pool import ThreadPool

            self.parallel = parallel
            self._pool = ThreadPool(n_jobs)
            return n_jobs

    joblib.parallel.register_parallel_backend("spark-shaped", SparkShaped)
    joblib.register_parallel_backend("ray-shaped", RayShaped)
    return SparkShaped, RayShaped


# joblib itself warns when it drives a backend through apply_async (joblite does not)
@pytest.mark.filterwarnings("ignore:`apply_async` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("which", [0, 1], ids=["spark-shaped", "ray-shaped"])
def test_backend_registered_in_joblib_is_usable_by_name(which):
    import joblib
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    cls = _joblib_registry_backends()[which]
    name = ["spark-shaped", "ray-shaped"][which]
    assert name not in joblite.backends.BACKENDS  # never registered in joblite
    cls.instances.clear()
    with parallel_backend(name, n_jobs=2) as (backend, _):
        assert isinstance(backend, cls)
        assert Parallel()(delayed(abs)(-i) for i in range(6)) == list(range(6))
        # and scikit-learn, calling the real joblib, runs on the same instance
        X = [[i % 5, i % 3] for i in range(40)]
        y = [i % 2 for i in range(40)]
        cross_val_score(DecisionTreeClassifier(), X, y, cv=2)
    assert cls.instances == [backend]
    assert Parallel()._backend is not backend
    del joblib.parallel.BACKENDS[name]


def test_unknown_name_lists_the_names_of_both_registries():
    with pytest.raises(ValueError, match="Invalid backend: 'no-such-backend'"):
        parallel_config(backend="no-such-backend")


# -------------------------------------------------------------- backend options
def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child is 3.11+")
def test_maxtasksperchild_recycles_multiprocessing_workers():
    pids = Parallel(n_jobs=2, backend="multiprocessing", maxtasksperchild=1)(
        delayed(_pid)(i) for i in range(8)
    )
    assert len(set(pids)) == 8
    with parallel_config(backend="multiprocessing", maxtasksperchild=2):
        assert len(set(Parallel(n_jobs=2)(delayed(_pid)(i) for i in range(8)))) >= 4


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child is 3.11+")
def test_recycling_pool_shut_down_while_a_worker_is_replaced():
    # seen under load: the pool's manager thread replaced a recycled worker just after a
    # shutdown(wait=False) had dropped the process table, and died on len(None)
    import multiprocessing

    from joblite.backends.processes import _recycling_executor

    ex = _recycling_executor()(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    )
    assert ex.submit(abs, -3).result(timeout=60) == 3
    ex.shutdown(wait=False)
    ex._adjust_process_count()  # what the manager thread may still call: nothing to do
    ex.shutdown(wait=True)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child is 3.11+")
def test_recycled_workers_never_run_out():
    """CPython's pool (gh-115634) skipped replacing a worker that exited after its
    ``max_tasks_per_child`` tasks when a credit of an earlier task was left: with every task
    submitted at once the pool shrank to no worker and the call hung."""
    script = textwrap.dedent(
        """
        import os
        from joblite import Parallel, delayed
        if __name__ == "__main__":
            for _ in range(5):
                pids = Parallel(n_jobs=2, backend="multiprocessing", maxtasksperchild=2,
                                batch_size=1, pre_dispatch="all")(
                    delayed(os.getpid)() for _ in range(20))
                assert len(set(pids)) >= 10, pids
            print("done")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "done"


@pytest.mark.parametrize("backend", ["multiprocessing", "loky", "threading", "sequential"])
def test_unknown_backend_keyword_is_refused(backend):
    with pytest.raises(TypeError, match="'no_such_option'"):
        Parallel(n_jobs=2, backend=backend, no_such_option=1)
    with pytest.raises(TypeError, match="'no_such_option'"):
        with parallel_config(backend=backend, no_such_option=1):
            pass
    assert Parallel().n_jobs == 1  # nothing left behind


def test_joblibs_backend_options_are_accepted():
    backend = Parallel(n_jobs=2, backend="loky", idle_worker_timeout=7)._backend
    assert backend.idle_worker_timeout == 7
    assert Parallel(n_jobs=2, backend="loky", idle_worker_timeout=7)(
        delayed(abs)(-i) for i in range(3)
    ) == [0, 1, 2]


def test_maxtasksperchild_is_checked():
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Parallel(n_jobs=2, backend="multiprocessing", maxtasksperchild=0)
    with pytest.raises(TypeError, match="'maxtasksperchild'"):
        Parallel(n_jobs=2, backend="loky", maxtasksperchild=1)


# ---------------------------------------------------- stores written for joblib
def test_store_moving_single_files_caches(tmp_path):
    """joblib-s3's shape: no directories, ``_move_item`` moves one object."""
    joblib_store = pytest.importorskip("joblib._store_backends")
    moves = []

    class ObjectStore(joblib_store.StoreBackendBase):
        def _open_item(self, path, mode):
            if "w" in mode:
                os.makedirs(os.path.dirname(path), exist_ok=True)  # keys need no folders
            return open(path, mode)

        def _item_exists(self, path):
            return os.path.exists(path)

        def _move_item(self, src, dst):
            if os.path.isdir(src):
                raise IsADirectoryError(f"an object store moves one object, not {src}")
            moves.append((src, dst))
            os.replace(src, dst)

        def create_location(self, location):
            pass  # an object store has no folders

        def clear_location(self, location):
            import shutil

            if os.path.isdir(location):
                shutil.rmtree(location)
            elif os.path.exists(location):
                os.remove(location)

        def get_items(self):
            return []

        def configure(self, location, verbose=0, backend_options=None):
            self.location = location

    joblite.register_store_backend("object-store", ObjectStore)
    calls = []
    memory = joblite.Memory(str(tmp_path), backend="object-store", verbose=0)
    f = memory.cache(lambda x: calls.append(x) or x * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not store" warning either
        assert [f(4), f(4), f(5), f(4)] == [12, 12, 15, 12]
    assert calls == [4, 5]
    assert len(moves) == 2
    assert all(os.path.dirname(src) == os.path.dirname(dst) for src, dst in moves)
    assert f.check_call_in_cache(4)


def test_backends_written_against_joblibs_classes_run_under_the_alias():
    """joblibspark's and Ray's shapes, registered through the alias's joblib."""
    out = run(
        """
        import joblite
        joblite.install_as_joblib()
        import threading
        from multiprocessing.pool import ThreadPool
        import joblib
        from joblib._parallel_backends import (
            AutoBatchingMixin, MultiprocessingBackend, ParallelBackendBase)
        from joblib.parallel import register_parallel_backend

        class SparkShaped(ParallelBackendBase, AutoBatchingMixin):
            def effective_n_jobs(self, n_jobs):
                return 2
            def configure(self, n_jobs=1, parallel=None, **kwargs):
                self._pool = ThreadPool(2)
                return 2
            def apply_async(self, func, callback=None):
                return self._pool.apply_async(func, callback=callback)
            def terminate(self):
                self._pool.terminate()

        class RayShaped(MultiprocessingBackend):
            def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kw):
                self._pool = ThreadPool(n_jobs)
                return n_jobs

        def where(i):
            return threading.current_thread().name

        register_parallel_backend("spark-shaped", SparkShaped)
        register_parallel_backend("ray-shaped", RayShaped)
        for name in ("spark-shaped", "ray-shaped"):
            with joblib.parallel_backend(name, n_jobs=2):
                names = joblib.Parallel()(joblib.delayed(where)(i) for i in range(8))
            assert all(n.startswith("Thread-") for n in names), names
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.slow
def test_dask_workers_get_the_alias():
    pytest.importorskip("distributed")
    out = run(
        """
        import joblite
        joblite.install_as_joblib()
        from distributed import Client, LocalCluster

        def joblib_seen(i):
            import joblib, os
            return os.getpid(), joblib.__name__

        if __name__ == "__main__":
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster):
                with joblite.parallel_config(backend="dask"):
                    seen = joblite.Parallel()(joblite.delayed(joblib_seen)(i) for i in range(6))
            print(sorted({n for _, n in seen}))
        """,
        timeout=300,
    )
    assert out.strip().splitlines()[-1] == "['joblite.alias.joblib']"


def test_alias_parallel_module_reads_joblites_configuration():
    out = run(
        """
        import sys, joblite
        joblite.install_as_joblib()
        import joblib.parallel as jp
        backend, n_jobs = jp.get_active_backend()
        assert type(backend).__name__ == "LokyBackend" and n_jobs is None
        with joblite.parallel_config(backend="threading", n_jobs=3):
            backend, n_jobs = jp.get_active_backend()
            assert type(backend).__name__ == "ThreadingBackend" and n_jobs == 3
        assert type(jp.get_active_backend(prefer="threads")[0]).__name__ == "ThreadingBackend"
        assert type(jp.get_active_backend(require="sharedmem")[0]).__name__ == "ThreadingBackend"
        assert "loky" in jp.BACKENDS and jp.BACKENDS["threading"] is jp.ThreadingBackend
        jp.BACKENDS["mine"] = jp.ThreadingBackend  # assigning registers, as in joblib
        assert "mine" in joblite.backends.BACKENDS
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_environment_variable_costs_nothing_until_joblib_is_imported():
    out = run(
        """
        import sys, joblite
        assert joblite.alias.is_installed()
        print(sorted(m for m in sys.modules if m.startswith(("joblib", "joblite.alias.joblib"))))
        """,
        env={"JOBLITE_AS_JOBLIB": "1"},
    )
    assert out.strip() == "[]"
