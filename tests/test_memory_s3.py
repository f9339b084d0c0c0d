"""Memory on object storage: a real S3-compatible server (moto) on loopback, through s3fs."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import joblite
import numpy as np
import pytest
from joblite import CacheWarning, Memory

s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'joblite[s3]')")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "joblite-cache"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"could not start the moto S3 server on loopback: {exc!r}")
    url = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": url})
    fs.mkdir(BUCKET)
    try:
        yield url
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_location(s3_endpoint, request):
    prefix = f"s3://{BUCKET}/{request.node.name}-{time.monotonic_ns()}"
    options = {
        "storage_options": {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": s3_endpoint},
        }
    }
    return prefix, options


def _raw_fs(s3_endpoint):
    return s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": s3_endpoint},
        skip_instance_cache=True,
        use_listings_cache=False,
    )


def test_entries_are_shared_by_every_memory_on_the_bucket(s3_location, tmp_path):
    location, options = s3_location
    calls = []

    def compute(x, scale=2):
        calls.append(x)
        return np.full(1000, x * scale)

    mem = Memory(location, backend_options=options, verbose=0)
    cached = mem.cache(compute)
    assert (cached(3) == 6).all() and (cached(3) == 6).all()
    assert calls == [3]
    # a second Memory on the same URL (another "machine") sees the entry
    other = Memory(location, backend_options=options, verbose=0).cache(compute)
    assert other.check_call_in_cache(3) and (other(3) == 6).all()
    assert calls == [3]
    mapped = Memory(location, backend_options=options, mmap_mode="r", verbose=0).cache(compute)
    result = mapped(3)
    assert isinstance(result, np.memmap) and (result == 6).all()
    assert calls == [3]


SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import joblite
    sys.path.insert(0, {tests!r})
    from test_memory_s3 import shared_work
    mem = joblite.Memory({location!r}, backend_options={options!r}, verbose=0)
    print(json.dumps(mem.cache(shared_work)(int(sys.argv[1]))))
    """
)


def shared_work(x):
    with open(os.environ["JOBLITE_TEST_LOG"], "a") as f:
        f.write(f"{x}\n")
    return [x, x * x]


def test_entries_are_shared_across_processes(s3_location, tmp_path):
    location, options = s3_location
    log = tmp_path / "computed.txt"
    env = dict(os.environ, JOBLITE_TEST_LOG=str(log))
    script = SUBPROCESS.format(tests=os.path.dirname(__file__), location=location, options=options)
    outs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script, "7"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        outs.append(json.loads(out.stdout))
    assert outs == [[7, 49], [7, 49]]
    assert log.read_text().split() == ["7"]  # computed once, by the first process


def test_code_change_invalidates(s3_location, caplog):
    location, options = s3_location
    mem = Memory(location, backend_options=options, verbose=1)
    ns: dict = {}
    src = "def compute(x):\n    return x + {k}\n"
    exec(compile(src.format(k=1), "<test>", "exec"), ns)
    assert mem.cache(ns["compute"])(1) == 2
    exec(compile(src.format(k=10), "<test>", "exec"), ns)
    with caplog.at_level(logging.WARNING, logger="joblite"):
        assert mem.cache(ns["compute"])(1) == 11
    assert "has changed" in caplog.text


def corrupt_me(x):
    return {"value": x, "data": list(range(x))}


def test_corrupt_or_missing_output_is_a_miss_with_a_warning(s3_location, s3_endpoint):
    location, options = s3_location
    mem = Memory(location, backend_options=options, verbose=0)
    cached = mem.cache(corrupt_me)
    assert cached(5)["value"] == 5
    fs = _raw_fs(s3_endpoint)
    outputs = [p for p in fs.find(location) if "/output-" in p]
    assert len(outputs) == 1
    fs.pipe_file(outputs[0], b"garbage, not a container")
    with pytest.warns(CacheWarning):
        assert cached(5) == {"value": 5, "data": [0, 1, 2, 3, 4]}
    # replaced: the next call is a clean hit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached(5)["value"] == 5
    outputs = [p for p in fs.find(location) if "/output-" in p]
    fs.rm(outputs[0])
    with pytest.warns(CacheWarning):
        assert cached(5)["value"] == 5


