"""Code identity ignores cosmetic edits (joblib #1710): a comment, blank lines, formatting or a
docstring changed in a cached function's source keeps its cache; an edit that changes what it
does (body, default value, decorator) clears it, with the usual warning.

Each case rewrites a real source file between two fresh interpreters, so the code is read
from the file as a user's next run reads it. Every computation appends a line to a log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RUNNER = """
import logging, os, sys
logging.basicConfig()
sys.path.insert(0, os.environ["MOD_DIR"])
from joblite import Memory
import {module} as mod
memory = Memory(os.environ["CACHE_DIR"], verbose=1)
f = memory.cache({expr})
print("RESULT", f({arg}))
"""


def _run(tmp_path: Path, module_src: str, expr: str, arg: str = "3", module: str = "work"):
    mod_dir = tmp_path / "mod"
    mod_dir.mkdir(exist_ok=True)
    path = mod_dir / f"{module}.py"
    path.write_text(textwrap.dedent(module_src))
    # a source rewritten within the same second must not be served from a stale .pyc
    for pyc in (
        (mod_dir / "__pycache__").glob("*.pyc") if (mod_dir / "__pycache__").exists() else []
    ):
        pyc.unlink()
    env = {
        **os.environ,
        "MOD_DIR": str(mod_dir),
        "CACHE_DIR": str(tmp_path / "cache"),
        "CALL_LOG": str(tmp_path / "calls.log"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = RUNNER.format(module=module, expr=expr, arg=arg)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    return result[-1].split(" ", 1)[1], proc.stderr


def _calls(tmp_path: Path) -> int:
    log = tmp_path / "calls.log"
    return len(log.read_text().split()) if log.exists() else 0


LOG = """
import os

def log(x):
    with open(os.environ["CALL_LOG"], "a") as fh:
        fh.write(f"{x}\\n")
"""

BASE = (
    LOG
    + '''
def passthrough(f):
    return f

@passthrough
def f(x, y=2):
    """Scale x."""
    log(x)
    total = x * y
    return {"total": total, "items": [1, 2]}
'''
)

COSMETIC = (
    LOG
    + '''


def passthrough(f):
    return f


# a comment above
@passthrough
def f(x, y = 2):   # trailing comment
    """A rewritten docstring,
    now on two lines."""

    # a comment inside
    log(x)
    total = (x *
             y)
    return {
        "total": total,
        "items": [1, 2],
    }
'''
)

NO_DOCSTRING = (
    LOG
    + """
def passthrough(f):
    return f

@passthrough
def f(x, y=2):
    log(x)
    total = x * y
    return {"total": total, "items": [1, 2]}
