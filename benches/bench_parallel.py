"""Parallel: joblite next to joblib 1.6 in the same run, n_jobs=2.

Run with ``make benchmark ARGS="-k parallel -s"``; the ratios are printed at the end.
(a) 100k tiny tasks (loky, threading; every return_as), next to multiprocessing.Pool.map at
its best chunksize and the sequential loop, and (a0) the cost of building a delayed call;
(b) 1000 x ~1 ms pure-Python tasks on processes, parallel efficiency; (c) 200 tasks summing
1 or 8 reused 10 MiB arrays; (d) 64 tasks returning 16 MiB arrays; (e) first and second call
in a fresh process; (f) threading on np.dot.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time

import joblib
import joblite
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

N_JOBS = 2
LIBS = {"joblite": joblite, "joblib": joblib}
_best: dict[str, float] = {}
# Process CPU seconds per wall second over all rounds: on a shared machine, shows how
# many cores a threaded run really got (a speed-up above that is impossible).
_cores: dict[str, float] = {}


def _record(benchmark, key: str) -> None:
    _best[key] = benchmark.stats.stats.min


@pytest.fixture(scope="module", autouse=True)
def print_ratios():
    # joblib's vendored loky must start its resource tracker before the loky package
    # does, or joblib's tracker prints spurious KeyErrors (two loky copies in one process).
    joblib.Parallel(n_jobs=N_JOBS)(joblib.delayed(abs)(-1) for _ in range(2))
    yield
    lines = ["", "Parallel benchmark ratios (min times, joblib / joblite; > 1: joblite faster)"]

    def ratio(name: str, a: str, b: str) -> None:
        if a in _best and b in _best:
            times = f"joblite {_best[a]:.4f}s  joblib {_best[b]:.4f}s"
            lines.append(f"  {name:<38} {times}  x{_best[b] / _best[a]:.2f}")

    for backend in ("loky", "threading"):
        for return_as in ("list", "generator"):
            ratio(
                f"(a) 100k tiny, {backend}, {return_as}",
                f"tiny-{backend}-joblite-{return_as}",
                f"tiny-{backend}-joblib-{return_as}",
            )
    # the machine's references: Pool.map at its best chunksize (processes), the plain
    # loop (threads: pure-Python tasks hold the GIL, so one core's work is the limit)
    for backend, ref, name in (
        ("loky", "tiny-pool-map", "Pool.map(chunksize=best)"),
        ("threading", "tiny-sequential", "the sequential loop"),
    ):
        for return_as in SUMMARY_AS:
            key = f"tiny-{backend}-joblite-{return_as}"
            if key in _best and ref in _best:
                lines.append(
                    f"  (a) 100k tiny, {backend}, {return_as}: joblite {_best[key]:.4f}s ="
                    f" x{_best[key] / _best[ref]:.2f} {name} ({_best[ref]:.4f}s)"
                )
    if "tiny-pool-map-chunksize" in _best:
        lines.append(f"  (a) Pool.map best chunksize: {_best['tiny-pool-map-chunksize']:.0f}")
    for collector in ("gc-on", "gc-off"):
        for lib in ("joblite", "joblib", "tuple"):
            key = f"delayed-{lib}-{collector}"
            if key in _best:
                what = "bare (f, (i,), {}) tuples" if lib == "tuple" else f"{lib}.delayed(f)(i)"
                lines.append(
                    f"  (a0) building 100k calls, {collector}, {what}:"
                    f" {_best[key] / N_TINY * 1e6:.3f} us a call"
                )
    if "tiny-threading-executor" in _best and "tiny-threading-joblite-list" in _best:
        executor, ours = _best["tiny-threading-executor"], _best["tiny-threading-joblite-list"]
        lines.append(
            f"  (a) 100k tiny: ThreadPoolExecutor.map {executor:.4f}s, joblite threading"
            f" x{executor / ours:.2f} faster"
        )
    for n_arrays in (1, 8):
        name = f"(c) 200 x sum, {n_arrays} x 10 MiB, loky"
        ratio(name, f"sum10x{n_arrays}-joblite", f"sum10x{n_arrays}-joblib")
        pairs = _pairs_c.get((n_arrays, "joblite"), []) + [
            (b, a) for a, b in _pairs_c.get((n_arrays, "joblib"), [])
        ]
        if pairs:
            paired = statistics.median(b / a for a, b in pairs)
            lines.append(
                f"  {name + ', paired rounds':<38} median joblib/joblite x{paired:.2f}"
                f" over {len(pairs)} back-to-back pairs (min x"
                f"{min(b / a for a, b in pairs):.2f}, max x{max(b / a for a, b in pairs):.2f})"
            )
    for kind in ("numeric", "str"):
        ratio(f"(c2) 200 x reused frame, {kind}", f"frame-{kind}-joblite", f"frame-{kind}-joblib")
        if f"frame-{kind}-sequential" in _best:
            lines.append(
                f"  (c2) 200 x reused frame, {kind}: sequential loop"
                f" {_best[f'frame-{kind}-sequential']:.4f}s"
            )
    for lib in LIBS:
        if f"cpu5-{lib}" in _best:
            lines.append(
                f"  (b2) 400 x 5 ms CPU, {lib}: {_best[f'cpu5-{lib}']:.3f}s (limit 1.000s,"
                f" x{_best[f'cpu5-{lib}']:.3f} of it)"
            )
    ratio("(d) 64 x 16 MiB results, loky", "res16-joblite", "res16-joblib")
    for lib in LIBS:
        if lib in _paired:
            eff, bare_eff, of_bare = _paired[lib]
            seq, par, bare = _sequential[lib], _best[f"cpu-{lib}"], _bare[lib]
            lines.append(
                f"  (b) 1000 x 1 ms CPU, {lib}: parallel efficiency {eff:.0%} (bare processes"
                f" {bare_eff:.0%}: {lib} at {of_bare:.0%} of their speed; medians of"
                f" rounds; min times: sequential {seq:.3f}s, {lib} {par:.3f}s, bare {bare:.3f}s)"
            )
    for lib in LIBS:
        if f"dot-{lib}" in _best and "dot-sequential" in _best:
            lines.append(
                f"  (f) np.dot 512, threading, {lib}: speed-up over sequential "
                f"x{_best['dot-sequential'] / _best[f'dot-{lib}']:.2f} (BLAS capped to 1 thread"
                f" in both; cores obtained: {_cores.get(f'dot-{lib}', 0):.2f})"
            )
    for lib in LIBS:
        if f"fresh-{lib}" in _first:
            first, second = _first[f"fresh-{lib}"]
            lines.append(f"  (e) fresh process, {lib}: first call {first:.3f}s, then {second:.3f}s")
    print("\n".join(lines))


# -- (a) tiny tasks --------------------------------------------------------------------


def sqrt_task(x: float) -> float:
    """The tiny task of (a): a one-line Python function (as user code is), ~0.1 us."""
    return math.sqrt(x)


N_TINY = 100_000
RETURN_AS = ("list", "generator", "generator_unordered")
# in the summary, next to the machine's references: every return_as, and Parallel.map
SUMMARY_AS = (*RETURN_AS, "map")


def _consume(out):
    return out if isinstance(out, list) else list(out)


@pytest.mark.parametrize("backend", ["loky", "threading"])
@pytest.mark.parametrize(
    "lib, return_as",
    [("joblite", r) for r in RETURN_AS] + [("joblib", "list"), ("joblib", "generator")],
)
def test_tiny_tasks(benchmark, lib, return_as, backend):
    """100k calls of ``sqrt_task`` through the joblib API, the calls built by the input
    generator as users write it: ``Parallel(...)(delayed(f)(i) for i in range(n))``."""
    mod = LIBS[lib]
    benchmark.group = f"parallel (a) 100k tiny tasks {backend}"
    parallel = mod.Parallel(n_jobs=N_JOBS, backend=backend, return_as=return_as)
    _consume(parallel(mod.delayed(sqrt_task)(i) for i in range(100)))  # workers started

    def run():
        return _consume(parallel(mod.delayed(sqrt_task)(i) for i in range(N_TINY)))

    rounds = 1 if (lib, backend) == ("joblib", "threading") else 7  # joblib: ~5 s a call
    out = benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert sorted(out)[-1] == math.sqrt(N_TINY - 1)
    _record(benchmark, f"tiny-{backend}-{lib}-{return_as}")


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_tiny_tasks_parallel_map(benchmark, backend):
    """joblite's addition ``Parallel(...).map(f, xs)``: Parallel's semantics, no delayed
    call built per item (the items travel as Pool.map sends them)."""
    benchmark.group = f"parallel (a) 100k tiny tasks {backend}"
    parallel = joblite.Parallel(n_jobs=N_JOBS, backend=backend)
    parallel.map(sqrt_task, range(100))  # workers started
    out = benchmark.pedantic(lambda: parallel.map(sqrt_task, range(N_TINY)), rounds=7, iterations=1)
    assert out[-1] == math.sqrt(N_TINY - 1)
    _record(benchmark, f"tiny-{backend}-joblite-map")


def test_tiny_tasks_pool_map(benchmark):
    """The standard library's best: ``multiprocessing.Pool.map`` at its best chunksize."""
    import multiprocessing

    benchmark.group = "parallel (a) 100k tiny tasks loky"
    with multiprocessing.get_context("fork").Pool(N_JOBS) as pool:
        times = {}
        for chunksize in (1_000, 5_000, 12_500, 50_000):
            rounds = []
            for _ in range(3):
                start = time.perf_counter()
                pool.map(sqrt_task, range(N_TINY), chunksize=chunksize)
                rounds.append(time.perf_counter() - start)
            times[chunksize] = min(rounds)
        best = min(times, key=times.__getitem__)
        out = benchmark.pedantic(
            lambda: pool.map(sqrt_task, range(N_TINY), chunksize=best), rounds=7, iterations=1
        )
    assert out[-1] == math.sqrt(N_TINY - 1)
    _record(benchmark, "tiny-pool-map")
    _best["tiny-pool-map-chunksize"] = best


