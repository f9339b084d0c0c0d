"""Shared objects are content: a cached function that mutates one part of its input and reads
another returns different results for ``[a, a]`` and ``[a, copy(a)]``, so they never share a
key (the wrong answer of joblite-hash-v5). Equal structures built differently still hit."""

from __future__ import annotations

import collections
import copy
import dataclasses
import subprocess
import sys
import textwrap

import joblite
import numpy as np
import pandas as pd
import pytest
from joblite import Memory


@pytest.fixture
def memory(tmp_path):
    return Memory(tmp_path / "cache", verbose=0)


def _mutate_first_read_second(pair):
    pair[0].append(1)
    return len(pair[1])


def test_a_list_holding_one_list_twice_never_gets_the_result_of_two_lists(memory):
    f = memory.cache(_mutate_first_read_second)
    a = []
    assert f([a, a]) == 1
    assert f([[], []]) == 0  # was 1: the first call's result
    b = []
    assert f([b, b]) == 1  # same sharing, equal content: a hit, and the right value


def _mutate_x_read_y(d):
    d["x"].append(1)
    return len(d["y"])


def test_a_dict_holding_one_list_under_two_keys(memory):
    f = memory.cache(_mutate_x_read_y)
    a = []
    assert f({"x": a, "y": a}) == 1
    assert f({"x": [], "y": []}) == 0
    b = []
    assert f({"y": b, "x": b}) == 1  # insertion order is not content


class Holder:
    def __init__(self, first, second):
        self.first = first
        self.second = second


def _mutate_attribute(h):
    h.first[0] = 99
    return int(h.second[0])


def test_an_object_whose_two_attributes_are_one_array(memory):
    f = memory.cache(_mutate_attribute)
    x = np.zeros(3)
    assert f(Holder(x, x)) == 99
    y = np.zeros(3)
    assert f(Holder(y, y.copy())) == 0


def _mutate_arrays(arrays):
    arrays[0][0] = 7
    return int(arrays[1][0])


def test_a_list_holding_one_array_twice(memory):
    f = memory.cache(_mutate_arrays)
    x = np.zeros(4, dtype=np.int64)
    assert f([x, x]) == 7
    assert f([np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64)]) == 0


def _mutate_arg_read_other(u, v):
    u.append(1)
    return len(v)


def _star(*args, **kwargs):
    args[0].append(1)
    return len(kwargs["k"])


def test_one_mutable_object_passed_as_two_arguments(memory):
    f = memory.cache(_mutate_arg_read_other)
    a = []
    assert f(a, a) == 1
    assert f([], []) == 0
    b = []
    assert f(b, v=b) == 1  # keyword or positional: the same call
    g = memory.cache(_star)
    c = []
    assert g(c, k=c) == 1
    assert g([], k=[]) == 0


def _count(u, v):
    _count.calls += 1
    return (u, v)


_count.calls = 0


def test_immutable_values_passed_twice_still_hit(memory):
    f = memory.cache(_count)
    t = (1, 2)
    f(t, t)
    f((1, 2), (1, 2))
    f("s", "s")
    f("s", "".join(["s"]))
    assert _count.calls == 2


def test_sharing_is_part_of_the_digest_and_only_sharing():
    a, b = [1], [1]
    assert joblite.hash([a, a]) != joblite.hash([a, b])
    assert joblite.hash([a, b]) == joblite.hash([[1], [1]])
    assert joblite.hash([a, a]) == joblite.hash([b, b])
    x = np.arange(5)
    assert joblite.hash((x, x)) != joblite.hash((x, x.copy()))
    assert joblite.hash({"p": a, "q": a, "r": b}) == joblite.hash({"r": [1], "q": b, "p": b})
    # a cycle is still a cycle, and equal cycles hit
    c = []
    c.append(c)
    d = []
    d.append(d)
    assert joblite.hash(c) == joblite.hash(d)


def test_how_a_frame_was_built_is_not_sharing():
    cats = pd.CategoricalDtype(["a", "b", "c"])
    shared = pd.DataFrame(
        {"p": pd.Series(list("abc"), dtype=cats), "q": pd.Series(list("cab"), dtype=cats)}
    )
    separate = pd.DataFrame(
        {
            "p": pd.Series(list("abc"), dtype=pd.CategoricalDtype(["a", "b", "c"])),
            "q": pd.Series(list("cab"), dtype=pd.CategoricalDtype(["a", "b", "c"])),
        }
    )
    assert joblite.hash(shared) == joblite.hash(separate)
    assert joblite.hash(shared) == joblite.hash(copy.deepcopy(shared))
    # but the same frame twice is sharing, as for any object
    assert joblite.hash([shared, shared]) != joblite.hash([shared, separate])
    assert joblite.hash([shared, shared]) == joblite.hash([separate, separate])


SCRIPT = textwrap.dedent(
    """
    import joblite, numpy as np
    a = [1, {"k": np.arange(3)}]
    print(joblite.hash({"x": a, "y": a, "z": [a, [1]]}))
    """
)