"""
)

CHANGES = {
    "body": BASE.replace("total = x * y", "total = x * y + 1"),
    "default": BASE.replace("y=2", "y=5"),
    "decorator": BASE.replace("@passthrough\ndef f", "@passthrough\n@passthrough\ndef f"),
}


@pytest.mark.parametrize("edit", [COSMETIC, NO_DOCSTRING], ids=["format-comments-doc", "no-doc"])
def test_cosmetic_edit_keeps_the_cache(tmp_path, edit):
    assert _run(tmp_path, BASE, "mod.f")[0] == "{'total': 6, 'items': [1, 2]}"
    assert _calls(tmp_path) == 1
    result, err = _run(tmp_path, edit, "mod.f")
    assert result == "{'total': 6, 'items': [1, 2]}"
    assert _calls(tmp_path) == 1, "a cosmetic edit recomputed"
    assert "has changed" not in err
    # and back: still the same entry
    _run(tmp_path, BASE, "mod.f")
    assert _calls(tmp_path) == 1


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_real_change_invalidates_with_warning(tmp_path, change):
    _run(tmp_path, BASE, "mod.f")
    assert _calls(tmp_path) == 1
    result, err = _run(tmp_path, CHANGES[change], "mod.f")
    assert _calls(tmp_path) == 2, f"a {change} change was served from the cache"
    assert "has changed" in err
    if change == "body":
        assert result == "{'total': 7, 'items': [1, 2]}"


LAMBDA = LOG + "\ng = lambda x: (log(x), x + 1)[1]  # the comment\n"


def test_lambda(tmp_path):
    assert _run(tmp_path, LAMBDA, "mod.g")[0] == "4"
    _run(tmp_path, LAMBDA.replace("# the comment", "# another comment"), "mod.g")
    # (a lambda is filed by the line and column of its body: the edit keeps those)
    _run(tmp_path, LAMBDA.replace("(log(x), x + 1)[1]", "(log(x),x+1) [1]"), "mod.g")
    assert _calls(tmp_path) == 1
    assert _run(tmp_path, LAMBDA.replace("x + 1", "x + 2"), "mod.g")[0] == "5"
    assert _calls(tmp_path) == 2


NESTED = (
    LOG
    + '''
def make(k):
    def inner(x):
        """Inner doc."""
        log(x)
        return x * k
    return inner
'''
)


def test_nested_function(tmp_path):
    assert _run(tmp_path, NESTED, "mod.make(10)")[0] == "30"
    _run(tmp_path, NESTED.replace('"""Inner doc."""', "# no doc, a comment\n"), "mod.make(10)")
    assert _calls(tmp_path) == 1
    assert _run(tmp_path, NESTED.replace("x * k", "x * k * 2"), "mod.make(10)")[0] == "60"
    assert _calls(tmp_path) == 2


METHOD = (
    LOG
    + '''
class Model:
    def __init__(self, w):
        self.w = w

    def predict(self, x):
        """Predict."""
        log(x)
        return x * self.w
'''
)


def test_method(tmp_path):
    assert _run(tmp_path, METHOD, "mod.Model(2).predict")[0] == "6"
    edited = METHOD.replace('"""Predict."""', '"""Predict, documented better."""\n\n')
    _run(tmp_path, edited, "mod.Model(2).predict")
    assert _calls(tmp_path) == 1
    assert (
        _run(tmp_path, METHOD.replace("x * self.w", "x + self.w"), "mod.Model(2).predict")[0] == "5"
    )
    assert _calls(tmp_path) == 2


def _run_script(tmp_path: Path, body: str) -> tuple[str, str]:
    script = tmp_path / "job.py"
    script.write_text(
        "import logging, os\nlogging.basicConfig()\nfrom joblite import Memory\n"
        "memory = Memory(os.environ['CACHE_DIR'], verbose=1)\n" + textwrap.dedent(body)
    )
    env = {
        **os.environ,
        "CACHE_DIR": str(tmp_path / "cache"),
        "CALL_LOG": str(tmp_path / "calls.log"),
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1], proc.stderr


SCRIPT = (
    LOG
    + '''
@memory.cache
def step(x):
    """Step."""
    log(x)
    return x + 100

print(step(1))
'''
)


def test_function_of_a_script(tmp_path):
    assert _run_script(tmp_path, SCRIPT)[0] == "101"
    _run_script(tmp_path, SCRIPT.replace('"""Step."""', "# just a comment"))
    assert _calls(tmp_path) == 1
    out, err = _run_script(tmp_path, SCRIPT.replace("x + 100", "x + 200"))
    assert out == "201" and _calls(tmp_path) == 2 and "has changed" in err


def _run_without_source(tmp_path: Path, func_src: str) -> tuple[str, str]:
    """A function defined from a string (as in ``python -c`` or an interactive session): no
    source file, so only its bytecode tells what it does."""
    code = (
        "import logging, os\nlogging.basicConfig()\nfrom joblite import Memory\n"
        + LOG
        + f"exec(compile({func_src!r}, '<stdin>', 'exec'))\n"
        "memory = Memory(os.environ['CACHE_DIR'], verbose=1)\n"
        "print(memory.cache(h)(4))\n"
    )
    env = {
        **os.environ,
        "CACHE_DIR": str(tmp_path / "cache"),
        "CALL_LOG": str(tmp_path / "calls.log"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1], proc.stderr


def test_function_without_source_file(tmp_path):
    src = 'def h(x, k=3):\n    """Doc."""\n    log(x)\n    return x * k\n'
    assert _run_without_source(tmp_path, src)[0] == "12"
    cosmetic = "def h(x, k = 3):\n    # comment\n\n    log(x)\n    return (x *\n            k)\n"
    assert _run_without_source(tmp_path, cosmetic)[0] == "12"
    assert _calls(tmp_path) == 1
    out, err = _run_without_source(tmp_path, src.replace("k=3", "k=4"))
    assert out == "16" and _calls(tmp_path) == 2 and "has changed" in err
    out, err = _run_without_source(tmp_path, src.replace("k=3", "k=4").replace("x * k", "x - k"))
    assert out == "0" and _calls(tmp_path) == 3 and "has changed" in err


def test_cosmetic_edit_updates_the_stored_source(tmp_path):
    """The stored code shows the latest text (for ``explain_miss`` and the command line)."""
    _run(tmp_path, BASE, "mod.f")
    _run(tmp_path, COSMETIC, "mod.f")
    stored = list((tmp_path / "cache").rglob("func_code.py"))
    assert len(stored) == 1
    assert "a comment inside" in stored[0].read_text()


LRU = (
    LOG
    + """
import functools

@functools.lru_cache(maxsize=None)
def f(x):
    log(x)
    return x * 2
"""
)


def test_function_behind_lru_cache_is_keyed_by_its_inner_code(tmp_path):
    """An ``lru_cache`` object has no code of its own: its wrapped function's code counts
    (before, every such function shared one fixed code text, and an edit was a stale hit)."""
    assert _run(tmp_path, LRU, "mod.f")[0] == "6"
    assert _run(tmp_path, LRU.replace("x * 2", "x * 3"), "mod.f")[0] == "9"
    assert _calls(tmp_path) == 2