def test_tiny_tasks_sequential(benchmark):
    """The machine's floor for (a) on one core: the plain loop, no parallelism."""
    benchmark.group = "parallel (a) 100k tiny tasks threading"
    out = benchmark.pedantic(lambda: [sqrt_task(i) for i in range(N_TINY)], rounds=7, iterations=1)
    assert out[-1] == math.sqrt(N_TINY - 1)
    _record(benchmark, "tiny-sequential")


@pytest.mark.parametrize("collector", ["gc-on", "gc-off"])
@pytest.mark.parametrize("lib", ["joblite", "joblib", "tuple"])
def test_delayed_call_cost(benchmark, lib, collector):
    """Building 100k calls ``delayed(f)(i)`` into a list (what the input generator of (a)
    does), next to building the bare tuples ``(f, (i,), {})`` joblib's API asks for; with
    the cyclic collector on (a list of 100k live containers makes it run full collections)
    and off (what a Parallel call does while it reads its input)."""
    benchmark.group = f"parallel (a0) building 100k delayed calls, {collector}"
    if lib == "tuple":
        f = sqrt_task

        def run():
            return [(f, (i,), {}) for i in range(N_TINY)]

    else:
        delayed = LIBS[lib].delayed

        def run():
            return [delayed(sqrt_task)(i) for i in range(N_TINY)]

    if collector == "gc-off":
        timed = run

        def run():
            gc.disable()
            try:
                return timed()
            finally:
                gc.enable()

    out = benchmark.pedantic(run, rounds=15, iterations=1)
    assert out[-1] == (sqrt_task, (N_TINY - 1,), {})
    _record(benchmark, f"delayed-{lib}-{collector}")


