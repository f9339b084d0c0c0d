"""Attacks on the cache key: values that used to share a key while a function could tell them
apart (a cache hit returning another call's value), and the siblings of each defect.

- functions walked by value were keyed by bytecode, constants and defaults, not their
  signature: ``lambda *a: a`` and ``lambda a: a`` shared a key;
- classes were keyed by module and qualified name only, so two classes made by one factory
  with different captured values (``make.<locals>.Scaler``), and a script's class edited
  between two runs, shared keys: their instances returned each other's cached results.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import functools
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import joblite
import pytest
from joblite import Memory


def apply(f, x):
    return f(x)


def apply_kw(f, **kw):
    return f(**kw)


# ------------------------------------------------------------------- function signatures


def test_lambdas_with_one_bytecode_and_different_signatures_differ():
    star = lambda *a: a  # noqa: E731
    plain = lambda a: a  # noqa: E731
    kwargs = lambda **a: a  # noqa: E731
    assert star(5) != plain(5)  # what makes the collision a wrong answer
    assert len({joblite.hash(star), joblite.hash(plain), joblite.hash(kwargs)}) == 3


def test_parameter_names_are_content():
    # the same bytecode and defaults; called with keywords they compute different things
    f = lambda a=1, b=2: a - b  # noqa: E731
    g = lambda b=1, a=2: b - a  # noqa: E731
    assert f(a=5) != g(a=5)
    assert joblite.hash(f) != joblite.hash(g)


def test_keyword_only_and_positional_only_parameters_are_content():
    def outer():
        def pos(a, b):
            return a

        def kwonly(a, *, b):
            return a

        def posonly(a, /, b):
            return a

        return pos, kwonly, posonly

    assert len({joblite.hash(f) for f in outer()}) == 3


def test_memory_keeps_two_lambdas_of_one_bytecode_apart(tmp_path):
    cached = Memory(tmp_path, verbose=0).cache(apply)
    assert cached(lambda a: a, 7) == 7
    assert cached(lambda *a: a, 7) == (7,)
    cached_kw = Memory(tmp_path, verbose=0).cache(apply_kw)
    assert cached_kw(lambda a=1, b=2: a - b, a=5) == 3
    assert cached_kw(lambda b=1, a=2: b - a, a=5) == -4


def test_a_cached_lambda_whose_signature_changed_is_recomputed(tmp_path):
    # without a source file (exec), the cached function's own code digest is its bytecode:
    # the signature must be in it, or `lambda *a` serves what `lambda a` computed
    memory = Memory(tmp_path, verbose=0)
    results = []
    for text in ("f = lambda a: a", "f = lambda *a: a"):
        namespace: dict = {"__name__": "nosource"}
        exec(compile(text, "<string>", "exec"), namespace)
        results.append(memory.cache(namespace["f"])(3))
    assert results == [3, (3,)]


# ------------------------------------------------------------------- classes by value


def make_scaler(k):
    class Scaler:
        def __call__(self, x):
            return x * k

    return Scaler()


def make_config(scale):
    class Config:
        factor = scale

    return Config


def test_classes_made_by_one_factory_differ_by_what_they_captured():
    assert make_scaler(2)(3) != make_scaler(3)(3)
    assert joblite.hash(make_scaler(2)) != joblite.hash(make_scaler(3))
    assert joblite.hash(make_scaler(2)) == joblite.hash(make_scaler(2))
    assert joblite.hash(make_config(1)) != joblite.hash(make_config(2))
    assert joblite.hash(make_config(1)()) != joblite.hash(make_config(2)())
    # a bound method of such an instance, and the class itself
    assert joblite.hash(make_scaler(2).__call__) != joblite.hash(make_scaler(3).__call__)
    assert joblite.hash(type(make_scaler(2))) != joblite.hash(type(make_scaler(3)))


def test_memory_serves_each_factory_class_its_own_result(tmp_path):
    cached = Memory(tmp_path, verbose=0).cache(apply)
    assert cached(make_scaler(2), 3) == 6
    assert cached(make_scaler(3), 3) == 9
    assert cached(make_scaler(2), 3) == 6
    assert cached.check_call_in_cache(make_scaler(3), 3)


def _class_kinds() -> dict:
    """Local classes of the kinds a library or a test defines, each built twice."""

    def build():
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int = 1
            tags: list = dataclasses.field(default_factory=list, metadata={"unit": "m"})

        class Color(enum.Enum):
            RED = 1
            BLUE = "b"

        class Bits(enum.Flag):
            A = 1
            B = 2

        class Row(typing.NamedTuple):
            a: int
            b: str = "q"

        class Shape(abc.ABC):
            @abc.abstractmethod
            def area(self): ...

        class Square(Shape):
            side = 2

            def area(self):
                return self.side**2

            @property
            def double(self):
                return 2 * self.side

            @functools.cached_property
            def cached(self):
                return 3

            @staticmethod
            def helper():
                return 4

            @classmethod
            def make(cls):
                return cls()

        class Slotted:
            __slots__ = ("a",)

            def __init__(self):
                self.a = 1

        class Registry:
            known: list = []

            def __init_subclass__(cls, **kwargs):
                super().__init_subclass__(**kwargs)
                Registry.known.append(cls)  # the base refers to its subclass: a cycle

        class Plugin(Registry):
            pass

        square = Square()
        assert square.cached == 3  # fills the instance's cache, not the class
        return {
            "dataclass": Point(2),
            "enum": Color.BLUE,
            "flag": Bits.A | Bits.B,
            "namedtuple": Row(1),
            "abc": square,
            "slots": Slotted(),
            "cycle of classes": Plugin(),
        }

    return build()


@pytest.mark.parametrize("kind", sorted(_class_kinds()))
def test_instances_of_local_classes_of_every_kind_hash_stably(kind):
    first, second = _class_kinds()[kind], _class_kinds()[kind]
    assert joblite.hash(first) == joblite.hash(first)  # no cache filled by hashing changes it
    assert joblite.hash(first) == joblite.hash(second)  # two equal definitions, one key


def test_a_script_class_edited_between_runs_is_recomputed(tmp_path):
    """A stale hit across runs: a script's class is found by no name the next run can check,
    so what it does (its methods, its class attributes) is part of the key."""
    script = tmp_path / "train.py"
    cache = tmp_path / "cache"
    template = textwrap.dedent(
        """
        import sys
        from joblite import Memory

        memory = Memory(sys.argv[1], verbose=0)

        class Model:
            scale = {scale}

            def predict(self, x):
                return x * self.scale + {offset}

        @memory.cache
        def run(model, x):
            return model.predict(x)

        print(run(Model(), 10))
        """
    )

    def run(scale: int, offset: int) -> str:
        script.write_text(template.format(scale=scale, offset=offset))
        proc = subprocess.run(
            [sys.executable, str(script), str(cache)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return proc.stdout.strip()

    assert run(2, 0) == "20"
    assert run(3, 0) == "30"  # class attribute edited
    assert run(3, 1) == "31"  # method edited
    assert run(2, 0) == "20"


def test_a_script_class_hashes_the_same_in_a_spawned_worker(tmp_path):
    """The class of a script is walked by value: a spawned worker (where the script is
    ``__mp_main__``) and later runs (another PYTHONHASHSEED) key it exactly as the parent."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp
            import enum
            import joblite

            class Kind(enum.Enum):
                A = 1
                B = 2

            class Job:
                kinds = {"x", "y", "z"}

                def __init__(self, n):
                    self.n = n
                    self.kind = Kind.B

                def run(self):
                    return self.n in self.kinds

            def key(n):
                return joblite.hash([Job(n), Kind, Job.run])

            if __name__ == "__main__":
                ctx = mp.get_context("spawn")
                with ctx.Pool(1) as pool:
                    theirs = pool.apply(key, (3,))
                print(key(3) == theirs, key(3), key(3) != key(4))
            """
        )
    )
    outputs = []
    for seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        same, digest, differs = proc.stdout.split()
        assert same == "True" and differs == "True"
        outputs.append(digest)
    assert outputs[0] == outputs[1]


def test_a_class_with_a_field_metadata_proxy_hashes():
    # dataclass field metadata is a mappingproxy, which pickle refuses: hashed as its dict
    import types

    assert joblite.hash(types.MappingProxyType({"a": 1})) == joblite.hash(
        types.MappingProxyType({"a": 1})
    )
    assert joblite.hash(types.MappingProxyType({"a": 1})) != joblite.hash({"a": 1})
    assert joblite.hash(types.MappingProxyType({"a": 1})) != joblite.hash(
        types.MappingProxyType({"a": 2})
    )


def test_importable_classes_keep_their_name_key():
    # a class found by name is its name (editing a library's class is joblib's contract)
    assert joblite.hash(Path) == joblite.hash(Path)
    assert joblite.hash(Memory) != joblite.hash(Path)


# ------------------------------------------- names that lead elsewhere (found by name or not)

FACTORY_MODULE = """
def transform(x):
    return x + 1

