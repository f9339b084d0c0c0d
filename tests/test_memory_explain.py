"""Misses you can explain (joblib PR #1763), per-argument key overrides (``hash_with``) and
errors that name the argument that cannot be hashed: through ``Memory.cache``, real stores,
real source files and fresh interpreters."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from joblite import Memory, Parallel, delayed
from joblite.exceptions import UnhashableError

try:
    import pandas as pd
except ImportError:  # the frame cases skip; everything else runs
    pd = None

needs_pandas = pytest.mark.skipif(
    pd is None, reason="pandas is a test dependency (requirements-dev.txt)"
)


def _frame(**overrides):
    data = {"a": [1, 2, 3], "b": [1.5, 2.5, 3.5], "c": ["x", "y", "z"]}
    data.update(overrides)
    return pd.DataFrame(data)


@pytest.fixture
def calls():
    return []


def test_hit_is_explained_as_a_hit(tmp_path, calls):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda x, y=1: calls.append(x) or x + y)
    assert f.explain_miss(1).reason == "no entries"
    assert "nothing is cached" in str(f.explain_miss(1))
    f(1)
    why = f.explain_miss(1)
    assert why.hit and why.reason == "hit"
    assert "will not recompute" in str(why)
    assert calls == [1]  # explaining computes nothing


def test_argument_named_by_parameter(tmp_path, calls):
    mem = Memory(tmp_path, verbose=0)

    def fit(data, alpha=0.1, *, n_iter=10):
        calls.append(alpha)
        return alpha

    f = mem.cache(fit)
    f([1, 2], alpha=0.5)
    why = f.explain_miss([1, 2], 0.7)
    assert not why.hit and why.reason == "arguments differ"
    assert why.arguments == {"alpha": ()}
    assert "argument 'alpha' differs" in str(why)
    why = f.explain_miss([1, 3], alpha=0.5, n_iter=20)
    assert set(why.arguments) == {"data", "n_iter"}
    assert calls == [0.5]


def test_nearest_entry_is_the_one_that_differs_least(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda a, b, c: a + b + c)
    f(1, 2, 3)
    f(10, 20, 30)
    why = f.explain_miss(10, 20, 31)
    assert why.arguments == {"c": ()}
    assert why.nearest == f._get_args_id(10, 20, 30)
    assert why.entries == 2


@needs_pandas
def test_frame_columns_and_index_are_named(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda df, scale=1: df.sum(numeric_only=True) * scale)
    f(_frame())
    why = f.explain_miss(_frame(b=[1.5, 2.5, 9.0]))
    assert why.arguments == {"df": ("column 'b' changed",)}
    assert "argument 'df': column 'b' changed" in str(why)

    why = f.explain_miss(_frame().assign(d=1))
    assert why.arguments == {"df": ("column 'd' added",)}

    why = f.explain_miss(_frame().drop(columns="c"))
    assert why.arguments == {"df": ("column 'c' removed",)}

    why = f.explain_miss(_frame()[["b", "a", "c"]])
    assert why.arguments == {"df": ("column order changed",)}

    shifted = _frame()
    shifted.index = [10, 11, 12]
    why = f.explain_miss(shifted)
    assert why.arguments == {"df": ("index changed",)}

    why = f.explain_miss(_frame(a=[1, 2, 4]), scale=2)
    assert why.arguments == {"df": ("column 'a' changed",), "scale": ()}


def test_dict_argument_names_its_keys(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda params: sorted(params))
    f({"lr": 0.1, "depth": 3, "model": "tree"})
    why = f.explain_miss({"lr": 0.1, "depth": 4, "model": "tree"})
    assert why.arguments == {"params": ("['depth'] changed",)}


def test_numpy_argument(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda x, k: float(x.sum()) * k)
    f(np.arange(10.0), 2)
    why = f.explain_miss(np.arange(10.0) + 1, 2)
    assert why.arguments == {"x": ()}
    assert f.explain_miss(np.arange(10.0), 2).hit


def test_expired_and_rejected_entries(tmp_path):
    import time

    mem = Memory(tmp_path, verbose=0, age_limit=0.3)
    f = mem.cache(lambda x: x)
    f(1)
    time.sleep(0.5)
    assert f.explain_miss(1).reason == "expired"
    mem = Memory(tmp_path / "b", verbose=0)
    g = mem.cache(lambda x: x, cache_validation_callback=lambda meta: False)
    g(1)
    assert g.explain_miss(1).reason == "rejected"


def test_disabled_memory():
    f = Memory(None).cache(lambda x: x)
    assert f.explain_miss(1).reason == "disabled"


MODULE = '''
import os

def log(x):
    with open(os.environ["CALL_LOG"], "a") as fh:
        fh.write(f"{x}\\n")

def prepare(x, factor=2):
    """Prepare."""
    log(x)
    y = x * factor
    return y
'''

RUN = """
import logging, os, sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, os.environ["MOD_DIR"])
import joblite
joblite.use_logging(True)
from joblite import Memory
import work
f = Memory(os.environ["CACHE_DIR"], verbose=int(sys.argv[1])).cache(work.prepare)
if sys.argv[2] == "explain":
    print("WHY", repr(f.explain_miss(3)), str(f.explain_miss(3)))