def test_tiny_tasks_thread_pool_executor(benchmark):
    """Per-task overhead of the standard library's thread pool, for comparison with (a)."""
    from concurrent.futures import ThreadPoolExecutor

    benchmark.group = "parallel (a) 100k tiny tasks threading"
    with ThreadPoolExecutor(N_JOBS) as executor:
        out = benchmark.pedantic(
            lambda: list(executor.map(sqrt_task, range(N_TINY))), rounds=3, iterations=1
        )
    assert out[-1] == math.sqrt(N_TINY - 1)
    _record(benchmark, "tiny-threading-executor")


# -- (b) parallel efficiency on ~1 ms pure-Python CPU tasks ----------------------------


def busy_ms(x: int) -> int:
    total = 0
    for i in range(17_000):  # ~1 ms of pure Python on this machine class
        total += i ^ x
    return total


def busy_many(indices: range) -> list:
    return [busy_ms(i) for i in indices]


# References of each (b) test, timed right before each of its rounds: min over the rounds.
_sequential: dict[str, float] = {}
_bare: dict[str, float] = {}
_paired: dict[str, tuple[float, float, float]] = {}


@pytest.mark.parametrize("lib", list(LIBS))
def test_cpu_bound_efficiency(benchmark, lib):
    """Efficiency = sequential time / (n_jobs x parallel time), both measured in this test.

    Reported as the median over the rounds of each round's efficiency.

    Every timed round is preceded (in pytest-benchmark's untimed ``setup``) by the
    sequential run of the same 1000 tasks in this process and by the same tasks on two
    bare processes, so all three are taken under the same conditions: on a shared 2-vCPU
    machine the speed of a core drifts by up to 2x within seconds (host load, boost
    clocks), and a sequential baseline timed in a separate test made the ratio swing
    between 78% and 133% from one run to the next. The bare processes (loky's executor
    given all the tasks at once in 40 chunks: no auto-batching, no result order, no
    back-pressure, no large-array transport) show what the machine itself allows, which
    is below 100% whenever two busy vCPUs run slower than one.
    """
    from loky import ProcessPoolExecutor

    benchmark.group = "parallel (b) 1000 x 1 ms CPU, processes"
    sequential: list[float] = []
    bare: list[float] = []
    chunks = [range(k, k + 25) for k in range(0, 1000, 25)]
    executor = ProcessPoolExecutor(max_workers=N_JOBS)
    list(executor.map(busy_many, [range(2)] * N_JOBS))  # workers started

    def measure_references() -> None:
        start = time.perf_counter()
        busy_many(range(1000))
        sequential.append(time.perf_counter() - start)
        start = time.perf_counter()
        list(executor.map(busy_many, chunks))
        bare.append(time.perf_counter() - start)

    mod = LIBS[lib]
    parallel = mod.Parallel(n_jobs=N_JOBS, backend="loky")
    parallel(mod.delayed(busy_ms)(i) for i in range(10))

    def run():
        return parallel(mod.delayed(busy_ms)(i) for i in range(1000))

    try:
        out = benchmark.pedantic(
            run, setup=measure_references, rounds=7, iterations=1, warmup_rounds=1
        )
    finally:
        executor.shutdown()
    assert len(out) == 1000
    _record(benchmark, f"cpu-{lib}")
    _sequential[lib], _bare[lib] = min(sequential), min(bare)
    benchmark.extra_info.update(sequential_s=min(sequential), bare_processes_s=min(bare))
    # Efficiency round by round (each round against the references timed just before
    # it), median over the rounds: a ratio of separate minimums would pair a sequential
    # run and a parallel run from different moments of a drifting machine.
    timed = benchmark.stats.stats.data
    pairs = list(zip(sequential[-len(timed) :], bare[-len(timed) :], timed))
    _paired[lib] = (
        statistics.median(s / (N_JOBS * t) for s, _, t in pairs),
        statistics.median(s / (N_JOBS * b) for s, b, _ in pairs),
        statistics.median(b / t for _, b, t in pairs),
    )


