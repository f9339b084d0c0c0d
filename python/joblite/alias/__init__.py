"""joblite as ``joblib`` for a whole process and its workers: :func:`install_as_joblib`.

Libraries call ``import joblib`` themselves; once the alias is installed, that import and
every ``joblib.<submodule>`` they name resolve to the modules of :mod:`joblite.alias.joblib`,
which carry joblib's public and semi-public names on joblite's machinery. The switch is
also the environment variable ``JOBLITE_AS_JOBLIB=1``, read when joblite is imported:
:func:`install_as_joblib` sets it, so worker processes (loky, multiprocessing, dask on this
machine) install the alias as soon as they unpickle their first joblite task, before
the library code of the task imports joblib.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Optional

from .. import _fork

__all__ = [
    "ENV_VAR",
    "JOBLIB_API_VERSION",
    "install_as_joblib",
    "is_installed",
    "uninstall",
]

ENV_VAR = "JOBLITE_AS_JOBLIB"
# The joblib release whose API the alias implements (and whose test suite is joblite's
# conformance yardstick): what ``joblib.__version__`` reports under the alias, so that
# version checks in libraries take their current-joblib path. joblite.__version__ is
# joblite's own.
JOBLIB_API_VERSION = "1.6.0"

_TARGET = __name__ + ".joblib"
# joblib vendors these packages; joblite depends on the packages themselves
_EXTERNALS = {"joblib.externals.loky": "loky", "joblib.externals.cloudpickle": "cloudpickle"}
_lock = threading.Lock()

_fork.renew_in_child(globals(), "_lock")  # a lock another thread held at a fork


class _ExistingModule:
    """Loader handing the import system a module that is already imported."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.spec = getattr(module, "__spec__", None)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set the alias's spec on the module: it keeps its own
        # (its ``__package__`` must agree with ``__spec__.parent``)
        module.__spec__ = self.spec


def _target_name(fullname: str) -> str:
    for prefix, package in _EXTERNALS.items():
        if fullname == prefix or fullname.startswith(prefix + "."):
            return package + fullname[len(prefix) :]
    return _TARGET + fullname[len("joblib") :]


class _JoblibAliasFinder:
    """``sys.meta_path`` finder resolving ``joblib`` and ``joblib.*`` to joblite's modules.

    (Not an ``importlib.abc.MetaPathFinder`` subclass: that module costs ~20 ms to import;
    the import system only needs ``find_spec``.)"""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "joblib" and not fullname.startswith("joblib."):
            return None
        name = _target_name(fullname)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: joblite's joblib alias"
                " (joblite.install_as_joblib) does not provide this part of joblib; see"
                " joblite's docs/compatibility.md for what is covered",
                name=fullname,
            ) from None
        return ModuleSpec(fullname, _ExistingModule(module))  # type: ignore[arg-type]


_finder = _JoblibAliasFinder()


def _is_alias(module: Any) -> bool:
    return getattr(module, "__name__", "").startswith(_TARGET)


def is_installed() -> bool:
    """Whether ``import joblib`` gives joblite's alias in this process."""
    return _is_alias(sys.modules.get("joblib")) or _finder in sys.meta_path


def install_as_joblib() -> None:
    """Make every ``import joblib`` in this process and its workers resolve to joblite.

    ``joblib`` and the ``joblib.<submodule>`` names libraries use (``joblib.parallel``,
    ``joblib.memory``, ``joblib.numpy_pickle``, ``joblib.externals.loky``, ...) become
    joblite's modules, so libraries such as scikit-learn run their ``Parallel``,
    ``Memory``, ``dump`` and ``load`` calls on joblite without a code change. Sets the
    environment variable ``JOBLITE_AS_JOBLIB=1`` so that worker processes started from
    now on do the same when they import joblite. Idempotent.

    Raises
    ------
    RuntimeError
        If the real joblib is already imported: modules that imported it keep it, so the
        switch must come first (at the top of the script, or through the environment
        variable, read when joblite is imported).

    Examples
    --------
    At the top of the program, before anything imports joblib:

    >>> import joblite
    >>> joblite.install_as_joblib()  # doctest: +SKIP
    >>> import joblib  # doctest: +SKIP
    >>> joblib.Parallel is joblite.Parallel  # doctest: +SKIP
    True
    """
    with _lock:
        existing = sys.modules.get("joblib")
        if existing is not None and not _is_alias(existing):
            raise RuntimeError(
                "install_as_joblib() must run before joblib is imported: joblib"
                f" ({getattr(existing, '__file__', existing)!r}) is already imported, and the"
                " modules that imported it would keep it. Call it at the top of the"
                f" program, or set {ENV_VAR}=1 in the environment and import joblite first."
            )
        os.environ[ENV_VAR] = "1"
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    importlib.import_module("joblib")


def uninstall() -> None:
    """Undo :func:`install_as_joblib` (for tests: modules that imported joblib keep it)."""
    with _lock:
        os.environ.pop(ENV_VAR, None)
        while _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        for name, module in list(sys.modules.items()):
            if (name == "joblib" or name.startswith("joblib.")) and (
                _is_alias(module) or name in _EXTERNALS or name.startswith("joblib.externals")
            ):
                del sys.modules[name]


def install_from_environment() -> Optional[bool]:
    """Install the alias when ``JOBLITE_AS_JOBLIB`` asks for it (called at joblite's import)."""
    if os.environ.get(ENV_VAR, "").strip().lower() in ("", "0", "false", "no", "off"):
        return None
    if "joblib" in sys.modules and not _is_alias(sys.modules["joblib"]):
        warnings.warn(
            f"{ENV_VAR} is set but joblib was imported before joblite: this process keeps"
            " the real joblib. Import joblite (or call joblite.install_as_joblib()) first.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    with _lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    return True
