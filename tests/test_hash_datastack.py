"""Content keys for the data stack: pandas, Arrow (pyarrow, polars), xarray, scipy.sparse,
DLPack; the handler registry; errors crossing from Rust as types.

Every case of tests/_hash_cases.py is checked twice: with joblite.hash in this process, and
through Memory.cache across two fresh processes (fork and spawn), so a key that depends on
the run, the process or how the object was built fails.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import types

import joblite
import numpy as np
import pytest
from _hash_cases import CASES, NotApplicable
from joblite import Memory
from joblite.exceptions import UnhashableError

pytestmark = pytest.mark.skipif(not CASES, reason="none of pandas/pyarrow/polars/xarray/scipy")


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_in_process(name):
    make_a, make_b, same = CASES[name]
    try:
        a, b = make_a(), make_b()
    except NotApplicable as reason:
        pytest.skip(str(reason))
    if same:
        assert joblite.hash(a) == joblite.hash(b)
    else:
        assert joblite.hash(a) != joblite.hash(b)
    assert joblite.hash(a) == joblite.hash(make_a())  # built twice: one key


def compute(obj):
    """The cached function of the cross-process check: a fresh token for every computation."""
    return os.urandom(16).hex()


def run_cases(location, which):
    """In a fresh process: build side ``which`` of every case and call the cached function."""
    memory = Memory(location, verbose=0)
    cached = memory.cache(compute)
    tokens = {}
    for name, (make_a, make_b, _) in CASES.items():
        try:
            value = (make_a if which == "a" else make_b)()
        except NotApplicable:
            continue  # this installed version cannot express the case
        tokens[name] = cached(value)
    return tokens


DRIVER = textwrap.dedent(
    """
    import json, multiprocessing, sys, warnings
    sys.path.insert(0, sys.argv[3])
    from test_hash_datastack import run_cases
    context = multiprocessing.get_context(sys.argv[1])
    tokens = []
    for which in "aba":
        # a fresh worker for each side: nothing carried over but the cache folder
        with context.Pool(1) as pool:
            tokens.append(pool.apply(run_cases, (sys.argv[2], which)))
    print(json.dumps(tokens))
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cases_through_memory_in_two_fresh_processes(tmp_path, method):
    # Driven from a fresh interpreter that imports no data library itself: forking a process
    # that runs polars' or pyarrow's thread pools can deadlock the child (their documented
    # limitation, not a property of the key).
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, method, str(tmp_path), here],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    first, second, again = json.loads(out.stdout)
    wrong = []
    for name, (_, _, same) in CASES.items():
        if name not in first:
            continue  # not applicable with these library versions (see test_case_in_process)
        if (first[name] == second[name]) != same:
            wrong.append(f"{name}: {'missed' if same else 'stale hit'}")
        if again[name] != first[name]:
            wrong.append(f"{name}: the same object missed in another process")
    assert not wrong


# ----------------------------------------------------------------- the crash this fixes


def test_pandas_frames_with_string_labels_hash():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"]})
    assert len(joblite.hash(df)) == 64
    memory = Memory(None, verbose=0)
    assert memory.cache(len)(df) == 2


def test_pyarrow_objects_hash():
    pa = pytest.importorskip("pyarrow")
    for obj in (
        pa.table({"a": [1, 2]}),
        pa.array([1, 2]),
        pa.chunked_array([[1], [2]]),
        pa.record_batch({"a": [1, 2]}),
    ):
        assert joblite.hash(obj) == joblite.hash(obj)


def test_arrow_table_and_record_batch_and_chunks_agree_on_columns():
    pa = pytest.importorskip("pyarrow")
    t = pa.table({"a": list(range(100)), "s": [str(i) for i in range(100)]})
    # a Table and a RecordBatch are different types (the key names the type) ...
    assert joblite.hash(t) != joblite.hash(t.to_batches()[0])
    # ... but any chunking of the table is one key
    assert joblite.hash(t) == joblite.hash(pa.Table.from_batches(t.to_batches(max_chunksize=7)))