def test_shared_digests_are_stable_across_processes():
    outs = {
        subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (0, 1, 12345)
    }
    assert len(outs) == 1


def test_immutable_values_met_twice_or_copied_hash_equal():
    # joblib's test_numpy_dtype_pickling: a structured dtype's reduction hands out its cached
    # fields dict, the same object for both meetings of one dtype; it is not the input's sharing
    import datetime
    import decimal
    import fractions
    import pickle

    plain = np.dtype("f4")
    structured = np.dtype([("name", np.str_, 16), ("grades", np.float64, (2,))])
    for value in [
        plain,
        structured,
        datetime.datetime(2026, 12, 7, 9, 0),
        decimal.Decimal("1.5"),
        fractions.Fraction(1, 3),
        pd.Timestamp("2026-12-07"),
    ]:
        copy_of = pickle.loads(pickle.dumps(value))
        assert copy_of is not value or isinstance(value, np.dtype)
        assert joblite.hash([value, value]) == joblite.hash([value, copy_of])
        assert joblite.hash([value, value]) == joblite.hash([copy_of, copy_of])


def test_a_set_held_twice_is_shared():
    s = {1, 2}
    assert joblite.hash([s, s]) != joblite.hash([s, {1, 2}])
    assert joblite.hash([s, s]) == joblite.hash([{1, 2}] * 2)


def test_orders_do_not_depend_on_what_else_the_program_holds():
    # the first list is held by a variable in one call and by nothing else in the other: the
    # shared list that follows must be written as the same reference in both
    held = [9]
    b = [1]
    assert joblite.hash([held, b, b]) == joblite.hash([[9], b, b])
    assert joblite.hash({"a": held, "b": b, "c": b}) == joblite.hash({"a": [9], "b": b, "c": b})


def _mutate_through_first_tuple(pair):
    pair[0][0].append(1)
    return len(pair[1][0])


def test_a_tuple_met_twice_shares_what_it_holds(memory):
    # the tuple is walked twice; the list inside it is held by nothing else
    t = ([],)
    assert joblite.hash([t, t]) != joblite.hash([t, ([],)])
    assert joblite.hash([t, t]) == joblite.hash([([],)] * 2)
    f = memory.cache(_mutate_through_first_tuple)
    u = ([],)
    assert f([u, u]) == 1
    assert f([([],), ([],)]) == 0


# --- one rule for both levels: an object passed twice as arguments of a cached function
# counts exactly when it counts met twice inside one argument -------------------------------


class _Plain:
    def __init__(self, x):
        self.x = x


class _ValueHashed:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, _ValueHashed) and other.x == self.x

    def __hash__(self):
        return hash(self.x)


class _Slotted:
    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x


@dataclasses.dataclass(frozen=True)
class _Frozen:
    x: int


@dataclasses.dataclass(frozen=True)
class _FrozenHoldingList:
    x: list


def _kinds():
    """``(name, value, an equal copy that is another object, whether sharing counts)``."""
    import datetime
    import decimal
    import fractions

    def structured():
        return np.dtype([("a", "<f8"), ("b", "<i4")])

    return [
        ("list", [1], [1], True),
        ("dict", {"k": 1}, {"k": 1}, True),
        ("set", {1}, {1}, True),
        ("bytearray", bytearray(b"ab"), bytearray(b"ab"), True),
        ("numpy array", np.arange(3), np.arange(3), True),
        ("object with __dict__", _Plain(1), _Plain(1), True),
        ("object with __slots__", _Slotted(1), _Slotted(1), True),
        ("namedtuple holding a list", _Pair(1, [2]), _Pair(1, [2]), True),
        ("deque", collections.deque([1]), collections.deque([1]), True),
        ("numpy Generator", np.random.default_rng(5), np.random.default_rng(5), True),
        ("closure", _scaler(2), _scaler(2), True),
        ("list subclass", type("L", (list,), {})([1]), None, True),
        ("tuple of lists", ([1], [2]), ([1], [2]), True),
        ("tuple of tuples of a dict", ((1, ({"k": 1},)),), ((1, ({"k": 1},)),), True),
        ("frozen dataclass holding a list", _FrozenHoldingList([1]), _FrozenHoldingList([1]), True),
        ("object with value __hash__", _ValueHashed(1), _ValueHashed(1), False),
        ("frozen dataclass", _Frozen(1), _Frozen(1), False),
        ("datetime", datetime.datetime(2026, 12, 7, 9), datetime.datetime(2026, 12, 7, 9), False),
        ("Decimal", decimal.Decimal("1.5"), decimal.Decimal("1.5"), False),
        ("Fraction", fractions.Fraction(1, 3), fractions.Fraction(1, 3), False),
        ("dtype", structured(), structured(), False),
        ("pandas Timestamp", pd.Timestamp("2026-12-07"), pd.Timestamp("2026-12-07"), False),
        ("tuple of ints", (1, (2, 3)), tuple([1, tuple([2, 3])]), False),
        ("frozenset", frozenset({1, 2}), frozenset({1, 2}), False),
        ("namedtuple", _Pair(1, 2), _Pair(1, 2), False),
        ("numpy scalar", np.float64(1.5), np.float64(1.5), False),
    ]


