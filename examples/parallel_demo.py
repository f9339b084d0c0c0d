"""Parallel on tiny tasks and on large arrays: joblite next to joblib (when installed).

Called by ``examples/main_job.py``; runs alone with ``python examples/parallel_demo.py``.
Takes well under a minute on 2 cores.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import joblite
import numpy as np

N_JOBS = 2


def _best_of(run: Callable[[], Any], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _libraries() -> dict[str, Any]:
    libs: dict[str, Any] = {"joblite": joblite}
    try:
        import joblib

        libs["joblib"] = joblib
        # With two copies of loky in one process (the loky package and joblib's vendored
        # one), joblib's resource tracker prints spurious KeyError tracebacks about its
        # memmapped arguments. It is a separate process that inherits stderr, so start it
        # with stderr pointing to /dev/null: the comparison stays readable.
        from joblib.externals.loky.backend import resource_tracker

        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            resource_tracker.ensure_running()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
        joblib.Parallel(n_jobs=N_JOBS)(joblib.delayed(abs)(-1) for _ in range(2))
    except ImportError:
        print("  (joblib is not installed: joblite figures only)")
    return libs


def _row(what: str, times: dict[str, float]) -> None:
    cells = "  ".join(f"{lib} {seconds:7.3f} s" for lib, seconds in times.items())
    ratio = ""
    if len(times) == 2:
        ratio = f"  joblite is x{times['joblib'] / times['joblite']:.1f}"
    print(f"  {what:<40} {cells}{ratio}")


def array_sum(a: np.ndarray) -> float:
    return float(a.sum())


def make_16mib(i: int) -> np.ndarray:
    return np.full(16 * 2**20 // 8, float(i))


def flaky(i: int) -> float:
    if i % 7 == 3:
        raise ValueError(f"item {i} is bad")
    return i / 2


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def die(i: int) -> int:
    if i == 1:
        os._exit(9)
    time.sleep(0.05)
    return i


def main() -> None:
    libs = _libraries()
    print(f"  cpu_count()={joblite.cpu_count()}, n_jobs={N_JOBS}")

    # Tiny tasks: per-task overhead. Workers are started first (a warm pool).
    for backend, n in (("loky", 100_000), ("threading", 20_000)):
        times = {}
        for name, lib in libs.items():
            parallel = lib.Parallel(n_jobs=N_JOBS, backend=backend)
            parallel(lib.delayed(math.sqrt)(i) for i in range(10))
            repeat = 1 if (name, backend) == ("joblib", "threading") else 3
            times[name] = _best_of(
                lambda p=parallel, m=lib, n=n: p(m.delayed(math.sqrt)(i) for i in range(n)),
                repeat,
            )
        _row(f"{n // 1000}k x math.sqrt, {backend}", times)

    # One 10 MiB array shared by 200 tasks: written once to shared memory, then mapped.
    a = np.random.default_rng(0).random(10 * 2**20 // 8)
    times = {}
    for name, lib in libs.items():
        with lib.Parallel(n_jobs=N_JOBS) as parallel:
            times[name] = _best_of(
                lambda p=parallel, m=lib: p(m.delayed(array_sum)(a) for _ in range(200))
            )
    _row("200 x sum(10 MiB array), loky", times)

    # Large results come back through shared memory too.
    times = {}
    for name, lib in libs.items():
        with lib.Parallel(n_jobs=N_JOBS) as parallel:
            times[name] = _best_of(
                lambda p=parallel, m=lib: p(m.delayed(make_16mib)(i) for i in range(32)), 2
            )
    _row("32 x 16 MiB results, loky", times)

    # Threads on GIL-releasing numpy work (one BLAS thread per task).
    from threadpoolctl import threadpool_limits

    mats = [np.random.default_rng(i).random((512, 512)) for i in range(2)]
    with threadpool_limits(1):
        sequential = _best_of(lambda: [mats[0] @ mats[1] for _ in range(48)])
        threaded = _best_of(
            lambda: joblite.Parallel(n_jobs=N_JOBS, backend="threading")(
                joblite.delayed(np.dot)(mats[0], mats[1]) for _ in range(48)
            )
        )
    print(
        f"  48 x np.dot(512x512), threading: sequential {sequential:.3f} s, "
        f"joblite {threaded:.3f} s, speed-up x{sequential / threaded:.2f}"
    )

    # What joblib does not do.
    out = joblite.Parallel(n_jobs=N_JOBS, return_exceptions=True)(
        joblite.delayed(flaky)(i) for i in range(8)
    )
    print(f"  return_exceptions=True: {out}")
    order = list(
        joblite.Parallel(n_jobs=N_JOBS, backend="threading", return_as="generator_unordered")(
            joblite.delayed(nap)(d) for d in (0.3, 0.0, 0.1)
        )
    )
    print(f"  generator_unordered yields in completion order: {order}")
    events: list = []
    joblite.Parallel(n_jobs=N_JOBS, callback=events.append)(
        joblite.delayed(math.sqrt)(i) for i in range(5000)
    )
    print(f"  callback= saw {len(events)} completion events, last: {events[-1].n_completed} done")
    try:
        joblite.Parallel(n_jobs=N_JOBS)(joblite.delayed(die)(i) for i in range(4))
    except joblite.WorkerCrashedError as error:
        print(f"  a worker died: {str(error)[:90]}...")
    again = joblite.Parallel(n_jobs=N_JOBS)(joblite.delayed(math.sqrt)(i) for i in range(4))
    print(f"  ...and the next call works on fresh workers: {again}")


if __name__ == "__main__":
    main()