def test_a_one_shot_arrow_reader_is_not_consumed_by_hashing():
    pa = pytest.importorskip("pyarrow")
    t = pa.table({"a": [1, 2, 3]})
    reader = pa.RecordBatchReader.from_batches(t.schema, t.to_batches())
    with pytest.raises(UnhashableError):  # as before: it cannot be pickled
        joblite.hash(reader)
    assert reader.read_all().equals(t)


def test_large_frame_hash_does_not_copy_the_frame():
    pd = pytest.importorskip("pandas")
    tracemalloc = pytest.importorskip("tracemalloc")
    n = 200_000
    df = pd.DataFrame({f"c{i}": np.arange(n, dtype=np.float64) for i in range(8)})
    joblite.hash(df)  # imports, registrations
    tracemalloc.start()
    joblite.hash(df)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the frame is 12.8 MB; nothing of a column's size is allocated (not even for the
    # RangeIndex, hashed as a progression: materialising it took 1.6 MB)
    assert peak < n


# ------------------------------------------ tall frames: their columns hashed on threads at once

TALL = 131_075  # at least joblite.hashing._parallel.PARALLEL_ROWS: the columns run at once


def _tall_frame(pd, n=TALL):
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "f": rng.standard_normal(n),
            "c": pd.Categorical(np.arange(n) % 7),
            "s": pd.array([f"v{k % 1009}" for k in range(n)], dtype="str"),
            "o": np.array([f"w{k % 13}" for k in range(n)], dtype=object),
            "d": pd.date_range("2020-01-01", periods=n, freq="s", tz="UTC"),
        }
    )
    df.loc[7, "f"] = np.nan
    df.loc[9, "s"] = None
    return df


class _Stream:
    """A producer of the Arrow PyCapsule stream interface (as duckdb's results are)."""

    def __init__(self, table):
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


def _tall_objects():
    """Factories of tall frames and tables (a fresh object per call: a reader is one-shot)."""
    pd = pytest.importorskip("pandas")
    df = _tall_frame(pd)
    objects = {"pandas": lambda: df}
    try:
        import pyarrow as pa
    except ImportError:
        return objects
    table = pa.Table.from_pandas(df.drop(columns=["o"]), preserve_index=False)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=50_000))
    objects["arrow table"] = lambda: table
    objects["arrow table, 3 batches"] = lambda: chunked
    objects["arrow stream"] = lambda: _Stream(chunked)  # read batch by batch
    try:
        import polars as pl
    except ImportError:
        return objects
    frame = pl.from_arrow(table)
    objects["polars"] = lambda: frame
    return objects


def test_tall_frames_hash_the_same_on_any_number_of_core_threads():
    objects = _tall_objects()
    for name, make in objects.items():
        digests = {}
        for limit in (1, 2, 3, 8):
            with joblite.thread_limits(limit):
                digests[limit] = joblite.hash(make())
        assert len(set(digests.values())) == 1, (name, digests)
    if "arrow stream" in objects:  # chunking is not content, threads or not
        with joblite.thread_limits(2):
            assert joblite.hash(objects["arrow table"]()) == joblite.hash(
                objects["arrow table, 3 batches"]()
            )


def test_tall_frames_with_columns_swapped_moved_or_renamed_differ():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(6)
    x, y, z = (rng.standard_normal(TALL) for _ in range(3))
    base = pd.DataFrame({"a": x, "b": y, "c": z})
    variants = {
        "base": base,
        "values swapped": pd.DataFrame({"a": y, "b": x, "c": z}),
        "columns moved": base[["b", "a", "c"]],
        "names swapped": base.rename(columns={"a": "b", "b": "a"}),
        "last moved first": base[["c", "a", "b"]],
    }
    frames = [("pandas", variants)]
    try:
        import polars as pl
        import pyarrow as pa
    except ImportError:
        pass
    else:
        tables = {k: pa.Table.from_pandas(v, preserve_index=False) for k, v in variants.items()}
        frames.append(("arrow", tables))
        frames.append(("polars", {k: pl.from_arrow(v) for k, v in tables.items()}))
    with joblite.thread_limits(2):
        for family, found in frames:
            digests = {name: joblite.hash(obj) for name, obj in found.items()}
            assert len(set(digests.values())) == len(digests), (family, digests)


