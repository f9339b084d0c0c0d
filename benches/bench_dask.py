"""Parallel on a 2-worker dask LocalCluster: joblite's dask backend next to joblib's, one run.

Run: ``make benchmark ARGS="-k dask"``. ``extra_info.loopback_MiB`` is the traffic on the
loopback interface during one round: it shows that large arrays are scattered once instead of
being shipped with every task.
"""

from __future__ import annotations

import math

import joblib
import joblite
import numpy as np
import psutil
import pytest

distributed = pytest.importorskip("distributed")


def array_sum(a, i):
    return float(a[i])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _loopback_sent() -> int:
    counters = psutil.net_io_counters(pernic=True).get("lo")
    return counters.bytes_sent if counters else 0


def _run(benchmark, lib, tasks, rounds):
    module = joblite if lib == "joblite" else joblib

    def once():
        with module.parallel_config(backend="dask"):
            return module.Parallel()(tasks(module.delayed))

    once()  # warm-up: workers have imported everything
    before = _loopback_sent()
    benchmark.pedantic(once, rounds=rounds, iterations=1)
    benchmark.extra_info["loopback_MiB"] = round((_loopback_sent() - before) / rounds / 2**20, 1)


@pytest.mark.benchmark(group="dask: 10k tiny tasks")
@pytest.mark.parametrize("lib", ["joblite", "joblib"])
def test_tiny_tasks(benchmark, client, lib):
    _run(benchmark, lib, lambda d: (d(math.sqrt)(i) for i in range(10_000)), 3)


@pytest.mark.benchmark(group="dask: 200 tasks with a 10 MiB array")
@pytest.mark.parametrize("lib", ["joblite", "joblib"])
def test_large_array_tasks(benchmark, client, lib):
    arr = np.random.default_rng(0).standard_normal(10 * 2**20 // 8)
    _run(benchmark, lib, lambda d: (d(array_sum)(arr, i) for i in range(200)), 3)
