"""A cached function's identity (where its entries live) and its code fingerprint (what
invalidates them), computed once in the process that decorates it.

The identity travels with a pickled :class:`~joblite.memory.MemorizedFunc`, so a worker process
(loky, multiprocessing fork or spawn, dask) files results exactly where the parent does, even
though it received the function by value and would see a different ``__main__`` or file name.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import re
import sys
import textwrap
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["FuncIdentity", "JobLibCollisionWarning", "func_code", "identify", "unwrap"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAIN_NAMES = ("__main__", "__mp_main__")


class JobLibCollisionWarning(UserWarning):
    """Two different functions of one process have the same module and qualified name.

    joblite files their results apart (by the line, and for lambdas the column, where each
    is defined), so the warning only says that editing the lines above them moves their cache.
    """


def _safe(name: str) -> str:
    """A path component from a module or qualified name (no separators, no odd characters)."""
    out = _UNSAFE.sub("-", name.replace("<", "").replace(">", "")).strip(".")
    return out or "-"


def unwrap(func: Callable) -> tuple[Callable, tuple, dict]:
    """Peel ``functools.partial`` layers: the inner callable plus the arguments preset on it."""
    args: tuple = ()
    kwargs: dict = {}
    while True:
        if isinstance(func, functools.partial):
            args = tuple(func.args) + args
            kwargs = {**func.keywords, **kwargs}
            func = func.func
        elif getattr(type(func), "_wraps_for_cache", False):  # a MemorizedFunc
            func = func.func  # type: ignore[attr-defined]
        else:
            return func, args, kwargs


def _target(func: Callable) -> Any:
    inner, _, _ = unwrap(func)
    return inner.__func__ if inspect.ismethod(inner) else inner


def _has_source_file(code: Any) -> bool:
    filename = getattr(code, "co_filename", "") or ""
    return not filename.startswith("<") and os.path.isfile(filename)


def _script_component(code: Any) -> Optional[str]:
    """The ``__main__`` module's directory name: the script's resolved full path, mangled.

    Notebook cells follow joblib 1.6: the cell counter of ``<ipython-input-N-XYZ>`` and the
    run number of an ``ipykernel_NNNN`` folder are dropped, so re-running a cell hits.
    """
    filename = getattr(code, "co_filename", None) if code is not None else None
    if not filename:
        main = sys.modules.get("__main__")
        filename = getattr(main, "__file__", None)
    if not filename:
        return None
    parts = filename.split(os.sep)
    if parts[-1].startswith("<ipython-input"):
        split = parts[-1].split("-")
        return "-".join(split[:2] + split[3:])
    if len(parts) > 2 and parts[-2].startswith("ipykernel_"):
        parts[-2] = "ipykernel"
        return "-".join(p for p in parts if p)
    if filename.startswith("<") or not os.path.isfile(filename):
        return None
    resolved = os.path.realpath(filename)
    stem = os.path.splitext(os.path.basename(resolved))[0]
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{stem}-{digest}"


def _const_text(const: Any) -> str:
    """A constant's text, the same in every process: the order of a ``frozenset`` constant
    (``x in {"a", "b"}``) follows string hashing, which changes with ``PYTHONHASHSEED``."""
    if hasattr(const, "co_code"):
        return _code_fingerprint(const)
    if isinstance(const, frozenset):
        return "frozenset(" + ",".join(sorted(_const_text(c) for c in const)) + ")"
    if isinstance(const, tuple):
        return "(" + ",".join(_const_text(c) for c in const) + ")"
    return repr(const)


def _code_fingerprint(code: Any) -> str:
    """Fingerprint of a code object: bytecode, constants, names (stable across processes)."""
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update(_const_text(const).encode("utf-8", "replace"))
        h.update(b"\0")
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    return h.hexdigest()


def func_code(func: Callable) -> str:
    """Text that changes when the function's code changes (its source when available)."""
    target = _target(func)
    if not (inspect.isfunction(target) or inspect.isbuiltin(target) or inspect.isclass(target)):
        if type(target).__module__ not in ("builtins", "numpy"):
            target = type(target)  # a callable object: its class holds the code
    code = getattr(target, "__code__", None)
    if code is None or _has_source_file(code):
        try:
            source = textwrap.dedent(inspect.getsource(target))
            if code is not None:
                # the source file is read at the code's line: the bytecode digest makes an
                # in-memory replacement of __code__ visible too
                source += f"\n# code {_code_fingerprint(code)[:16]}\n"
            return source
        except Exception:  # no source file, a builtin, or a source inspect cannot parse
            pass
    if code is not None:
        return f"# code fingerprint\n{_code_fingerprint(code)}\n"
    # builtins and ufuncs: no source, and their behaviour is tied to their name
    return f"# no source\n{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}\n"


