"""Root pytest configuration: code blocks of README.md and docs/ (``pytest --markdown-docs``) and
docstring examples (``pytest --doctest-modules python/joblite``) run in a fresh temporary
directory, so the files they write (``Memory("cache_dir")``, ``dump(x, "data.jl")``) land there.
The test suite itself (tests/) has its own conftest.py and is not affected.
"""

from __future__ import annotations

import pytest

_EXAMPLE_ITEMS = {"MarkdownInlinePythonItem", "DoctestItem"}


@pytest.fixture(autouse=True)
def _examples_run_in_a_temporary_directory(request: pytest.FixtureRequest) -> None:
    if type(request.node).__name__ in _EXAMPLE_ITEMS:
        tmp_path = request.getfixturevalue("tmp_path")
        request.getfixturevalue("monkeypatch").chdir(tmp_path)