def test_a_tall_frame_inside_a_tall_frame_column():
    # the inner frame is hashed on a column thread: its columns run one after another there
    pd = pytest.importorskip("pandas")
    inner = pd.DataFrame({"x": np.arange(TALL), "y": np.arange(TALL) * 0.5})
    cells = np.zeros(TALL, dtype=object)
    cells[3] = inner
    outer = pd.DataFrame({"i": np.arange(TALL), "frames": cells})
    with joblite.thread_limits(1):
        serial = joblite.hash(outer)
    with joblite.thread_limits(2):
        assert joblite.hash(outer) == serial
        inner.loc[5, "y"] = -1.0
        assert joblite.hash(outer) != serial


def test_the_first_column_that_cannot_be_hashed_is_named_in_a_tall_frame():
    pd = pytest.importorskip("pandas")
    locks = np.empty(TALL, dtype=object)
    locks[:] = [threading.Lock() for _ in range(TALL)]
    df = pd.DataFrame({"ok": np.arange(TALL), "bad1": locks, "fine": np.ones(TALL), "bad2": locks})
    for _ in range(3):
        with joblite.thread_limits(2), pytest.raises(UnhashableError) as info:
            joblite.hash({"df": df})
        assert info.value.path.startswith("['df']['bad1']")


def _hash_in_child(queue):
    pd = __import__("pandas")
    queue.put(joblite.hash(_tall_frame(pd)))


def test_tall_frames_hash_in_a_forked_child_after_the_parent_did():
    pd = pytest.importorskip("pandas")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with joblite.thread_limits(2):
        expected = joblite.hash(_tall_frame(pd))  # the parent's column threads are running
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_hash_in_child, args=(queue,))
        child.start()
        try:
            assert queue.get(timeout=120) == expected
        finally:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    assert child.exitcode == 0


# --------------------------------------------------------------------------- the registry


class Point:
    def __init__(self, x, y, scratch=None):
        self.x, self.y, self.scratch = x, y, scratch


def test_register_a_handler():
    before = joblite.hash(Point(1, 2, scratch=[0]))
    joblite.register_hash_handler(Point, lambda p: (p.x, p.y))
    try:
        assert joblite.hash(Point(1, 2, scratch=[0])) == joblite.hash(Point(1, 2))
        assert joblite.hash(Point(1, 2)) != joblite.hash(Point(1, 3))
        assert joblite.hash(Point(1, 2)) != joblite.hash((1, 2))  # the type is in the key
    finally:
        joblite.unregister_hash_handler(Point)
    assert joblite.hash(Point(1, 2, scratch=[0])) == before


def test_subclasses_use_the_base_class_handler_but_keep_their_name():
    class Sub(Point):
        pass

    joblite.register_hash_handler(Point, lambda p: (p.x, p.y))
    try:
        assert joblite.hash(Sub(1, 2, [5])) == joblite.hash(Sub(1, 2))
        assert joblite.hash(Sub(1, 2)) != joblite.hash(Point(1, 2))
    finally:
        joblite.unregister_hash_handler(Point)


def test_lazy_registration_runs_once_when_the_module_is_first_met(monkeypatch):
    module = types.ModuleType("hashkeys_fake_lib")
    exec(
        "class Thing:\n    def __init__(self, v):\n        self.v, self.noise = v, id(self)",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "hashkeys_fake_lib", module)
    calls = []

    @joblite.register_hash_handler_lazy("hashkeys_fake_lib")
    def register():
        calls.append(1)
        joblite.register_hash_handler(module.Thing, lambda t: t.v)

    try:
        joblite.hash([1, 2])
        assert calls == []
        assert joblite.hash(module.Thing(3)) == joblite.hash(module.Thing(3))
        assert joblite.hash(module.Thing(3)) != joblite.hash(module.Thing(4))
        assert calls == [1]
    finally:
        joblite.unregister_hash_handler(module.Thing)


def test_register_refuses_what_is_not_a_type():
    with pytest.raises(TypeError, match="needs a type"):
        joblite.register_hash_handler("pandas.DataFrame", lambda x: x)
    with pytest.raises(ValueError, match="top-level module"):
        joblite.register_hash_handler_lazy("pandas.core")


