"""The package imports cleanly, exposes joblib's public names, and stays light on import."""

import subprocess
import sys

import joblite

JOBLIB_NAMES = [
    "Memory", "MemorizedResult", "register_store_backend", "expires_after",
    "Parallel", "delayed", "cpu_count", "effective_n_jobs", "wrap_non_picklable_objects",
    "parallel_config", "parallel_backend", "ParallelBackendBase", "StoreBackendBase",
    "register_compressor", "register_parallel_backend", "PrintTime", "Logger",
    "hash", "dump", "load",
]  # fmt: skip


def test_extension_module_is_built():
    from joblite import _core

    assert _core.__version__ == joblite.__version__


def test_joblib_public_names_resolve():
    missing = [n for n in JOBLIB_NAMES if not hasattr(joblite, n)]
    assert missing == []


def test_unknown_attribute_raises_attribute_error():
    try:
        joblite.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_import_numpy_or_heavy_deps():
    code = (
        "import sys, joblite; "
        "heavy = [m for m in ('numpy', 'loky', 'dask', 'distributed', 'cloudpickle') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_type_checkers_see_every_public_name():
    """The TYPE_CHECKING imports in __init__.py (what mypy/pyright see) match the lazy map."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(joblite.__file__).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    seen = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be re-exported 'as' itself"
            seen[alias.name] = f".{node.module}" if node.module else "."
    seen.pop("logger")  # the submodule, for joblite.logger.use_logging
    assert seen == joblite._EXPORTS


def test_submodules_are_attributes_without_an_import():
    code = "import joblite; joblite.logger.use_logging(True); print(joblite.store.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "joblite.store"