# -- (b2) 400 x 5 ms of CPU: the machine's limit is 1.0 s on 2 cores -------------------


def cpu_5ms(i: int) -> int:
    """Exactly 5 ms of this thread's CPU time, whatever the machine's speed."""
    end = time.thread_time() + 0.005
    while time.thread_time() < end:
        pass
    return i


@pytest.mark.parametrize("lib", list(LIBS))
def test_cpu_5ms_tasks(benchmark, lib):
    """400 tasks of 5 ms CPU each on 2 process workers: 1.0 s is the limit (target:
    within 3% of it). On a shared machine the workers may get less than 2 cores."""
    mod = LIBS[lib]
    benchmark.group = "parallel (b2) 400 x 5 ms CPU, loky"
    with mod.Parallel(n_jobs=N_JOBS, backend="loky") as parallel:
        parallel(mod.delayed(cpu_5ms)(i) for i in range(4))
        out = benchmark.pedantic(
            lambda: parallel(mod.delayed(cpu_5ms)(i) for i in range(400)), rounds=3, iterations=1
        )
    assert out == list(range(400))
    _record(benchmark, f"cpu5-{lib}")


# -- (c) large arguments reused by many tasks --------------------------------------


def array_sum(a: np.ndarray) -> float:
    return float(a.sum())


