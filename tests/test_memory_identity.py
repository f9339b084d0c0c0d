"""A cached function has one identity in every process: parent, threads, loky, multiprocessing
(fork and spawn) and dask workers. Two different functions never share entries; a code change
invalidates once.

Each case runs real scripts in fresh interpreters (``python run.py``): a script's functions
live in ``__main__``, which is what workers see differently. Every computation appends a line
to a log file, so "computed once per input" is counted across processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODULE = """
import os

def log_call(name, x):
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(f"{name} {x}\\n")

def logged(name, x, value):
    log_call(name, x)
    return value

def make_adder(n):
    return lambda x: x + n

def run_payload(payload):
    import cloudpickle
    fn, x = cloudpickle.loads(payload)
    return fn(x)
"""

SCRIPT = """
import json, os, sys
import joblite
from joblite import Memory, Parallel, delayed
from callmod import log_call, logged, make_adder

BACKEND = sys.argv[1]
SCALE = {scale}
memory = Memory(os.environ["CACHE_DIR"], verbose=0)

@memory.cache
def features(x):
    log_call("features", x)
    return x * SCALE

@memory.cache
def apply(fn, x=2):
    log_call("apply", x)
    return fn(x)

f = memory.cache(lambda x: logged("f", x, x + 1)); g = memory.cache(lambda x: logged("g", x, x*10))
add_1, add_100 = memory.cache(make_adder(1)), memory.cache(make_adder(100))


def run_all(call):
    out = {{}}
    out["features"] = call(features, range(4))
    out["apply1"] = call(apply, [make_adder(1)] * 2)
    out["apply100"] = call(apply, [make_adder(100)] * 2)
    out["fg"] = call(f, [2]) + call(g, [2]) + call(f, [2])
    out["adders"] = call(add_1, [5]) + call(add_100, [5])
    return out


def mapper():
    if BACKEND == "none":
        return lambda fn, xs: [fn(x) for x in xs]
    if BACKEND in ("fork", "spawn"):
        import concurrent.futures, multiprocessing
        pool = concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context(BACKEND)
        )
        import cloudpickle
        from callmod import run_payload

        def pool_map(fn, xs):
            if fn is apply:  # its arguments are closures: plain pickle cannot send them
                return list(pool.map(run_payload, [cloudpickle.dumps((fn, x)) for x in xs]))
            return list(pool.map(fn, xs))  # the cached function itself goes by plain pickle
        return pool_map
    if BACKEND == "dask":
        from dask.distributed import Client, LocalCluster
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=":0",
        )
        client = Client(cluster)
        return lambda fn, xs: client.gather(client.map(fn, list(xs), pure=False))
    return lambda fn, xs: Parallel(n_jobs=2, backend=BACKEND)(delayed(fn)(x) for x in xs)


if __name__ == "__main__":
    parallel_map = mapper()
    sequential = lambda fn, xs: [fn(x) for x in xs]
    results = [run_all(parallel_map), run_all(sequential), run_all(parallel_map)]
    print(json.dumps(results))