def test_joblite_imports_no_data_library():
    code = textwrap.dedent(
        """
        import sys, joblite
        class Custom:
            pass
        joblite.hash({"a": [1, 2.0], "b": Custom()})
        heavy = {"pandas", "pyarrow", "polars", "torch", "xarray", "scipy", "jax"}
        print(sorted(heavy & set(sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- DLPack


class DLPackOnly:
    """An array of a library joblite does not know, exposing numpy's own ``__dlpack__``."""

    def __init__(self, values):
        self._values = values

    def __dlpack__(self, **kwargs):
        return self._values.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._values.__dlpack_device__()


def test_dlpack_values_through_array_content():
    joblite.register_hash_handler(DLPackOnly, joblite.hashing.array_content)
    try:
        a = np.arange(12.0).reshape(3, 4)
        assert joblite.hash(DLPackOnly(a)) == joblite.hash(DLPackOnly(a.copy()))
        strided = np.asfortranarray(a)
        assert joblite.hash(DLPackOnly(strided)) == joblite.hash(DLPackOnly(a))
        changed = a.copy()
        changed[2, 3] = -1
        assert joblite.hash(DLPackOnly(changed)) != joblite.hash(DLPackOnly(a))
        assert joblite.hash(DLPackOnly(a.astype(np.float32))) != joblite.hash(DLPackOnly(a))
        assert joblite.hash(DLPackOnly(a.reshape(4, 3))) != joblite.hash(DLPackOnly(a))
    finally:
        joblite.unregister_hash_handler(DLPackOnly)


# ------------------------------------------------------------------------------ errors


class ReduceRaises:
    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), ValueError("bug"), RuntimeError("x")])
def test_other_exceptions_in_a_reduction_pass_through_unchanged(exc):
    with pytest.raises(type(exc)) as info:
        joblite.hash({"k": [ReduceRaises(exc)]})
    assert info.value is exc
    assert not isinstance(info.value, UnhashableError)


def test_cannot_pickle_is_unhashable_with_a_path():
    with pytest.raises(UnhashableError) as info:
        joblite.hash({"params": {"model": threading.Lock()}})
    assert info.value.path == "['params']['model']"
    assert "register_hash_handler" in str(info.value) and "ignore=" in str(info.value)


def test_a_frame_column_that_cannot_be_hashed_is_named():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"ok": [1, 2], "bad": [threading.Lock(), threading.Lock()]})
    with pytest.raises(UnhashableError) as info:
        joblite.hash({"df": df})
    assert info.value.path.startswith("['df']['bad']")
    assert "obj['df']['bad']" in str(info.value)


def test_errors_of_a_handler_pass_through():
    def broken(p):
        raise ZeroDivisionError("in the handler")

    joblite.register_hash_handler(Point, broken)
    try:
        with pytest.raises(ZeroDivisionError):
            joblite.hash([Point(1, 2)])
    finally:
        joblite.unregister_hash_handler(Point)


# ----------------------------------------------------------------------------- closures


def make_ones(np_module):
    def ones(n):
        return np_module.ones(n)

    return ones


def test_a_cached_closure_that_captured_a_module(tmp_path):
    memory = Memory(tmp_path, verbose=0)
    cached = memory.cache(make_ones(np))
    assert cached(3).tolist() == [1.0, 1.0, 1.0]
    assert joblite.hash(make_ones(np)) == joblite.hash(make_ones(np))
    assert joblite.hash(make_ones(np)) != joblite.hash(make_ones(types))


def make_locked(lock):
    def locked(n):
        with lock:
            return n * 2

    return locked


def test_a_closure_that_captured_an_unhashable_value_warns_and_caches(tmp_path):
    memory = Memory(tmp_path, verbose=0)
    with pytest.warns(UserWarning, match=r"captured 'lock' \(a lock\).*keyed by its code alone"):
        cached = memory.cache(make_locked(threading.Lock()))
    assert cached(2) == 4
    assert cached.check_call_in_cache(2)
