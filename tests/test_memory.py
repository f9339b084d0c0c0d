"""Memory's joblib-compatible behaviour, through the public API and real cache directories."""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import logging
import os
import pickle
import time
from pathlib import Path

import joblite
import numpy as np
import pytest
from joblite import MemorizedResult, Memory, expires_after
from joblite.exceptions import CacheWarning


class Counter:
    """Counts calls of a cached function (in this process)."""

    def __init__(self) -> None:
        self.n = 0


class Scaler:
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k


def entry_dirs(location) -> list[Path]:
    root = Path(location) / "joblite"
    return [p.parent for p in root.rglob("metadata.json")]


def test_location_none_calls_through(tmp_path):
    calls = Counter()
    mem = Memory(None)

    @mem.cache
    def f(x):
        calls.n += 1
        return x * 2

    assert f(2) == 4 and f(2) == 4
    assert calls.n == 2
    assert not f.check_call_in_cache(2)
    r = f.call_and_shelve(3)
    assert r.get() == 6
    r.clear()
    with pytest.raises(KeyError):
        r.get()
    assert mem.eval(len, [1, 2]) == 2


@pytest.mark.parametrize("as_path", [False, True])
def test_hit_and_binding(tmp_path, as_path):
    location = tmp_path if as_path else str(tmp_path)
    mem = Memory(location, verbose=0)
    calls = Counter()

    @mem.cache
    def f(a, b=2, *args, c=3, **kw):
        calls.n += 1
        return (a, b, args, c, sorted(kw.items()))

    first = f(1)
    assert f(a=1) == first and f(1, 2) == first and f(1, b=2, c=3) == first
    assert calls.n == 1
    f(1, 2, 5)
    f(1, d=4, e=5)
    f(1, e=5, d=4)  # same **kwargs, other order
    assert calls.n == 3
    assert f.check_call_in_cache(1) and not f.check_call_in_cache(9)
    assert len(entry_dirs(tmp_path)) == 3


