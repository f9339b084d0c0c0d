"""Type checkers see joblite's real signatures: a typed user script passes ``mypy --strict``,
misuse is reported, and ``@memory.cache`` keeps the decorated function's signature.

mypy runs on the installed package, as a user's checker would (py.typed, the TYPE_CHECKING
imports of ``joblite/__init__.py``).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent


def run_mypy(path: Path) -> tuple[str, int]:
    out, err, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--show-error-codes", "--config-file=", str(path)]
    )
    return out + err, status


def test_typed_user_script_passes_strict():
    out, status = run_mypy(HERE / "user_script.py")
    assert status == 0, out


MISUSE = """\
import joblite
import numpy as np

memory = joblite.Memory(location=123, verbose="loud")  # 4: location, 4: verbose
digest: int = joblite.hash(np.arange(3))  # 5: hash returns str


@memory.cache
def scale(values: list[float], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]


scale("not a list")  # 13: the cached function keeps its parameters
scale([1.0], factor="big")  # 14
n: int = scale([1.0])  # 15: ... and its return type
scale.check_call_in_cache([1.0], fator=2.0)  # 16: no such keyword
joblite.no_such_name  # 17: no Any-typed module __getattr__ for checkers
"""

EXPECTED = {
    4: ['Argument "location" to "Memory" has incompatible type "int"', '"verbose"'],
    5: ['incompatible types in assignment (expression has type "str", variable has type "int")'],
    13: ['incompatible type "str"; expected "list[float]"'],
    14: ['Argument "factor"', 'incompatible type "str"; expected "float"'],
    15: ['expression has type "list[float]", variable has type "int"'],
    16: ['Unexpected keyword argument "fator"'],
    17: ['Module has no attribute "no_such_name"'],
}


def test_misuse_is_reported(tmp_path):
    script = tmp_path / "misuse.py"
    script.write_text(textwrap.dedent(MISUSE))
    out, status = run_mypy(script)
    assert status == 1, out
    errors: dict[int, str] = {}
    for line in out.splitlines():
        m = re.match(r".*misuse\.py:(\d+): error: (.*)", line)
        if m:
            errors[int(m.group(1))] = errors.get(int(m.group(1)), "") + m.group(2) + "\n"
    for lineno, fragments in EXPECTED.items():
        for fragment in fragments:
            assert fragment.lower() in errors.get(lineno, "").lower(), (lineno, fragment, out)
    unexpected = set(errors) - set(EXPECTED)
    assert not unexpected, out
