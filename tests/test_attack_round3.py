"""Third attacker's pass over the cache: each test reproduces a wrong answer found by trying
to break Memory through its public API, and checks the behaviour that replaced it."""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings

import pytest
from joblite import Memory

PLUGIN = """
SCALE = {scale}


def scaled(x):
    return x * SCALE
"""


def _load_unregistered(path, name="plugin"):
    """A module loaded from a file the way plugin systems do it: never put in sys.modules."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_code_in_two_unregistered_modules_never_shares_results(tmp_path):
    # Two copies of one plugin file, loaded as module objects that are not in sys.modules,
    # differ only by a module constant: same module name, qualified name and code. The
    # second copy used to get the first copy's result (x * 2 for x * 100).
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "plugin.py").write_text(PLUGIN.format(scale=2))
    (tmp_path / "b" / "plugin.py").write_text(PLUGIN.format(scale=100))
    assert "plugin" not in sys.modules
    first = _load_unregistered(tmp_path / "a" / "plugin.py")
    second = _load_unregistered(tmp_path / "b" / "plugin.py")
    mem = Memory(tmp_path / "cache", verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two share a name: a collision warning is fine
        assert mem.cache(first.scaled)(3) == 6
        assert mem.cache(second.scaled)(3) == 300
        assert mem.cache(first.scaled)(3) == 6


def test_exec_made_functions_reading_different_globals_never_share(tmp_path):
    source = "def scaled(x):\n    return x * SCALE\n"
    small: dict = {"SCALE": 2}
    big: dict = {"SCALE": 100}
    exec(source, small)
    exec(source, big)
    mem = Memory(tmp_path, verbose=0)
    assert mem.cache(small["scaled"])(3) == 6
    assert mem.cache(big["scaled"])(3) == 300


def test_an_unregistered_module_function_still_hits_across_decorations(tmp_path):
    (tmp_path / "plugin.py").write_text(PLUGIN.format(scale=2))
    module = _load_unregistered(tmp_path / "plugin.py")
    mem = Memory(tmp_path / "cache", verbose=0)
    assert mem.cache(module.scaled)(4) == 8
    reloaded = _load_unregistered(tmp_path / "plugin.py")
    # same file, same constants: the same key, a hit (no recomputation needed)
    assert mem.cache(reloaded.scaled).check_call_in_cache(4)


def test_an_unhashable_global_of_an_unregistered_function_keeps_the_joblib_key(tmp_path):
    import threading

    module = types.ModuleType("plugin_with_lock")
    exec("def locked(x):\n    with LOCK:\n        return x + 1\n", module.__dict__)
    module.LOCK = threading.Lock()
    mem = Memory(tmp_path, verbose=0)
    with pytest.warns(UserWarning, match="global LOCK"):
        cached = mem.cache(module.locked)
    assert cached(1) == 2
    assert cached(1) == 2


def _quick_or_slow(i):
    import time

    time.sleep(0.05 if i == 0 else 20)
    return i


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_breaking_out_of_a_generator_does_not_leave_its_tasks_blocking_the_next_call(backend):
    # `for r in Parallel(return_as=...)(...): break` on the first good result is how early
    # stopping is written. The batches still running (20 s each here) used to keep the
    # workers busy: the next call waited for them, and so did the interpreter's exit.
    import time

    from joblite import Parallel, delayed

    for return_as in ("generator", "generator_unordered"):
        gen = Parallel(n_jobs=2, backend=backend, return_as=return_as)(
            delayed(_quick_or_slow)(i) for i in range(10)
        )
        for first in gen:
            assert first == 0
            break
        gen.close()
        start = time.monotonic()
        again = Parallel(n_jobs=2, backend=backend)(delayed(abs)(-i) for i in range(4))
        assert again == [0, 1, 2, 3]
        assert time.monotonic() - start < 10


def test_a_script_that_breaks_out_of_a_generator_exits_promptly(tmp_path):
    import subprocess
    import textwrap
    import time

    script = tmp_path / "early_stop.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from joblite import Parallel, delayed

            def slow(i):
                time.sleep(0.05 if i == 0 else 20)
                return i

            for r in Parallel(n_jobs=2, return_as="generator_unordered")(
                delayed(slow)(i) for i in range(10)
            ):
                break
            print("stopped", r, flush=True)
            """
        )
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped 0"
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("how", ["timeout", "error", "break", "managed-timeout"])
def test_threads_left_running_by_an_aborted_call_do_not_block_the_next_call(how):
    # Threads cannot be killed: an aborted call (a timeout, a failing task, a generator
    # closed early) leaves its running batches on the workers. The thread pool is shared by
    # every call of one n_jobs, so the next call used to queue behind them: forever, when
    # they hang (joblib's next call gets fresh threads).
    import threading
    import time

    from joblite import Parallel, delayed

    release = threading.Event()

    def task(i):
        if i != 2:
            release.wait(60)  # tasks 0, 1 and 3: every worker ends up stuck
        elif how == "error":
            raise ValueError("task 2 failed")
        return i

    def calls():
        return (delayed(task)(i) for i in range(6))

    n_jobs = 3  # a pool of its own in this test run
    try:
        if how == "timeout":
            with pytest.raises(TimeoutError):
                Parallel(n_jobs=n_jobs, backend="threading", timeout=0.5)(calls())
        elif how == "error":
            with pytest.raises(ValueError, match="task 2 failed"):
                Parallel(n_jobs=n_jobs, backend="threading")(calls())
        elif how == "break":
            gen = Parallel(n_jobs=n_jobs, backend="threading", return_as="generator_unordered")
            for value in gen(calls()):
                assert value == 2
                break
        if how != "managed-timeout":
            time.sleep(0.3)  # the worker that ran task 2 has taken task 3
        if how == "managed-timeout":
            with Parallel(n_jobs=n_jobs, backend="threading", timeout=0.5) as parallel:
                with pytest.raises(TimeoutError):
                    parallel(calls())
                start = time.monotonic()
                assert parallel(delayed(abs)(-i) for i in range(6)) == list(range(6))
                assert time.monotonic() - start < 10
        start = time.monotonic()
        again = Parallel(n_jobs=n_jobs, backend="threading")(delayed(abs)(-i) for i in range(6))
        assert again == list(range(6))
        assert time.monotonic() - start < 10
    finally:
        release.set()


def test_a_function_of_a_module_replaced_by_a_stand_in_keeps_its_name_key(tmp_path, monkeypatch):
    # Some packages replace their module in sys.modules by an object that forwards to it: its
    # functions are still found by name, so they keep the name key (no by-value walk of their
    # globals, no warning about a global that cannot be hashed).
    import threading

    real = types.ModuleType("stand_in_target")
    exec("def locked(x):\n    with LOCK:\n        return x + 1\n", real.__dict__)
    real.LOCK = threading.Lock()

    class StandIn(types.ModuleType):
        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setitem(sys.modules, "stand_in_target", StandIn("stand_in_target"))
    mem = Memory(tmp_path, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached = mem.cache(real.locked)
        assert cached(1) == 2
        assert cached.check_call_in_cache(1)