def test_ignore_and_bad_ignore(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    @mem.cache(ignore=["verbose"])
    def f(x, verbose=0):
        calls.n += 1
        return x

    f(1, verbose=0)
    f(1, verbose=5)
    assert calls.n == 1
    with pytest.raises(ValueError, match="'nope'"):
        mem.cache(lambda x: x, ignore=["nope"])


def test_method_with_ignore_self(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    class Model:
        def __init__(self, scale):
            self.scale = scale

        @mem.cache(ignore=["self"])
        def transform(self, x):
            calls.n += 1
            return x * 2

    assert Model(1).transform(3) == 6
    assert Model(7).transform(3) == 6
    assert calls.n == 1

    # a bound method cached in __init__ style keeps the instance in the key
    assert mem.cache(Scaler(2).apply)(5) == 10
    assert mem.cache(Scaler(3).apply)(5) == 15


def test_kinds_of_callables(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    def base(x, y):
        calls.n += 1
        return x - y

    p = mem.cache(functools.partial(base, y=1))
    assert p(5) == 4 and p(5) == 4
    assert calls.n == 1
    lam = mem.cache(lambda x: x + 100)
    assert lam(1) == 101 and lam.check_call_in_cache(1)
    sq = mem.cache(np.square)
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(sq(a), a**2)
    assert sq.check_call_in_cache(a)
    ln = mem.cache(len)
    assert ln([1, 2, 3]) == 3 and ln.check_call_in_cache([1, 2, 3])

    def outer():
        def inner(x):
            calls.n += 1
            return -x

        return inner

    nested = mem.cache(outer())
    before = calls.n
    assert nested(4) == -4 and nested(4) == -4
    assert calls.n == before + 1


def test_distinct_functions_do_not_share_entries(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda x: x + 1)
    g = mem.cache(lambda x: x + 2)
    assert f(1) == 2 and g(1) == 3 and f(1) == 2


def test_code_change_invalidates(tmp_path, caplog):
    mem = Memory(tmp_path, verbose=1)
    ns: dict = {}
    src = "def compute(x):\n    return x + {k}\n"
    exec(compile(src.format(k=1), "<test>", "exec"), ns)
    f1 = mem.cache(ns["compute"])
    assert f1(1) == 2
    exec(compile(src.format(k=10), "<test>", "exec"), ns)
    f2 = mem.cache(ns["compute"])
    with caplog.at_level(logging.WARNING, logger="joblite"):
        assert f2(1) == 11
    assert "has changed" in caplog.text


def test_verbose_output_format(tmp_path, capsys):
    mem = Memory(tmp_path, verbose=1)
    square = mem.cache(np.square)
    a = np.vander(np.arange(3)).astype(float)
    square(a)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "_" * 80
    assert lines[1] == "[Memory] Calling numpy.square..."
    assert lines[2].startswith("square(array([[0., 0., 1.],")
    assert lines[-1].startswith("___") and lines[-1].endswith("min")
    assert len(lines[-1]) == 80 and "square - 0.0s, 0.0min" in lines[-1]
    square(a)
    assert capsys.readouterr().out == ""


def test_verbose_routed_to_logging(tmp_path, capsys, caplog):
    from joblite.logger import use_logging

    mem = Memory(tmp_path, verbose=1)
    f = mem.cache(lambda x: x)
    use_logging(True)
    try:
        with caplog.at_level(logging.INFO, logger="joblite"):
            f(3)
    finally:
        use_logging(False)
    assert capsys.readouterr().out == ""
    assert "[Memory] Calling" in caplog.text


def test_call_and_shelve_and_memorized_result(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    @mem.cache
    def f(x):
        calls.n += 1
        return {"x": x}

    r = f.call_and_shelve(5)
    assert isinstance(r, MemorizedResult)
    assert r.get() == {"x": 5}
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.get() == {"x": 5}
    assert f.call_and_shelve(5).get() == {"x": 5}
    assert calls.n == 1
    r.clear()
    with pytest.raises(KeyError, match="cleared or evicted"):
        r2.get()
    assert not f.check_call_in_cache(5)


def test_call_forces_and_returns_metadata(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    @mem.cache
    def f(x):
        calls.n += 1
        return x

    f(1)
    out, meta = f.call(1)
    assert out == 1 and calls.n == 2
    assert meta["input_args"] == {"x": "1"}
    assert meta["duration"] >= 0 and abs(meta["time"] - time.time()) < 60


def test_clear_and_memory_clear(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda x: x)
    g = mem.cache(lambda x: -x)
    f(1), g(1)
    f.clear()
    assert not f.check_call_in_cache(1) and g.check_call_in_cache(1)
    f(1)
    mem.clear(warn=False)
    assert not f.check_call_in_cache(1) and not g.check_call_in_cache(1)
    assert f(2) == 2 and f.check_call_in_cache(2)


def test_expires_after(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    @mem.cache(cache_validation_callback=expires_after(seconds=0.3))
    def f(x):
        calls.n += 1
        return x

    f(1), f(1)
    assert calls.n == 1
    time.sleep(0.35)
    assert not f.check_call_in_cache(1)
    f(1)
    assert calls.n == 2
    with pytest.raises(ValueError, match="callable"):
        mem.cache(f.func, cache_validation_callback=3)


def test_mmap_mode(tmp_path):
    mem = Memory(tmp_path, mmap_mode="r", verbose=0)
    f = mem.cache(lambda n: np.arange(n, dtype=np.float64))
    first = f(1000)
    second = f(1000)
    assert isinstance(first, np.memmap) and isinstance(second, np.memmap)
    np.testing.assert_array_equal(second, np.arange(1000.0))
    with pytest.raises(ValueError):
        second[0] = 1


def test_async_function(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    calls = Counter()

    @mem.cache
    async def fetch(x):
        calls.n += 1
        await asyncio.sleep(0)
        return x * 3

    async def run():
        return await fetch(2), await fetch(2), (await fetch.call_and_shelve(2)).get()

    assert asyncio.run(run()) == (6, 6, 6)
    assert calls.n == 1
    assert inspect.iscoroutinefunction(fetch.__call__)


def test_memory_and_memorized_func_pickle(tmp_path):
    mem = Memory(tmp_path, verbose=0, bytes_limit="1G")
    mem2 = pickle.loads(pickle.dumps(mem))
    assert mem2.location == mem.location and mem2.bytes_limit == 1024**3
    f = mem.cache(np.negative)
    f(np.ones(3))
    f2 = pickle.loads(pickle.dumps(f))
    assert f2.check_call_in_cache(np.ones(3))
    assert repr(mem).startswith("Memory(location=")


def test_bytes_limit_enforced_after_writes(tmp_path):
    mem = Memory(tmp_path, verbose=0, bytes_limit=200_000)
    f = mem.cache(lambda i: np.full(10_000, i, dtype=np.float64))  # ~80 kB each
    for i in range(10):
        f(i)
        total = sum(
            p.stat().st_size for d in entry_dirs(tmp_path) for p in d.iterdir() if p.is_file()
        )
        assert total <= 200_000
    # the most recent entries are the ones kept
    assert f.check_call_in_cache(9)
    assert not f.check_call_in_cache(0)


def test_items_limit_keeps_recently_used(tmp_path):
    mem = Memory(tmp_path, verbose=0, items_limit=3, backend_options={"access_flush_interval": 0})
    f = mem.cache(lambda i: i)
    for i in range(3):
        f(i)
        time.sleep(0.01)
    f(0)  # touch 0: now 1 is the least recently used
    time.sleep(0.01)
    f(3)
    assert len(entry_dirs(tmp_path)) <= 3
    assert f.check_call_in_cache(0) and f.check_call_in_cache(3)
    assert not f.check_call_in_cache(1)


def test_reduce_size_and_age_limit(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda i: np.zeros(1000) + i)
    for i in range(5):
        f(i)
    mem.reduce_size(items_limit=2)
    assert len(entry_dirs(tmp_path)) == 2
    time.sleep(0.05)
    mem.reduce_size(age_limit=datetime.timedelta(seconds=0.01))
    assert entry_dirs(tmp_path) == []
    with pytest.raises(ValueError, match="not a size"):
        mem.reduce_size(bytes_limit="lots")


def test_fan_out_layout(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda i: i)
    for i in range(300):
        f(i)
    func_dir = entry_dirs(tmp_path)[0].parent.parent
    prefixes = [p for p in func_dir.iterdir() if p.is_dir()]
    assert len(prefixes) > 200  # spread over many small directories
    assert max(len(list(p.iterdir())) for p in prefixes) < 10


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="mmap_mode"):
        Memory(tmp_path, mmap_mode="x")
    with pytest.raises(TypeError, match="location"):
        Memory(3)
    with pytest.raises(ValueError, match="items_limit"):
        Memory(tmp_path, items_limit=-1)
    with pytest.raises(TypeError, match=r"Unknown location .* or backend .nope."):
        Memory(tmp_path, backend="nope")
    with pytest.raises(ValueError, match="backend_options"):
        Memory(tmp_path, backend_options={"bogus": 1})
    with pytest.warns(UserWarning, match="memmapped"):
        Memory(tmp_path, compress=3, mmap_mode="r")


def test_register_store_backend(tmp_path):
    from joblite.store import FileSystemStore

    with pytest.raises(ValueError, match="StoreBackendBase"):
        joblite.register_store_backend("bad", dict)

    class CountingStore(FileSystemStore):
        loads = 0

        def load_output(self, func_id, key, mmap_mode=None):
            CountingStore.loads += 1
            return super().load_output(func_id, key, mmap_mode)

    joblite.register_store_backend("counting", CountingStore)
    mem = Memory(tmp_path, backend="counting", verbose=0)
    f = mem.cache(lambda x: x)
    f(1), f(1)
    assert CountingStore.loads >= 1
    assert isinstance(mem.store_backend, joblite.StoreBackendBase)


def test_unpicklable_result_warns_and_returns(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    @mem.cache
    def make(x):
        return lambda: x  # a local lambda cannot be pickled

    with pytest.warns(CacheWarning, match="not cached") as rec:
        fn = make(3)
    assert len(rec) == 1 and fn() == 3
    assert entry_dirs(tmp_path) == []
    leftovers = [p for p in (tmp_path / "joblite").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []


def test_scikit_learn_pipeline_memory(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10))
    y = (X[:, 0] > 0).astype(int)
    mem = Memory(tmp_path, verbose=0)
    pipe = Pipeline([("pca", PCA(n_components=3)), ("clf", LogisticRegression())], memory=mem)
    pipe.fit(X, y)
    n_entries = len(entry_dirs(tmp_path))
    assert n_entries >= 1
    pipe2 = Pipeline([("pca", PCA(n_components=3)), ("clf", LogisticRegression())], memory=mem)
    pipe2.fit(X, y)
    assert len(entry_dirs(tmp_path)) == n_entries  # the PCA fit came from the cache
    np.testing.assert_allclose(pipe.predict_proba(X), pipe2.predict_proba(X))
    # a string location works too (sklearn builds the Memory itself via joblib)
    os.environ.pop("JOBLITE_UNUSED", None)


def test_eval_and_verbose_hit_message(tmp_path, capsys):
    mem = Memory(tmp_path, verbose=0)
    assert mem.eval(np.add, 1, 2) == 3
    assert mem.cache(np.add).check_call_in_cache(1, 2)
    loud = Memory(tmp_path, verbose=11).cache(np.add)
    assert loud(1, 2) == 3
    assert "Loading add" in capsys.readouterr().out


def test_logger_and_print_time(tmp_path, caplog, capsys):
    from joblite import Logger, PrintTime

    with caplog.at_level(logging.WARNING, logger="joblite"):
        Logger(name="Stage").warn("careful")
    assert "[Stage]: careful" in caplog.text
    log = tmp_path / "logs" / "run.log"
    t = PrintTime(logfile=log)
    t("step one")
    t("all", total=True)
    err = capsys.readouterr().err
    assert "step one: " in err and "all: " in err and "min" in err
    assert "step one" in log.read_text()
    with pytest.raises(ValueError, match="not both"):
        PrintTime(logfile=log, logdir=tmp_path)


def test_joblite_as_joblib_alias(tmp_path):
    import joblite as joblib

    mem = joblib.Memory(location=str(tmp_path), verbose=0)

    @mem.cache
    def f(x):
        return x**2

    assert f(3) == 9 and f.check_call_in_cache(3)
    assert isinstance(f, joblib.MemorizedFunc)


def test_age_limit_enforced_after_writes(tmp_path):
    mem = Memory(tmp_path, verbose=0, age_limit=datetime.timedelta(seconds=1.0))
    f = mem.cache(lambda i: i)
    f(0)
    time.sleep(1.6)
    f(1)  # a write after the age limit has passed: the stale entry goes
    assert f.check_call_in_cache(1) and not f.check_call_in_cache(0)
    assert Memory(tmp_path, bytes_limit="1.5K").bytes_limit == 1536


def test_hit_ignores_compute_lock(tmp_path):
    mem = Memory(tmp_path, verbose=0, compute_once_timeout=5)
    f = mem.cache(lambda x: x + 1)
    f(1)
    key = f._get_args_id(1)
    lock = Path(mem.store_backend.entry_dir(f.func_id, key) + ".lock")
    lock.write_text(f"{os.getpid()} {os.uname().nodename} {time.time()}\n")  # held, live owner
    start = time.monotonic()
    assert f(1) == 2  # a hit never looks at the lock
    assert time.monotonic() - start < 1.0
    lock.unlink()
