"""Scaling out: Parallel on a dask LocalCluster, and a Memory cache on a local S3 server.

Runnable as is (needs ``pip install 'joblite[dask,s3]' moto[server]``): it starts a 2-worker
LocalCluster and a moto S3 server on loopback, so nothing leaves this machine.
"""

from __future__ import annotations

import logging
import socket

import joblite
import numpy as np


def slow_square(x: float) -> float:
    return x * x


def column_means(data: np.ndarray, i: int) -> float:
    return float(data[:, i].mean())


def main() -> None:
    from distributed import Client, LocalCluster
    from moto.server import ThreadedMotoServer

    # 1. Parallel on a cluster: the same code, one context manager.
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster), joblite.parallel_config(backend="dask"):
            squares = joblite.Parallel()(joblite.delayed(slow_square)(i) for i in range(100))
            data = np.random.default_rng(0).standard_normal((100_000, 16))  # 12.8 MB
            # the array is scattered to the cluster once, not shipped with each task
            means = joblite.Parallel()(joblite.delayed(column_means)(data, i) for i in range(16))
    print("sum of squares:", sum(squares), "| first column mean:", round(means[0], 4))

    # 2. One cache shared by every machine: Memory on an S3 bucket.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # quiet request log of the server
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {
            "storage_options": {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
            }
        }
        import s3fs

        s3fs.S3FileSystem(**options["storage_options"]).mkdir("demo-bucket")
        memory = joblite.Memory("s3://demo-bucket/cache", backend_options=options, verbose=0)
        cached = memory.cache(column_means)
        first = cached(data, 3)
        print("cached on S3:", cached.check_call_in_cache(data, 3), "| value:", round(first, 4))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
