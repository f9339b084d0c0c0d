"""Fourth attacker's pass over cache keys and polars dumps: each test reproduces a key that
changed with something that is not content (or stayed the same when content changed), found
through the public API, and checks the behaviour that replaced it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import joblite
import pytest
from joblite import Memory


class Tags(frozenset):
    """A frozenset subclass: pickled (and so reduced) as ``(Tags, (list(self),), state)``."""


class TagSet(set):
    pass


@pytest.mark.parametrize("kind", [Tags, TagSet])
def test_set_subclass_key_does_not_depend_on_iteration_order(kind):
    # 0 and 8 share a slot of a small set's table: which one comes first in iteration (and in
    # the list the subclass reduces to) depends on insertion order, not on the content.
    first, second = kind([0, 8]), kind([8, 0])
    assert first == second and list(first) != list(second)
    assert joblite.hash(first) == joblite.hash(second)
    assert joblite.hash([first]) == joblite.hash([second])
    assert joblite.hash(kind([0, 8])) != joblite.hash(kind([0, 9]))
    assert joblite.hash(kind([0, 8])) != joblite.hash(kind([0]))


def test_set_subclass_state_is_still_content():
    a, b = Tags([1, 2]), Tags([2, 1])
    a.label = "x"
    b.label = "y"
    assert joblite.hash(a) != joblite.hash(b)
    b.label = "x"
    assert joblite.hash(a) == joblite.hash(b)
    assert joblite.hash(Tags([1, 2])) != joblite.hash(frozenset([1, 2]))
    assert joblite.hash(Tags([1, 2])) != joblite.hash(TagSet([1, 2]))


def test_set_subclass_key_is_the_same_under_every_hash_seed(tmp_path):
    # strings are placed by Python's salted hash: each process used to key the same frozenset
    # subclass differently, so a disk cache was never hit from one run to the next
    script = tmp_path / "seeded.py"
    script.write_text(
        textwrap.dedent(
            """
            import joblite

            class Words(frozenset):
                pass

            print(joblite.hash(Words(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])))
            """
        )
    )
    keys = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
        )
        keys.add(out.stdout.strip())
    assert len(keys) == 1


def test_memory_hits_for_an_equal_set_subclass(tmp_path):
    calls = []

    def count(tags):
        calls.append(1)
        return sorted(tags)

    cached = Memory(tmp_path, verbose=0).cache(count)
    assert cached(Tags([0, 8])) == [0, 8]
    assert cached(Tags([8, 0])) == [0, 8]
    assert len(calls) == 1


pd = pytest.importorskip("pandas")


def _freq_or_none(series):
    freq = series.index.freq
    return None if freq is None else freq.freqstr


@pytest.mark.parametrize(
    "with_freq",
    [
        lambda: pd.date_range("2020-01-01", periods=3, freq="D"),
        lambda: pd.date_range("2020-01-01", periods=3, freq="D", tz="UTC"),
        lambda: pd.timedelta_range(0, periods=3, freq="h"),
    ],
)
def test_index_freq_is_content(tmp_path, with_freq):
    # `index.freq` changes what pandas does (`index.shift(1)` raises without one, resample
    # and statsmodels read it); a series with a frequency and the same values without one
    # used to share a key, so the second call got the first one's answer
    index = with_freq()
    a = pd.Series([1, 2, 3], index=index)
    b = pd.Series([1, 2, 3], index=type(index)(index, freq=None))  # same values and dtype
    assert a.index.freq is not None and b.index.freq is None
    assert a.equals(b)
    assert joblite.hash(a) != joblite.hash(b)
    assert joblite.hash(a.to_frame()) != joblite.hash(b.to_frame())
    assert joblite.hash(a.index) != joblite.hash(b.index)
    cached = Memory(tmp_path, verbose=0).cache(_freq_or_none)
    assert cached(a) == a.index.freqstr
    assert cached(b) is None


def test_index_freq_key_is_stable_and_distinguishes_frequencies():
    daily = pd.Series([1, 2], index=pd.date_range("2020-01-01", periods=2, freq="D"))
    business = pd.Series([1, 2], index=pd.date_range("2020-01-01", periods=2, freq="B"))
    assert daily.index.equals(business.index)
    assert joblite.hash(daily) != joblite.hash(business)
    again = pd.Series([1, 2], index=pd.date_range("2020-01-01", periods=2, freq="D"))
    assert joblite.hash(daily) == joblite.hash(again)
    # an Index without a frequency keeps the key it had (no needless miss for old entries)
    plain = pd.Index([1, 2, 3])
    assert joblite.hash(plain) == joblite.hash(pd.Index([1, 2, 3]))


def test_xarray_time_coordinate_freq_is_content():
    xr = pytest.importorskip("xarray")
    index = pd.date_range("2020-01-01", periods=3, freq="D")
    a = xr.DataArray([1, 2, 3], dims="t", coords={"t": index})
    b = a.assign_coords(t=pd.DatetimeIndex(index, freq=None))
    assert a.indexes["t"].freq is not None and b.indexes["t"].freq is None
    assert joblite.hash(a) != joblite.hash(b)
    assert joblite.hash(a.to_dataset(name="v")) != joblite.hash(b.to_dataset(name="v"))
    again = xr.DataArray([1, 2, 3], dims="t", coords={"t": index.copy()})
    assert joblite.hash(a) == joblite.hash(again)


np = pytest.importorskip("numpy")


def _reshape(a):
    a.shape = (2, a.shape[0] // 2)


def _retype(a):
    a.dtype = np.int64


def _restride(a):
    a.strides = (0,)


@pytest.mark.parametrize("change", [_reshape, _retype, _restride])
def test_chained_digest_follows_in_place_shape_dtype_and_strides(tmp_path, change):
    # A read-only memory map returned by a cached function is keyed by the digest stored
    # with its entry; setting its shape, dtype or strides in place (allowed on a read-only
    # array) changes its content, and the stale digest gave the next cached call the
    # result of the array as it was.
    memory = Memory(tmp_path, verbose=0, mmap_mode="r")

    @memory.cache
    def make(n):
        return np.arange(n, dtype=np.float64)

    @memory.cache
    def describe(x):
        return (x.shape, str(x.dtype), x.strides, float(x.reshape(-1)[1]))

    make(1 << 18)  # stored; the next call loads the entry as a read-only map
    mapped = make(1 << 18)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert describe(mapped) == ((1 << 18,), "float64", (8,), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2.x: prefer views
        change(mapped)
    truth = (mapped.shape, str(mapped.dtype), mapped.strides, float(mapped.reshape(-1)[1]))
    assert describe(mapped) == truth


def test_tensor_grad_is_content(tmp_path):
    # `.grad` is what an optimizer step or a gradient norm reads; a tensor (or a module whose
    # parameters) with gradients and the same tensor without them had one key
    torch = pytest.importorskip("torch")
    plain = torch.tensor([1.0, 2.0], requires_grad=True)
    stepped = torch.tensor([1.0, 2.0], requires_grad=True)
    (stepped * torch.tensor([3.0, 4.0])).sum().backward()
    assert stepped.grad is not None and plain.grad is None
    assert joblite.hash(plain) != joblite.hash(stepped)
    other = torch.tensor([1.0, 2.0], requires_grad=True)
    other.grad = torch.tensor([5.0, 6.0])
    assert joblite.hash(stepped) != joblite.hash(other)
    other.grad = torch.tensor([3.0, 4.0])
    assert joblite.hash(stepped) == joblite.hash(other)

    first = torch.nn.Linear(2, 1)
    second = torch.nn.Linear(2, 1)
    second.load_state_dict(first.state_dict())
    assert joblite.hash(first) == joblite.hash(second)

    def grad_norm(model):
        return sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)

    cached = Memory(tmp_path, verbose=0).cache(grad_norm)
    assert cached(first) == 0.0
    second(torch.ones(1, 2)).sum().backward()
    assert cached(second) == grad_norm(second) > 0.0


def test_pandas_allows_duplicate_labels_flag_is_content(tmp_path):
    # pickle keeps the flag and pandas acts on it (an operation that would duplicate a label
    # raises, results carry it): a frame with the flag off and the same frame with it on had
    # one key, so the cached call returned a result where the real call raises
    frame = pd.DataFrame({"a": [1, 2]})
    strict = frame.set_flags(allows_duplicate_labels=False)
    assert joblite.hash(frame) != joblite.hash(strict)
    assert joblite.hash(frame["a"]) != joblite.hash(strict["a"])
    assert joblite.hash(frame) == joblite.hash(frame.set_flags(allows_duplicate_labels=True))

    def doubled(df):
        return pd.concat([df, df])

    cached = Memory(tmp_path, verbose=0).cache(doubled)
    assert len(cached(frame)) == 4
    with pytest.raises(pd.errors.DuplicateLabelError):
        cached(strict)


_SCRIPT_WRAPPER = """
import functools
import multiprocessing as mp