plus_one = transform  # the first definition, kept under another name


def transform(x):
    return x * 2


def make_config(k):
    # type() names the class after the caller's module, with no '<locals>' in its name
    return type("Config", (), {"k": k, "run": lambda self, x: x * self.k})
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "attack_factory_mod.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("attack_factory_mod")
    yield module
    sys.modules.pop("attack_factory_mod", None)


def test_a_function_its_name_no_longer_leads_to_is_hashed_by_value(factory_module, tmp_path):
    m = factory_module
    assert m.plus_one(3) != m.transform(3)
    assert joblite.hash(m.plus_one) != joblite.hash(m.transform)
    cached = Memory(tmp_path / "c", verbose=0).cache(apply)
    assert cached(m.transform, 3) == 6
    assert cached(m.plus_one, 3) == 4


def test_classes_made_by_type_in_a_module_factory_differ(factory_module, tmp_path):
    one, two = factory_module.make_config(1), factory_module.make_config(2)
    assert (one.__module__, one.__qualname__) == (two.__module__, two.__qualname__)
    assert joblite.hash(one) != joblite.hash(two)
    assert joblite.hash(one()) != joblite.hash(two())
    assert joblite.hash(factory_module.make_config(1)()) == joblite.hash(one())
    cached = Memory(tmp_path / "c", verbose=0).cache(apply)
    assert cached(one().run, 5) == 5
    assert cached(two().run, 5) == 10