# (n_arrays, lib) -> per round: (this lib's seconds, the other lib's seconds just before)
_pairs_c: dict[tuple[int, str], list[tuple[float, float]]] = {}


@pytest.mark.parametrize("n_arrays", [1, 8])
@pytest.mark.parametrize("lib", list(LIBS))
def test_large_argument(benchmark, lib, n_arrays):
    """200 tasks summing ``n_arrays`` 10 MiB arrays (task i gets array i % n_arrays).

    Each timed round of one library follows, in pytest-benchmark's untimed ``setup``, one
    round of the other library on the same data: both are measured at the same moments.
    On this shared 2-vCPU machine the CPU share and the memory bandwidth a process gets
    swing several-fold within seconds, and summing 2 GiB per call is compute-bound, so
    the two libraries timed in separate tests (as before) gave ratios from 0.8x to 5.9x
    depending on what else ran meanwhile. The summary shows the median of the ratios of
    these pairs next to the ratio of the minimums.
    """
    mod = LIBS[lib]
    other_lib = "joblib" if lib == "joblite" else "joblite"
    other = LIBS[other_lib]
    benchmark.group = f"parallel (c) 200 x sum(10 MiB array), {n_arrays} arrays, loky"
    rng = np.random.default_rng(0)
    arrays = [rng.random(10 * 2**20 // 8) for _ in range(n_arrays)]
    other_times: list[float] = []
    # Context managers, as joblib recommends for repeated calls on one pool.
    with (
        mod.Parallel(n_jobs=N_JOBS, backend="loky") as parallel,
        other.Parallel(n_jobs=N_JOBS, backend="loky") as other_parallel,
    ):
        for p, m in ((parallel, mod), (other_parallel, other)):
            p(m.delayed(array_sum)(a[:10]) for a in arrays)

        def other_round() -> None:
            start = time.perf_counter()
            other_parallel(other.delayed(array_sum)(arrays[i % n_arrays]) for i in range(200))
            other_times.append(time.perf_counter() - start)

        def run():
            return parallel(mod.delayed(array_sum)(arrays[i % n_arrays]) for i in range(200))

        out = benchmark.pedantic(run, setup=other_round, rounds=10, iterations=1, warmup_rounds=1)
    assert out[0] == pytest.approx(arrays[0].sum())
    _record(benchmark, f"sum10x{n_arrays}-{lib}")
    timed = benchmark.stats.stats.data
    _pairs_c[(n_arrays, lib)] = list(zip(timed, other_times[-len(timed) :]))


# -- (c2) a reused DataFrame, numeric or with a str column ------------------------------


def frame_task(frame, i: int) -> float:
    """A light task over a large frame: one value of the numeric column."""
    return float(frame["x"].iat[i])


_frames: dict[str, object] = {}


def _frame(kind: str):
    pd = pytest.importorskip("pandas", reason="pandas is needed for (c2)")
    if kind not in _frames:
        n = 1_000_000
        frame = pd.DataFrame({"x": np.arange(n, dtype=np.float64), "y": np.arange(n) % 7})
        if kind == "str":  # pyarrow-backed (pandas 3's default str dtype)
            pytest.importorskip("pyarrow", reason="pyarrow backs pandas' str columns")
            frame["s"] = pd.array([f"key{i % 1000}" for i in range(n)], dtype="string[pyarrow]")
        _frames[kind] = frame
    return _frames[kind]


@pytest.mark.parametrize("kind", ["numeric", "str"])
@pytest.mark.parametrize("lib", [*LIBS, "sequential"])
def test_reused_dataframe(benchmark, lib, kind):
    """200 tasks over one reused 1M-row pandas DataFrame, in a ``with Parallel`` block:
    with a str column (Arrow buffers) it should cost what a numeric frame does."""
    frame = _frame(kind)
    benchmark.group = f"parallel (c2) 200 tasks over a reused 1M-row DataFrame, {kind}"
    if lib == "sequential":
        out = benchmark.pedantic(
            lambda: [frame_task(frame, i) for i in range(200)], rounds=10, iterations=1
        )
    else:
        mod = LIBS[lib]
        with mod.Parallel(n_jobs=N_JOBS, backend="loky") as parallel:
            parallel(mod.delayed(frame_task)(frame, i) for i in range(4))

            def run():
                return parallel(mod.delayed(frame_task)(frame, i) for i in range(200))

            out = benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    assert out[199] == 199.0
    _record(benchmark, f"frame-{kind}-{lib}")


# -- (d) large results ----------------------------------------------------------------


def make_16mib(i: int) -> np.ndarray:
    return np.full(16 * 2**20 // 8, float(i))


@pytest.mark.parametrize("lib", list(LIBS))
def test_large_results(benchmark, lib):
    mod = LIBS[lib]
    benchmark.group = "parallel (d) 64 x 16 MiB results, loky"
    with mod.Parallel(n_jobs=N_JOBS, backend="loky") as parallel:
        parallel(mod.delayed(make_16mib)(i) for i in range(2))

        def run():
            out = parallel(mod.delayed(make_16mib)(i) for i in range(64))
            return [float(x[-1]) for x in out]  # touch every result

        out = benchmark.pedantic(run, rounds=3, iterations=1)
    assert out == [float(i) for i in range(64)]
    _record(benchmark, f"res16-{lib}")


# -- (e) first call in a fresh process ------------------------------------------------

FRESH = textwrap.dedent(
    """
    import json, math, time
    import {lib} as mod
    t0 = time.perf_counter()
    mod.Parallel(n_jobs=2)(mod.delayed(math.sqrt)(i) for i in range(1000))
    t1 = time.perf_counter()
    mod.Parallel(n_jobs=2)(mod.delayed(math.sqrt)(i) for i in range(1000))
    t2 = time.perf_counter()
    print(json.dumps([t1 - t0, t2 - t1]))
    """
)
_first: dict[str, tuple[float, float]] = {}


@pytest.mark.parametrize("lib", list(LIBS))
def test_first_call_in_fresh_process(benchmark, lib):
    benchmark.group = "parallel (e) fresh process: import + first + second call"
    runs = []

    def run():
        command = [sys.executable, "-c", FRESH.format(lib=lib)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))

    benchmark.pedantic(run, rounds=3, iterations=1)
    _first[f"fresh-{lib}"] = (min(r[0] for r in runs), min(r[1] for r in runs))
    benchmark.extra_info["first_call_s"], benchmark.extra_info["second_call_s"] = _first[
        f"fresh-{lib}"
    ]


# -- (f) threading on a GIL-releasing numpy task --------------------------------------


@pytest.mark.parametrize("lib", ["sequential", *LIBS])
def test_threading_numpy(benchmark, lib):
    benchmark.group = "parallel (f) 64 x np.dot(512x512), threading"
    rng = np.random.default_rng(0)
    mats = [rng.random((512, 512)) for _ in range(4)]
    # One BLAS thread per task, in the sequential run too: OpenBLAS would otherwise use
    # both cores for one np.dot, and the pool would have nothing left to win.
    with threadpool_limits(1):
        if lib == "sequential":

            def run():
                return [np.dot(mats[i % 4], mats[(i + 1) % 4]) for i in range(64)]

        else:
            mod = LIBS[lib]
            parallel = mod.Parallel(n_jobs=N_JOBS, backend="threading")

            def run():
                return parallel(
                    mod.delayed(np.dot)(mats[i % 4], mats[(i + 1) % 4]) for i in range(64)
                )

        wall, cpu = time.perf_counter(), os.times()
        out = benchmark.pedantic(run, rounds=5, iterations=1)
        wall, after = time.perf_counter() - wall, os.times()
    assert len(out) == 64
    _record(benchmark, f"dot-{lib}")
    _cores[f"dot-{lib}"] = (after.user - cpu.user + after.system - cpu.system) / wall