_Pair = collections.namedtuple("_Pair", "a b")


def _scaler(k):
    def scale(x):
        return k * x

    return scale


def _two_arguments(u, v):
    _two_arguments.calls += 1
    return 0


_two_arguments.calls = 0


def _top_level_counts(memory, value, other):
    """Whether ``f(value, value)`` and ``f(value, other)`` are different calls for Memory."""
    f = memory.cache(_two_arguments)
    before = _two_arguments.calls
    f(value, value)
    f(value, other)
    return _two_arguments.calls - before == 2


@pytest.mark.parametrize("kind", [k[0] for k in _kinds()])
def test_sharing_counts_the_same_at_top_level_and_inside_an_argument(tmp_path, kind):
    _, value, other, counts = next(k for k in _kinds() if k[0] == kind)
    if other is None:
        other = copy.copy(value)
    assert other is not value
    assert joblite.hash(value) == joblite.hash(other)  # equal copies
    inside = joblite.hash([value, value]) != joblite.hash([value, other])
    top = _top_level_counts(Memory(tmp_path / "cache", verbose=0), value, other)
    assert (inside, top) == (counts, counts)


def test_sharing_of_a_value_hashed_object_depends_on_whether_this_one_hashes():
    # one type, two answers: a frozen dataclass's hash refuses a list field
    ints, lists = _FrozenHoldingList(1), _FrozenHoldingList([1])
    assert joblite.hash([ints, ints]) == joblite.hash([ints, _FrozenHoldingList(1)])
    assert joblite.hash([lists, lists]) != joblite.hash([lists, _FrozenHoldingList([1])])


def test_a_class_whose_hash_changes_after_first_use(tmp_path):
    class Base:
        def __init__(self, x):
            self.x = x

    class Point(Base):
        pass

    def counts(value_type):
        a = value_type(1)
        return joblite.hash([a, a]) != joblite.hash([a, value_type(1)])

    caches = iter(range(100))

    def both(value_type):
        a = value_type(1)
        inside = counts(value_type)
        # a fresh cache each time: a class walked by value that returns to an earlier
        # definition would hit that definition's entries
        memory = Memory(tmp_path / str(next(caches)), verbose=0)
        top = _top_level_counts(memory, a, value_type(1))
        assert inside == top
        return inside

    for _ in range(3):  # met several times, so any per-type answer is kept
        assert both(Point)
    Point.__hash__ = lambda self: hash(self.x)  # now hashes by value: immutable
    assert not both(Point)
    Point.__hash__ = None  # unhashable: mutable again
    assert both(Point)
    del Point.__hash__  # back to object's identity hash
    assert both(Point)
    Base.__hash__ = lambda self: hash(self.x)  # a base changed: the subclass follows
    assert not both(Point)
    del Base.__hash__
    assert both(Point)

    # a class that gains a __getattr__ (attribute lookup no longer the generic one) still has
    # its instance __dict__: still mutable
    def any_attribute(self, name):
        if name.startswith("__"):  # pickle's own lookups (Python < 3.11 asks __getstate__)
            raise AttributeError(name)
        return 0

    Point.__getattr__ = any_attribute
    assert both(Point)
    Point.__hash__ = lambda self: hash(self.x)
    assert not both(Point)


def test_an_object_whose_class_is_changed_in_place():
    class Mutable:
        pass

    class Valued:
        def __hash__(self):
            return 1

    a = Mutable()
    assert joblite.hash([a, a]) != joblite.hash([a, Mutable()])
    a.__class__ = Valued
    assert joblite.hash([a, a]) == joblite.hash([a, Valued()])


def _set_first_read_second(pair):
    pair[0].x = 5
    return pair[1].x


def test_a_slots_object_held_twice_never_gets_the_result_of_two_objects(memory):
    # no instance __dict__, but its attributes can be set: a wrong answer in joblite-hash-v6
    f = memory.cache(_set_first_read_second)
    a = _Slotted(1)
    assert f([a, a]) == 5
    assert f([_Slotted(1), _Slotted(1)]) == 1


def _append_through_first_read_second(pair):
    pair[0].b.append(1)
    return len(pair[1].b)


def test_a_namedtuple_holding_a_list_held_twice(memory):
    f = memory.cache(_append_through_first_read_second)
    t = _Pair(1, [])
    assert f([t, t]) == 1
    assert f([_Pair(1, []), _Pair(1, [])]) == 0
    u = _Pair(1, [])
    assert f((u, u)) == 1
    assert f((_Pair(1, []), _Pair(1, []))) == 0