"""


def _write_scripts(root: Path) -> tuple[Path, Path]:
    (root / "callmod.py").write_text(MODULE)
    paths = []
    for folder, scale in (("a", 1), ("b", 1000)):
        d = root / folder
        d.mkdir()
        (d / "run.py").write_text(SCRIPT.format(scale=scale))
        paths.append(d / "run.py")
    return paths[0], paths[1]


def _expected(scale: int) -> dict:
    return {
        "features": [i * scale for i in range(4)],
        "apply1": [3, 3],
        "apply100": [102, 102],
        "fg": [3, 20, 3],
        "adders": [6, 105],
    }


def _start(script: Path, backend: str, root: Path, cache: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "CACHE_DIR": str(cache),
        "CALL_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(script), backend],
        cwd=script.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[list, str]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


BACKENDS = [
    "threading",
    "loky",
    "multiprocessing",
    "fork",
    "spawn",
    pytest.param("dask", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_across_processes(tmp_path, backend):
    """Two same-named scripts, one after the other, then at the same time, on one cache."""
    if backend == "dask":
        pytest.importorskip("dask.distributed")
    a, b = _write_scripts(tmp_path)
    for concurrent in (False, True):
        cache = tmp_path / f"cache-{concurrent}"
        log_a, log_b = tmp_path / f"a-{concurrent}.log", tmp_path / f"b-{concurrent}.log"
        if concurrent:
            procs = [_start(a, backend, tmp_path, cache, log_a)]
            procs.append(_start(b, backend, tmp_path, cache, log_b))
            outcomes = [_finish(p) for p in procs]
        else:
            outcomes = [_finish(_start(a, backend, tmp_path, cache, log_a))]
            outcomes.append(_finish(_start(b, backend, tmp_path, cache, log_b)))
        for (results, err), scale in zip(outcomes, (1, 1000)):
            for result in results:  # parallel, sequential, parallel again: all right
                assert result == _expected(scale)
            assert "has changed" not in err
            assert "CacheWarning" not in err and "CollisionWarning" not in err
        calls_a, calls_b = _calls(log_a), _calls(log_b)
        # features is each script's own function: 4 inputs computed once in each script
        assert sorted(c for c in calls_a if c.startswith("features")) == [
            f"features {i}" for i in range(4)
        ]
        assert sorted(c for c in calls_b if c.startswith("features")) == [
            f"features {i}" for i in range(4)
        ]
        for calls in (calls_a, calls_b):
            # the two closures given to apply are told apart; each computed once
            assert [c for c in calls if c.startswith("apply")] == ["apply 2", "apply 2"]
            # the two lambdas of one line never share: f(2) and g(2) computed once each
            assert sorted(c for c in calls if c.split()[0] in ("f", "g")) == ["f 2", "g 2"]


def test_module_function_no_thrash(tmp_path):
    """A module's cached function computed with n_jobs 1, 2, 1, 2 over 6 inputs: 6, 0, 0, 0."""
    (tmp_path / "mathmod.py").write_text(
        textwrap.dedent(
            """
            import os

            def square(x):
                with open(os.environ["CALL_LOG"], "a") as f:
                    f.write(f"{x}\\n")
                return x * x
            """
        )
    )
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, warnings, logging
            warnings.simplefilter("error")
            logging.basicConfig()
            from joblite import Memory, Parallel, delayed
            import mathmod
            square = Memory(os.environ["CACHE_DIR"], verbose=1).cache(mathmod.square)
            counts = []
            for n_jobs in (1, 2, 1, 2):
                before = len(open(os.environ["CALL_LOG"]).read().split()) if os.path.exists(
                    os.environ["CALL_LOG"]) else 0
                out = Parallel(n_jobs=n_jobs, backend="loky")(
                    delayed(square)(i) for i in range(6))
                assert out == [i * i for i in range(6)], out
                after = len(open(os.environ["CALL_LOG"]).read().split())
                counts.append(after - before)
            print(counts)
            """
        )
    )
    env = {
        **os.environ,
        "CACHE_DIR": str(tmp_path / "cache"),
        "CALL_LOG": str(tmp_path / "calls.log"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[6, 0, 0, 0]"
    assert "has changed" not in proc.stderr


CHANGING = """
import os, sys
from joblite import Memory, Parallel, delayed

memory = Memory(os.environ["CACHE_DIR"], verbose=1)

@memory.cache
def work(x):
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(f"{{x}}\\n")
    return x + {offset}

if __name__ == "__main__":
    out = Parallel(n_jobs=2, backend=sys.argv[1])(delayed(work)(i) for i in range(8))
    assert out == [i + {offset} for i in range(8)], out
    out = Parallel(n_jobs=2, backend=sys.argv[1])(delayed(work)(i) for i in range(8))
    assert out == [i + {offset} for i in range(8)], out
"""


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_code_change_seen_first_in_workers_invalidates_once(tmp_path, backend):
    script = tmp_path / "job.py"
    env = {**os.environ, "CACHE_DIR": str(tmp_path / "cache")}
    for version, offset in enumerate((0, 100)):
        script.write_text(CHANGING.format(offset=offset))
        log = tmp_path / f"calls-{version}.log"
        proc = subprocess.run(
            [sys.executable, str(script), backend],
            env={**env, "CALL_LOG": str(log)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr
        assert sorted(int(x) for x in log.read_text().split()) == list(range(8))
        assert proc.stderr.count("has changed") == (1 if version else 0), proc.stderr


def test_code_with_a_set_constant_is_stable_across_hash_seeds(tmp_path):
    """A frozenset constant (``x in {...}``) is ordered by string hashing: its code text must
    not change with PYTHONHASHSEED, or every new run would clear the cache."""
    (tmp_path / "setmod.py").write_text(
        textwrap.dedent(
            """
            import os

            def is_greek(x):
                with open(os.environ["CALL_LOG"], "a") as f:
                    f.write(f"{x}\\n")
                return x in {"alpha", "beta", "gamma", "delta", "epsilon"}
            """
        )
    )
    code = (
        "import os, logging; logging.basicConfig(); from joblite import Memory; import setmod\n"
        "f = Memory(os.environ['CACHE_DIR'], verbose=1).cache(setmod.is_greek)\n"
        "assert f('beta') and not f('zeta')\n"
    )
    log = tmp_path / "calls.log"
    for seed in ("1", "2", "3"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "CACHE_DIR": str(tmp_path / "cache"),
            "CALL_LOG": str(log),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        }
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert "has changed" not in proc.stderr
    assert log.read_text().split() == ["beta", "zeta"]