else:
    f(3)
"""


def _run(tmp_path, source, *argv):
    mod = tmp_path / "mod"
    mod.mkdir(exist_ok=True)
    (mod / "work.py").write_text(source)
    env = {
        **os.environ,
        "MOD_DIR": str(mod),
        "CACHE_DIR": str(tmp_path / "cache"),
        "CALL_LOG": str(tmp_path / "calls.log"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_code_change_is_explained_with_its_lines(tmp_path):
    _run(tmp_path, MODULE, "0", "call")
    changed = MODULE.replace("y = x * factor", "y = x * factor + 1")
    out = _run(tmp_path, changed, "0", "explain")
    assert "reason='code changed'" in out
    line = changed.splitlines().index("    y = x * factor + 1") + 1
    assert f"changed_lines=({line},)" in out
    assert f"at line(s) {line} of {tmp_path / 'mod' / 'work.py'}" in out
    # explaining cleared nothing: the old code's entry is still there for the next call
    assert len(list((tmp_path / "cache").rglob("metadata.json"))) == 1
    # a cosmetic edit is no code change
    cosmetic = MODULE.replace('"""Prepare."""', "# prepare")
    assert "reason='hit'" in _run(tmp_path, cosmetic, "0", "explain")


def test_verbose_above_10_prints_why_a_real_miss_missed(tmp_path):
    _run(tmp_path, MODULE, "11", "call")
    out = _run(tmp_path, MODULE.replace("y = x * factor", "y = x * factor * 2"), "11", "call")
    assert "the code of prepare changed" in out and "at line(s)" in out
    out = _run(tmp_path, MODULE.replace("factor=2", "factor=3"), "11", "call")
    assert "the code of prepare changed" in out
    # same code, another argument
    mem = Memory(tmp_path / "b", verbose=11)
    f = mem.cache(lambda x, k: x * k)
    f(1, 2)
    with pytest.MonkeyPatch.context() as mp:
        records = []
        mp.setattr("joblite.memory.protocol.emit", lambda text: records.append(text))
        f(1, 5)
    assert any("argument 'k' differs" in r and "[Memory] Calling" in r for r in records)


# ------------------------------------------------------------------ hash_with
class Model:
    """An object whose pickle state holds a cache that is not part of what it computes."""

    def __init__(self, alpha):
        self.alpha = alpha
        self.fitted_cache = os.urandom(8)  # differs every time, and is not content

    def get_params(self):
        return {"alpha": self.alpha}


def test_hash_with_keys_an_argument_by_a_function_of_it(tmp_path, calls):
    mem = Memory(tmp_path, verbose=0)

    def score(model, x):
        calls.append(x)
        return model.alpha * x

    f = mem.cache(score, hash_with={"model": lambda m: m.get_params()})
    assert f(Model(2), 3) == 6
    assert f(Model(2), 3) == 6  # another object, same params: a hit
    assert calls == [3]
    assert f(Model(5), 3) == 15  # other params: a miss
    assert calls == [3, 3]
    assert f.check_call_in_cache(Model(2), 3)
    # plain caching of the same function misses on the unstable state
    plain = mem.cache(score)
    plain(Model(2), 3)
    plain(Model(2), 3)
    assert calls == [3, 3, 3, 3]


def test_hash_with_as_decorator_and_across_processes(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    @mem.cache(hash_with={"values": lambda v: sorted(v)})
    def total(values):
        return sum(values)

    assert total([3, 1, 2]) == 6
    assert total.check_call_in_cache([1, 2, 3])
    assert total.hash_with.keys() == {"values"}
    clone = pickle.loads(pickle.dumps(total))
    assert clone.check_call_in_cache([2, 3, 1])
    out = Parallel(n_jobs=2, backend="loky")(
        delayed(total.check_call_in_cache)([3, 2, 1]) for _ in range(2)
    )
    assert out == [True, True]


def test_hash_with_refuses_unknown_names(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def f(model, x):
        return x

    with pytest.raises(ValueError, match=r"hash_with: 'modle', 'y' are not arguments of .*f"):
        mem.cache(f, hash_with={"modle": str, "y": str})
    with pytest.raises(ValueError, match=r"hash_with: 'modle' is not an argument"):
        Memory(None).cache(f, hash_with={"modle": str})
    with pytest.raises(TypeError, match=r"hash_with\['model'\] must be a function"):
        mem.cache(f, hash_with={"model": 3})
    with pytest.raises(ValueError, match="both name"):
        mem.cache(f, ignore=["model"], hash_with={"model": str})


def test_hash_with_function_errors_are_not_disguised(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def broken(m):
        raise TypeError("my own bug")

    f = mem.cache(lambda model: 1, hash_with={"model": broken})
    with pytest.raises(TypeError, match="my own bug") as info:
        f(1)
    assert not isinstance(info.value, UnhashableError)


# ------------------------------------------------------------------ unhashable arguments
def test_unhashable_argument_is_named_with_both_ways_out(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def train(data, params):
        return 1

    f = mem.cache(train)
    with pytest.raises(UnhashableError) as info:
        f([1, 2], {"lr": 0.1, "lock": threading.Lock()})
    message = str(info.value)
    assert "argument 'params'" in message
    assert "at params['lock']" in message
    assert "ignore=['params']" in message
    assert "hash handler" in message
    assert "hash_with={'params'" in message
    assert info.value.__cause__ is not None  # the hash's own error, with its path inside
    with pytest.raises(UnhashableError, match="argument 'params'"):
        f.explain_miss([1, 2], {"lock": threading.Lock()})
    # and the way out works
    ok = mem.cache(train, hash_with={"params": lambda p: sorted(k for k in p)})
    assert ok([1, 2], {"lr": 0.1, "lock": threading.Lock()}) == 1


class Holder:
    def __init__(self):
        self.name = "h"
        self.inner = {"ok": 1, "files": [1, threading.Lock()]}


def test_unhashable_path_inside_an_object(tmp_path):
    f = Memory(tmp_path, verbose=0).cache(lambda model: 1)
    with pytest.raises(UnhashableError, match=r"at model\.inner\['files'\]\[1\]"):
        f(Holder())


def test_unhashable_varargs_are_named(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda *items, **options: 1)
    with pytest.raises(UnhashableError, match="argument 'options'"):
        f(1, handle=threading.Lock())
    with pytest.raises(UnhashableError, match="argument 'items'"):
        f(threading.Lock())


# ------------------------------------------------------------------ command line
@needs_pandas
def test_cli_show_explains_an_entry(tmp_path):
    mem = Memory(tmp_path, verbose=0)

    def fit(df, alpha):
        return float(df["a"].sum()) * alpha

    f = mem.cache(fit)
    f(_frame(), 0.5)
    f(_frame(b=[0.0, 0.0, 0.0]), 0.5)
    key = f._get_args_id(_frame(), 0.5)
    proc = subprocess.run(
        [sys.executable, "-m", "joblite", "cache", "show", str(tmp_path), key[:12]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "alpha" in out and "df" in out
    assert "compared with the other entries" in out
    assert "df: column 'b' changed" in out, out
    assert "return float(df" in out  # the code it was computed with
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [sys.executable, "-m", "joblite", "cache", "show", str(tmp_path), "zzzzzzzz"],
            capture_output=True,
            check=True,
            timeout=120,
        )


@needs_pandas
def test_nearest_frame_is_the_one_with_fewest_differing_columns(tmp_path):
    mem = Memory(tmp_path, verbose=0)
    f = mem.cache(lambda df: len(df))
    base = _frame()
    f(base)
    f(base.assign(a=0, b=0.0, c="q"))  # the most recent entry, but every column differs
    why = f.explain_miss(base.assign(c="w"))
    assert why.nearest == f._get_args_id(base)
    assert why.arguments == {"df": ("column 'c' changed",)}


def _store_frame_entry(location):
    import pandas
    from joblite import Memory as M

    f = M(location, verbose=0).cache(len)
    f(pandas.DataFrame({"a": [1, 2, 3], "b": [1.5, 2.5, 3.5], "c": ["x", "y", "z"]}))


@needs_pandas
@pytest.mark.parametrize("start", ["fork", "fresh interpreter"])
def test_argument_digests_agree_across_processes(tmp_path, start):
    """An entry written by another process is compared column by column: the digests of the
    unchanged columns must be equal there and here, or every column would be "changed"."""
    location = str(tmp_path)
    if start == "fork":
        import multiprocessing

        proc = multiprocessing.get_context("fork").Process(
            target=_store_frame_entry, args=(location,)
        )
        proc.start()
        proc.join(120)
        assert proc.exitcode == 0
    else:
        code = (
            "import sys, pandas\nfrom joblite import Memory\n"
            "f = Memory(sys.argv[1], verbose=0).cache(len)\n"
            "f(pandas.DataFrame({'a': [1, 2, 3], 'b': [1.5, 2.5, 3.5], 'c': ['x', 'y', 'z']}))\n"
        )
        subprocess.run([sys.executable, "-c", code, location], check=True, timeout=120)
    f = Memory(location, verbose=0).cache(len)
    assert f.explain_miss(_frame()).hit
    why = f.explain_miss(_frame(c=["x", "y", "w"]))
    assert why.arguments == {"obj": ("column 'c' changed",)}
