"""Regression tests of Memory defects: each reproduces a reported failure through the public
API and checks the behaviour that replaced it."""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings

import joblite
import numpy as np
import pytest
from joblite import Memory, Parallel, delayed
from joblite.exceptions import UnhashableError
from joblite.memory import JobLibCollisionWarning


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    mem = Memory("~/cache", verbose=0)
    assert mem.cache(abs)(-3) == 3
    assert (tmp_path / "cache" / "joblite").is_dir()
    assert not (tmp_path / "~").exists()


def test_unhashable_argument_names_the_parameter(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    @mem.cache
    def count_lines(path, handle):
        return path

    with open(__file__) as handle:
        with pytest.raises(UnhashableError, match=r"argument 'handle'.*ignore=\['handle'\]"):
            count_lines("x", handle)
        with pytest.raises(TypeError):  # also a TypeError, and joblib's PicklingError
            count_lines("x", handle)
        with pytest.raises(pickle.PicklingError):
            count_lines("x", handle)
        ignored = mem.cache(count_lines.func, ignore=["handle"])
        assert ignored("x", handle) == "x"


def test_verbose_one_is_concise(tmp_path, capsys):
    mem = Memory(tmp_path, verbose=1)

    @mem.cache
    def total(a):
        return a.sum()

    total(np.ones((200, 50)))
    lines = capsys.readouterr().out.splitlines()
    # rule, "Calling", the call (numpy summarised to its corners: 3 lines), the footer
    assert len(lines) <= 6, lines
    assert lines[1].startswith("[Memory] Calling ") and lines[1].endswith(".total...")
    assert "..." in lines[2]


def test_age_limit_applies_on_read(tmp_path):
    calls = []
    mem = Memory(tmp_path, verbose=0, age_limit=datetime.timedelta(seconds=0.5))
    f = mem.cache(lambda x: calls.append(x) or x)
    assert f(1) == 1 and f(1) == 1
    assert calls == [1]
    time.sleep(0.8)
    assert f(1) == 1  # expired: a miss, computed again
    assert calls == [1, 1]


def test_closures_of_one_factory_never_share(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def make_scaler(k):
        def scale(x):
            return x * k

        return scale

    by2, by3 = mem.cache(make_scaler(2)), mem.cache(make_scaler(3))
    assert [by2(5), by3(5), by2(5), by3(5)] == [10, 15, 10, 15]


def test_closures_as_arguments_hash_by_what_they_captured(tmp_path):
    def make_adder(n):
        return lambda x: x + n

    assert joblite.hash(make_adder(1)) != joblite.hash(make_adder(100))
    assert joblite.hash(make_adder(1)) == joblite.hash(make_adder(1))
    mem = Memory(tmp_path, verbose=0)
    apply = mem.cache(lambda fn, x: fn(x))
    assert apply(make_adder(1), 5) == 6 and apply(make_adder(100), 5) == 105


def test_two_lambdas_on_one_line(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda x: x + 1)
    g = mem.cache(lambda x: x * 10)
    assert [f(2), g(2), f(2), g(2)] == [3, 20, 3, 20]


def test_same_name_collision_is_kept_apart_and_reported(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    @mem.cache
    def twin(x):
        return x

    a = twin

    @mem.cache
    def twin(x):
        return -x

    with pytest.warns(JobLibCollisionWarning, match="collision"):
        assert a(1) == 1 and twin(1) == -1
    assert a(1) == 1 and twin(1) == -1


def test_in_memory_code_change_invalidates(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def f(a, b):
        return a + b

    cached = mem.cache(f)
    assert cached(2, 3) == 5
    f.__code__ = (lambda a, b: a * b).__code__
    with pytest.warns(JobLibCollisionWarning, match="replaced in memory"):
        assert cached(2, 3) == 6
    assert cached(2, 3) == 6


def test_cached_function_and_result_on_fsspec_store_pickle(tmp_path):
    pytest.importorskip("fsspec")
    mem = Memory(f"file://{tmp_path}/c", verbose=0)
    f = mem.cache(abs)
    assert f(-2) == 2
    shelved = f.call_and_shelve(-4)
    f2, shelved2 = pickle.loads(pickle.dumps((f, shelved)))
    assert f2.check_call_in_cache(-2) and shelved2.get() == 4


def test_worker_hits_are_counted(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(abs)
    Parallel(n_jobs=2, backend="loky")(delayed(f)(-i) for i in range(4))  # 4 misses
    Parallel(n_jobs=2, backend="loky")(delayed(f)(-i) for i in range(4) for _ in range(4))
    stats = mem.stats()
    assert (stats.misses, stats.hits, stats.entries) == (4, 16, 4)
    assert stats.functions["builtins/abs"].hits == 16


def test_access_log_stays_bounded(tmp_path):
    mem = Memory(tmp_path, verbose=0, backend_options={"access_flush_interval": 0})
    f = mem.cache(abs)
    f(-1)
    for _ in range(5000):
        f(-1)
    mem.store_backend.flush()
    log = tmp_path / "joblite" / "builtins" / "abs" / "access.log"
    assert log.stat().st_size < 200 * 1024  # 5,000 hits of 48 bytes were 240 KB
    assert mem.stats().hits == 5000


def test_zombie_lock_owner_does_not_block_waiters(tmp_path):
    mem = Memory(tmp_path, verbose=0, compute_once_timeout=60)
    f = mem.cache(abs)
    key = f._get_args_id(-5)
    store = mem.store_backend
    # a child that takes the entry's lock and dies without being reaped: a zombie
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:
        with open(f"/proc/{child.pid}/stat") as s:
            if s.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    lock = store._lock_path(f.func_id, key)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w") as fh:
        fh.write(f"{child.pid} {os.uname().nodename} {time.time():.3f}\n")
    start = time.monotonic()
    assert f(-5) == 5
    assert time.monotonic() - start < 30
    child.wait()


def test_killed_writer_leftovers_are_swept(tmp_path):
    script = (
        "import os, numpy as np, joblite\n"
        "from joblite.store.local import layout as local\n"
        "mem = joblite.Memory(os.environ['LOC'], verbose=0)\n"
        "orig = local.dump\n"
        "def dying(*a, **k):\n"
        "    orig(*a, **k)\n"
        "    os._exit(9)\n"
        "local.dump = dying\n"
        "mem.cache(np.ones)(300000)\n"
    )
    env = {**os.environ, "LOC": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=False)
    root = tmp_path / "joblite" / "numpy" / "ones" / ".writing"
    assert len(list(root.iterdir())) == 1  # the killed write's folder
    mem = Memory(tmp_path, verbose=0)
    assert mem.cache(np.ones)(10).sum() == 10  # the next write sweeps it
    assert [p.name for p in root.iterdir()] == []


def test_concurrent_clear_is_not_a_failure(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(np.ones)
    clearer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, joblite\n"
            "m = joblite.Memory(sys.argv[1], verbose=0)\n"
            "end = time.time() + 2\n"
            "while time.time() < end:\n"
            "    m.clear(warn=False)\n",
            str(tmp_path),
        ]
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i in range(300):
                assert f(1000 + i % 7).shape == (1000 + i % 7,)
    finally:
        clearer.wait()


def test_fsspec_deleted_output_warns_and_recomputes(tmp_path):
    pytest.importorskip("fsspec")
    calls = []
    mem = Memory(f"file://{tmp_path}/c", verbose=0)
    f = mem.cache(lambda x: calls.append(x) or x * 2)
    assert f(3) == 6
    for path in (tmp_path / "c").rglob("output-*"):
        path.unlink()
    with pytest.warns(joblite.CacheWarning, match="missing|output"):
        assert f(3) == 6
    assert calls == [3, 3]


def test_joblib_style_store_backend(tmp_path):
    joblib_store = pytest.importorskip("joblib._store_backends")

    class MyStore(joblib_store.StoreBackendBase):
        """A store written for joblib: only joblib's seven methods."""

        _open_item = staticmethod(open)
        _item_exists = staticmethod(os.path.exists)

        def _move_item(self, src, dst):
            os.replace(src, dst)

        def create_location(self, location):
            os.makedirs(location, exist_ok=True)

        def clear_location(self, location):
            shutil.rmtree(location, ignore_errors=True)

        def get_items(self):
            return []

        def configure(self, location, verbose=0, backend_options=None):
            self.location = location
            os.makedirs(location, exist_ok=True)

    joblite.register_store_backend("my-joblib-store", MyStore)
    calls = []
    mem = Memory(tmp_path, backend="my-joblib-store", verbose=0)
    f = mem.cache(lambda x: calls.append(x) or np.arange(x))
    assert f(5).tolist() == [0, 1, 2, 3, 4] and f(5).tolist() == [0, 1, 2, 3, 4]
    assert calls == [5]
    assert f.check_call_in_cache(5)
    f.clear(warn=False)
    assert not f.check_call_in_cache(5)


def test_store_registration_errors():
    with pytest.raises(ValueError, match="Store backend name should be a string"):
        joblite.register_store_backend(None, None)
    with pytest.raises(ValueError, match="Store backend should inherit StoreBackendBase"):
        joblite.register_store_backend("fs", None)
    with pytest.raises(TypeError, match="Unknown location"):
        Memory("/tmp/joblite-unknown", backend="unknown")


def test_hash_errors_like_joblib():
    with pytest.raises(ValueError, match="Valid options for 'hash_name' are"):
        joblite.hash(1, hash_name="invalid")
    with open(__file__) as handle:
        with pytest.raises(pickle.PicklingError, match="PicklingError while hashing"):
            joblite.hash({"f": handle})


def test_has_changed_logged_once_not_thrashed(tmp_path, caplog):
    mem = Memory(tmp_path, verbose=1)
    ns: dict = {}
    src = "def compute(x):\n    return x + {k}\n"
    exec(compile(src.format(k=1), "<defects>", "exec"), ns)
    f1 = mem.cache(ns["compute"])
    assert f1(1) == 2
    exec(compile(src.format(k=10), "<defects>", "exec"), ns)
    with caplog.at_level(logging.WARNING, logger="joblite"):
        f2 = mem.cache(ns["compute"])
        assert f2(1) == 11 and f2(1) == 11
    assert caplog.text.count("has changed") == 1


def test_chained_steps_do_not_rehash_their_inputs(tmp_path, monkeypatch):
    """Step N's argument is step N-1's memory-mapped result: its key comes from the digest
    stored with that result, not from reading the data again (docs/memory.md)."""
    from joblite.memory import chain

    def load(n):
        return np.random.default_rng(0).random(n)

    def smooth(x):
        out = np.empty_like(x)  # a memmap not backed by a file, when x is mapped
        out[:] = x * 0.5
        return out

    def total(x):
        return float(x.sum())

    def run():
        mem = Memory(tmp_path, mmap_mode="r", verbose=0)
        steps = [mem.cache(f) for f in (load, smooth, total)]
        value = steps[0](400_000)  # 3.2 MB
        value = steps[1](value)
        assert type(value) is np.memmap and value.filename  # stored as an array, mapped
        return steps[2](value)

    expected = run()
    hashed = []
    real_hash = chain._core.hash

    class Spy:
        def hash(self, obj, *args):
            hashed.append(type(obj).__name__)
            return real_hash(obj, *args)

    monkeypatch.setattr(chain, "_core", Spy())
    assert run() == expected
    assert hashed == []  # no array argument was read to be hashed
    # and an equal plain array (hashed) gives the same key: a hit, not a recomputation
    monkeypatch.setattr(chain, "_core", Spy())
    mem = Memory(tmp_path, mmap_mode="r", verbose=0)
    x = np.random.default_rng(0).random(400_000) * 0.5
    assert mem.cache(total).check_call_in_cache(x)
    assert hashed == ["ndarray"]


def test_hit_does_not_wait_for_a_compacting_process(tmp_path):
    import fcntl

    mem = Memory(tmp_path, verbose=0, backend_options={"access_flush_interval": 0})
    f = mem.cache(abs)
    f(-1)
    f(-1)
    log = tmp_path / "joblite" / "builtins" / "abs" / "access.log"
    with open(log, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a compacting process holds
        for _ in range(10):
            assert f(-1) == 1  # returns at once; the records wait in memory
        size_while_held = log.stat().st_size
    assert mem.stats().hits == 11  # written once the lock is free: none lost
    assert log.stat().st_size > size_while_held


def test_check_call_in_cache_answers_what_the_call_will_do_after_age_limit(tmp_path):
    """An entry past ``age_limit`` is recomputed by the next call: ``check_call_in_cache``
    must say ``False`` for it (it said ``True``), and asking must not refresh its age."""
    calls = []
    mem = Memory(tmp_path, verbose=0, age_limit=datetime.timedelta(seconds=0.5))
    f = mem.cache(lambda x: calls.append(x) or x)
    f(1)
    assert f.check_call_in_cache(1)
    time.sleep(0.8)
    assert not f.check_call_in_cache(1)
    assert not f.check_call_in_cache(1)  # asking is not a use
    f(1)
    assert calls == [1, 1]
    assert f.check_call_in_cache(1)


def test_a_store_cleared_at_every_write_returns_the_result_without_warning(tmp_path, monkeypatch):
    # what a clear in a tight loop (another process) does at worst: the entry being written
    # vanishes at every attempt; the result is returned and not cached, with no warning (a
    # clear just after the write would leave the same), and the next call computes again
    from joblite.store.local.layout import LocalLayout

    def always_cleared(self, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / ".writing"))

    monkeypatch.setattr(LocalLayout, "_store_entry_once", always_cleared)
    calls = []
    f = Memory(tmp_path, verbose=0).cache(lambda x: calls.append(x) or x + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(1) == 2
        assert f(1) == 2
    assert calls == [1, 1]
