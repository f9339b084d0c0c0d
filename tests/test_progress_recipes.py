"""The two ways joblib users (and small packages such as tqdm-joblib and joblib-progress)
hook a progress bar into joblib, on joblite: replacing
``joblib.parallel.BatchCompletionCallBack`` with a subclass, and assigning
``joblib.parallel.Parallel.print_progress`` on the class. Both must see every task, in
joblite's own API and under the alias, as they do in joblib."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import joblite
import joblite.parallel
import pytest
from joblite import Parallel, delayed


@pytest.fixture
def counting_callback():
    """Replace joblite.parallel.BatchCompletionCallBack for one test; what it saw."""
    original = joblite.parallel.BatchCompletionCallBack
    seen: list = []

    class Counting(original):  # type: ignore[misc, valid-type]
        def __call__(self, *args, **kwargs):
            (future,) = args
            seen.append((self.batch_size, self.parallel, future.result(), self.dispatch_timestamp))
            return super().__call__(*args, **kwargs)

    joblite.parallel.BatchCompletionCallBack = Counting  # type: ignore[misc]
    try:
        yield seen
    finally:
        joblite.parallel.BatchCompletionCallBack = original  # type: ignore[misc]


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_replaced_batch_completion_callback_sees_every_batch(counting_callback, backend, n_jobs):
    seen = counting_callback
    parallel = Parallel(n_jobs=n_jobs, backend=backend, batch_size=3)
    out = parallel(delayed(abs)(-i) for i in range(10))
    assert out == list(range(10))
    assert sum(size for size, *_ in seen) == 10
    assert all(p is parallel for _, p, *_ in seen)
    assert sorted(x for _, _, results, _ in seen for x in results) == out
    assert all(isinstance(stamp, float) and stamp > 1e9 for *_, stamp in seen)  # time.time()


def test_original_callback_costs_nothing_and_is_restored(counting_callback):
    seen = counting_callback
    Parallel(n_jobs=2, backend="threading")(delayed(abs)(i) for i in range(4))
    assert len(seen) >= 1
    seen.clear()
    joblite.parallel.BatchCompletionCallBack = joblite.parallel._parallel.BatchCompletionCallBack
    Parallel(n_jobs=2, backend="threading")(delayed(abs)(i) for i in range(4))
    assert seen == []


def test_print_progress_assigned_on_the_class_is_called():
    original = Parallel.print_progress
    counts: list = []

    def update(self):
        counts.append(self.n_completed_tasks)
        return original(self)

    Parallel.print_progress = update  # type: ignore[method-assign]
    try:
        out = Parallel(n_jobs=2, backend="threading", batch_size=2)(
            delayed(abs)(-i) for i in range(10)
        )
    finally:
        Parallel.print_progress = original  # type: ignore[method-assign]
    assert out == list(range(10))
    assert counts and counts[-1] == 10 and counts == sorted(counts)
    counts.clear()
    Parallel(n_jobs=2, backend="threading")(delayed(abs)(i) for i in range(4))
    assert counts == []


RECIPES = """
import sys
if sys.argv[1] == "alias":
    import joblite
    joblite.install_as_joblib()
import joblib

completed = []
original_callback = joblib.parallel.BatchCompletionCallBack
original_print = joblib.parallel.Parallel.print_progress

class Bar(joblib.parallel.BatchCompletionCallBack):
    def __call__(self, *args, **kwargs):
        completed.append(self.batch_size)
        return super().__call__(*args, **kwargs)

last = []
def update(self):
    last.append(self.n_completed_tasks)
    return original_print(self)

joblib.parallel.BatchCompletionCallBack = Bar
joblib.parallel.Parallel.print_progress = update
try:
    out = joblib.Parallel(n_jobs=2, backend=sys.argv[2], batch_size=2)(
        joblib.delayed(abs)(-i) for i in range(12)
    )
finally:
    joblib.parallel.BatchCompletionCallBack = original_callback
    joblib.parallel.Parallel.print_progress = original_print
print(joblib.__name__, out == list(range(12)), sum(completed), max(last))
"""


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_recipes_under_the_alias_behave_as_in_joblib(backend):
    if importlib.util.find_spec("joblib") is None:
        pytest.skip("needs the real joblib (a test dependency), the oracle")
    env = {k: v for k, v in os.environ.items() if k != "JOBLITE_AS_JOBLIB"}
    outputs = {}
    for which in ("joblib", "alias"):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(RECIPES), which, backend],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs[which] = proc.stdout.split()
    assert outputs["joblib"] == ["joblib", "True", "12", "12"]
    assert outputs["alias"] == ["joblite.alias.joblib", "True", "12", "12"]


def _completion_trace(parallel_class, delayed_fn, backend, n_jobs, as_generator):
    """joblib's documented tqdm recipe (``examples/parallel/parallel_with_tqdm.py``):
    ``print_progress`` overridden, reading ``n_completed_tasks`` and ``_is_completed()``."""

    class Tracing(parallel_class):
        def print_progress(self):
            self.trace.append((self.n_completed_tasks, self._is_completed()))

    parallel = Tracing(n_jobs=n_jobs, backend=backend, batch_size=1)
    parallel.trace = []
    tasks = [delayed_fn(abs)(-i) for i in range(7)]
    out = parallel(iter(tasks) if as_generator else tasks)
    return out, parallel.trace, parallel._is_completed()


@pytest.mark.parametrize("as_generator", [False, True], ids=["list", "generator"])
@pytest.mark.parametrize("backend,n_jobs", [("sequential", 1), ("threading", 2), ("loky", 2)])
def test_print_progress_override_sees_completion_like_joblib(backend, n_jobs, as_generator):
    joblib = pytest.importorskip("joblib")
    out, trace, after = _completion_trace(Parallel, delayed, backend, n_jobs, as_generator)
    assert out == list(range(7))
    # one call per task; the last call (one more, at the end of an input of unknown
    # length, as joblib's sequential path makes) and only it sees the call completed
    assert [n for n, _ in trace][:7] == list(range(1, 8))
    assert trace[-1] == (7, True)
    assert not any(done for _, done in trace[:-1])
    assert len(trace) in (7, 8)
    assert after is True
    j_out, j_trace, j_after = _completion_trace(
        joblib.Parallel, joblib.delayed, backend, n_jobs, as_generator
    )
    assert (out, [d for _, d in trace][-1], after) == (j_out, [d for _, d in j_trace][-1], j_after)