import joblite


@functools.lru_cache
def helper(x):
    return x * {factor}


class Token:
    def __reduce__(self):
        return "TOKEN"


TOKEN = Token()


def key():
    return joblite.hash([helper, TOKEN])


if __name__ == "__main__":
    with mp.get_context("spawn").Pool(1) as pool:
        theirs = pool.apply(key)
    print(key() == theirs, key())
"""


def test_script_objects_pickled_by_name_key_alike_in_a_spawned_worker_and_by_content(tmp_path):
    # An lru_cache of a script's function (and any object that pickles as a global name) was
    # keyed by the module name it is found under: "__main__" in the parent, "__mp_main__"
    # in a spawned worker, so the worker's cached calls missed the parent's entries. And the
    # wrapped function of a script was keyed by name alone, so an edited script (helper
    # returning x * 3 instead of x * 2) kept the old key: a wrong answer on the next run.
    script = tmp_path / "job.py"
    outputs = []
    for factor in (2, 3):
        script.write_text(_SCRIPT_WRAPPER.format(factor=factor))
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        same_in_worker, key = proc.stdout.split()
        assert same_in_worker == "True"
        outputs.append(key)
    assert outputs[0] != outputs[1]


class Descending(set):
    """A set subclass with an iteration order of its own: that order is content."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), reverse=True))


class Listed(frozenset):
    """A frozenset subclass whose own reduction keeps a meaningful order."""

    def __new__(cls, items):
        self = super().__new__(cls, items)
        self.order = list(items)
        return self

    def __reduce__(self):
        return (type(self), (self.order,))


def test_set_subclass_with_its_own_order_keeps_it_as_content():
    assert joblite.hash(Descending([1, 2])) == joblite.hash(Descending([2, 1]))
    assert joblite.hash(Listed([1, 2])) != joblite.hash(Listed([2, 1]))
    assert joblite.hash(Listed([1, 2])) == joblite.hash(Listed([1, 2]))