def test_a_class_its_name_misses_and_whose_namespace_cannot_be_hashed_keeps_its_name():
    import threading

    cls = type("Locked", (), {"lock": threading.Lock()})  # module: this test module
    assert joblite.hash(cls) == joblite.hash(cls)  # by name, as before, rather than an error
    # a class made in a function whose namespace cannot be hashed: keyed by its name, as
    # joblib does (never refuse what joblib hashes), with a warning naming the attribute
    local = make_config(1)
    local.lock = threading.Lock()
    with pytest.warns(UserWarning, match=r"make_config.<locals>.Config.*\['lock'\]"):
        assert joblite.hash(local) == joblite.hash(local)
    with pytest.warns(UserWarning, match="keyed by its name alone"):
        assert joblite.hash(local()) != joblite.hash(make_config(1)())


# ------------------------------------------------------------- deep nesting, small stacks

DEEP_SCRIPT = textwrap.dedent(
    """
    import collections, functools, sys, threading
    import joblite
    from joblite import Memory

    class Node:
        def __init__(self, child):
            self.child = child

    def build(kind, n):
        x = None
        for _ in range(n):
            if kind == "list":
                x = [x]
            elif kind == "dict":
                x = {"a": x}
            elif kind == "object":
                x = Node(x)
            elif kind == "partial":
                x = functools.partial(print, x)
            elif kind == "ordered":
                x = collections.OrderedDict(a=x)
            elif kind == "closure":
                x = (lambda v: (lambda: v))(x)
        return x

    def attempt(kind):
        try:
            joblite.hash(build(kind, 5000))
        except RecursionError:
            pass  # the documented outcome
        else:
            raise AssertionError(kind + " nested 5000 deep hashed without RecursionError")
        cached = Memory(sys.argv[2], verbose=0).cache(lambda x: 1)
        try:
            cached(build(kind, 5000))
        except RecursionError:
            pass
        joblite.hash(build(kind, 5))  # shallow values still hash on the same stack

    threading.stack_size(int(sys.argv[1]))
    errors = []
    def run():
        for kind in ("list", "dict", "object", "partial", "ordered", "closure"):
            try:
                attempt(kind)
            except BaseException as exc:
                errors.append(repr(exc))
    t = threading.Thread(target=run)
    t.start()
    t.join()
    print(errors)
    """
)


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param(
            256 * 1024,
            marks=pytest.mark.skipif(
                sys.version_info >= (3, 13),
                reason="CPython 3.13 itself overflows a 256 KiB thread stack on these values "
                "(pickle.dumps of a 3000-deep list there gives SIGSEGV without joblite)",
            ),
        ),
        1 << 20,
        2 << 20,
    ],
)
def test_deep_nesting_never_overflows_a_threads_stack(tmp_path, stack):
    """A deep value hashed on a thread with a small stack (2 MiB is a Rust thread's default, a
    walk at the depth limit used ~4 MiB) raised SIGSEGV; it must raise RecursionError."""
    script = tmp_path / "deep.py"
    script.write_text(DEEP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(stack), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "[]", proc.stdout


def test_local_subclasses_of_handled_types_differ_by_what_they_do():
    """A type with a content handler (a DataFrame) was keyed by its subclass's name only."""
    pd = pytest.importorskip("pandas")

    def make_frame(k):
        class Scaled(pd.DataFrame):
            @property
            def _constructor(self):
                return Scaled

            def total(self):
                return float(self.to_numpy().sum()) * k

        return Scaled({"a": [1.0, 2.0]})

    assert make_frame(2).total() != make_frame(3).total()
    assert joblite.hash(make_frame(2)) != joblite.hash(make_frame(3))
    assert joblite.hash(make_frame(2)) == joblite.hash(make_frame(2))
    assert joblite.hash(pd.DataFrame({"a": [1.0, 2.0]})) == joblite.hash(
        pd.DataFrame({"a": [1.0, 2.0]})
    )


def test_lru_cache_wrappers_of_closures_differ_by_what_they_wrap(tmp_path):
    """``functools.lru_cache`` pickles by its qualified name: wrappers of two closures shared
    a key (and a cached ``apply(cached_closure, x)`` served the other's result)."""

    def make(k):
        return functools.lru_cache(lambda x: x * k)

    def make_cached(k):
        @functools.cache
        def times(x):
            return x * k

        return times

    assert joblite.hash(make(1)) != joblite.hash(make(2))
    assert joblite.hash(make_cached(1)) != joblite.hash(make_cached(2))
    assert joblite.hash(make_cached(1)) == joblite.hash(make_cached(1))
    cached = Memory(tmp_path, verbose=0).cache(apply)
    assert cached(make_cached(2), 5) == 10
    assert cached(make_cached(3), 5) == 15
    # found by name: still its name
    assert joblite.hash(functools.lru_cache(apply)) != joblite.hash(make(1))


@functools.lru_cache
def module_level_cached(x):
    return x