@dataclass(frozen=True)
class FuncIdentity:
    """Where a function's entries live and how it is shown.

    Attributes
    ----------
    func_id : str
        ``"<module>/<qualname>"``, both safe as directory names; unique per function.
    name : str
        The short name shown in messages.
    call_path : str
        ``module.qualname`` as joblib's verbose output shows it.
    base_id : str
        ``func_id`` without the line/column disambiguation (to detect name collisions).
    where : str
        ``file:line`` of the definition (for messages), or ``""``.
    """

    func_id: str
    name: str
    call_path: str
    base_id: str
    where: str


def identify(func: Callable) -> FuncIdentity:
    """The identity of a callable, stable across runs and equal in every process.

    Rules: a module-level function of an importable module is ``module/qualname``; a function
    of a script (``__main__``) is filed under the script's resolved full path, so two scripts
    of one name never share; a lambda or nested function adds its first line (a lambda also
    its column), so two of one scope never share; a lambda without a source file (``eval``)
    adds a digest of its bytecode instead.
    """
    target = _target(func)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if qualname is None or not isinstance(qualname, str):  # a callable object
        module = type(target).__module__
        qualname = type(target).__qualname__
    if not isinstance(module, str) or not module:
        module = type(target).__module__  # numpy ufuncs say "numpy" here
    name = qualname.rsplit(".", 1)[-1]
    code = getattr(target, "__code__", None)
    raw_module = "__main__" if module in _MAIN_NAMES else module
    if module in _MAIN_NAMES:
        script = _script_component(code)
        module = f"__main__--{script}" if script else "__main__"
    base = f"{_safe(module)}/{_safe(qualname)}"
    where = ""
    if code is not None:
        where = f"{code.co_filename}:{code.co_firstlineno}"
        no_source = not _has_source_file(code) and not code.co_filename.startswith("<ipython-input")
        if no_source and "<lambda>" in qualname:
            # eval'd lambdas all sit at line 1 of "<string>": only their code tells them apart
            qualname = f"{qualname}-h{_code_fingerprint(code)[:12]}"
        elif "<lambda>" in qualname:
            column = _first_column(code)
            if column is None:
                # no column positions (CPython < 3.11, or -X no_debug_ranges): two lambdas
                # of one line are told apart by their code instead
                qualname = f"{qualname}-L{code.co_firstlineno}h{_code_fingerprint(code)[:12]}"
            else:
                qualname = f"{qualname}-L{code.co_firstlineno}C{column}"
        elif "<locals>" in qualname:
            # the line goes on the scope, so the name still ends with the function's own
            at = qualname.rfind("<locals>") + len("<locals>")
            qualname = f"{qualname[:at]}-L{code.co_firstlineno}{qualname[at:]}"
    return FuncIdentity(
        func_id=f"{_safe(module)}/{_safe(qualname)}",
        name=name,
        call_path=f"{raw_module}.{getattr(target, '__qualname__', name)}",
        base_id=base,
        where=where,
    )


def _first_column(code: Any) -> Optional[int]:
    """The column where a lambda's body starts (its first instruction after RESUME), or None
    where the interpreter keeps no column positions."""
    try:
        for i, (_line, _end, col, end_col) in enumerate(code.co_positions()):
            if i > 0 and col is not None and (col, end_col) != (0, 0):
                return int(col)
    except (AttributeError, ValueError):
        pass
    return None


_seen_lock = threading.Lock()
_seen: dict[str, dict[str, str]] = {}  # base_id -> {func_id: where}


def note_in_process(identity: FuncIdentity) -> None:
    """Warn once when two functions of this process share a module and qualified name."""
    if identity.base_id == identity.func_id or "<lambda>" in identity.call_path:
        return
    with _seen_lock:
        others = _seen.setdefault(identity.base_id, {})
        if identity.func_id in others:
            return
        earlier = next(iter(others.values()), None)
        others[identity.func_id] = identity.where
    if earlier is not None:
        warnings.warn(
            JobLibCollisionWarning(
                f"Possible name collision between functions '{identity.name}' ({earlier}) and "
                f"'{identity.name}' ({identity.where}): joblite keeps their cached results "
                "apart by the line of their definition"
            ),
            stacklevel=5,
        )


def closure_state(func: Callable) -> Optional[tuple]:
    """The values a nested function captured (part of every key), or ``None``."""
    target = _target(func)
    cells = getattr(target, "__closure__", None)
    if not cells:
        return None
    code = target.__code__
    values = []
    for name, cell in zip(code.co_freevars, cells):
        try:
            value = cell.cell_contents
        except ValueError:  # not assigned yet
            continue
        if value is target:
            continue  # a recursive nested function refers to itself
        values.append((name, value))
    return tuple(values)