def test_an_output_without_metadata_is_invisible(s3_location, s3_endpoint):
    location, options = s3_location
    mem = Memory(location, backend_options=options, verbose=0)
    calls = []

    def work(x):
        calls.append(x)
        return x + 1

    cached = mem.cache(work)
    assert cached(1) == 2
    fs = _raw_fs(s3_endpoint)
    [meta] = [p for p in fs.find(location) if p.endswith("metadata.json")]
    fs.rm(meta)  # as if the writer died before publishing
    assert not cached.check_call_in_cache(1)
    assert cached(1) == 2 and calls == [1, 1]


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import joblite
    sys.path.insert(0, {tests!r})
    from test_memory_s3 import big_result
    mem = joblite.Memory({location!r}, backend_options={options!r}, verbose=0)
    f = mem.cache(big_result)
    print("ready", flush=True)
    for i in range(1000):
        f(i)
    """
)


def big_result(i):
    return np.full(200_000, i, dtype=np.float64)


def test_sigkill_while_writing_never_leaves_a_partial_entry(s3_location):
    location, options = s3_location
    script = WRITER.format(tests=os.path.dirname(__file__), location=location, options=options)
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()  # reaps it and closes the pipes
    mem = Memory(location, backend_options=options, verbose=0)
    cached = mem.cache(big_result)
    seen = [i for i in range(60) if cached.check_call_in_cache(i)]
    assert seen, "the writers stored nothing before being killed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a partial entry would be a CacheWarning here
        for i in seen:
            assert (cached(i) == i).all()


def test_reduce_size_and_cli_on_the_bucket(s3_location, s3_endpoint):
    location, options = s3_location
    mem = Memory(location, backend_options=options, verbose=0)

    def item(i):
        return np.zeros(10_000) + i

    cached = mem.cache(item)
    for i in range(5):
        cached(i)
    cli_args = ["--storage-options", json.dumps(options["storage_options"])]
    out = subprocess.run(
        [sys.executable, "-m", "joblite", "cache", "info", location, "--json", *cli_args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["total"]["entries"] == 5
    mem.reduce_size(items_limit=2)
    assert sum(cached.check_call_in_cache(i) for i in range(5)) == 2
    out = subprocess.run(
        [sys.executable, "-m", "joblite", "cache", "clear", location, "--json", *cli_args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert not any(cached.check_call_in_cache(i) for i in range(5))


def test_other_fsspec_urls(tmp_path):
    calls = []

    def double(x):
        calls.append(x)
        return 2 * x

    for url in (f"file://{tmp_path}/cache", "memory://joblite-test-cache"):
        cached = Memory(url, verbose=0).cache(double)
        assert cached(21) == 42 and cached(21) == 42
    assert calls == [21, 21]
    assert joblite.Memory(f"file://{tmp_path}/cache", verbose=0).cache(double)(21) == 42
    assert calls == [21, 21]


def test_deleted_output_object_warns_and_recomputes(s3_location, s3_endpoint):
    location, options = s3_location
    calls = []

    def compute(x):
        calls.append(x)
        return np.full(10, x)

    cached = Memory(location, backend_options=options, verbose=0).cache(compute)
    assert (cached(4) == 4).all()
    fs = _raw_fs(s3_endpoint)
    bucket_path = location.split("://", 1)[1]
    outputs = [p for p in fs.find(bucket_path) if p.rsplit("/", 1)[-1].startswith("output-")]
    assert len(outputs) == 1
    fs.rm(outputs[0])
    with pytest.warns(joblite.CacheWarning, match="missing"):
        assert (cached(4) == 4).all()
    assert calls == [4, 4]
    assert (cached(4) == 4).all() and calls == [4, 4]


def test_memorized_func_and_result_pickle_and_count_hits(s3_location):
    location, options = s3_location
    mem = Memory(location, backend_options=options, verbose=0)
    cached = mem.cache(abs)
    shelved = cached.call_and_shelve(-3)
    again, shelved_again = pickle.loads(pickle.dumps((cached, shelved)))
    assert shelved_again.get() == 3 and again(-3) == 3
    again.store_backend.flush()
    assert mem.stats().hits >= 1
