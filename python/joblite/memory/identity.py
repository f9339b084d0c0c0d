"""A cached function's identity (where its entries live) and its code fingerprint (what
invalidates them), computed once in the process that decorates it.

The identity travels with a pickled :class:`~joblite.memory.MemorizedFunc`, so a worker process
(loky, multiprocessing fork or spawn, dask) files results exactly where the parent does, even
though it received the function by value and would see a different ``__main__`` or file name.
"""

from __future__ import annotations

import ast
import dis
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

from .. import _fork

__all__ = [
    "FuncIdentity",
    "JobLibCollisionWarning",
    "code_digest",
    "code_source",
    "func_code",
    "identify",
    "unwrap",
]

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


#: co_flags bits that change how a function is called or what a call returns
_CALL_FLAGS = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200


def _signature_text(code: Any) -> str:
    """The parameters of a code object: counts, ``*args``/``**kwargs`` and generator kinds
    (from ``co_flags``), and the parameter names (keyword calls bind by name)."""
    flags = code.co_flags & _CALL_FLAGS
    n = code.co_argcount + code.co_kwonlyargcount + bool(flags & 0x04) + bool(flags & 0x08)
    names = ",".join(code.co_varnames[:n])
    return f"{code.co_argcount}/{code.co_posonlyargcount}/{code.co_kwonlyargcount}/{flags}/{names}"


#: instructions that only carry positions, tracing hooks or padding: not behaviour
_NOT_BEHAVIOUR = frozenset({"NOP", "RESUME", "CACHE", "EXTENDED_ARG", "RESUME_CHECK"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
#: CPython 3.13's fused instructions and the two plain ones each stands for
_SUPERINSTRUCTIONS = {
    "LOAD_FAST_LOAD_FAST": ("LOAD_FAST", "LOAD_FAST"),
    "STORE_FAST_LOAD_FAST": ("STORE_FAST", "LOAD_FAST"),
    "STORE_FAST_STORE_FAST": ("STORE_FAST", "STORE_FAST"),
}


def _bytecode_digest(code: Any) -> str:
    """Digest of what a code object does: its instructions with their argument values, jumps
    as instruction indices, nested code objects by their own digest.

    Positions (line and column tables, ``co_firstlineno``), unused constants (the docstring)
    and the index of a name or constant in its table are left out, so blank lines, comments,
    formatting and docstrings never change it.
    """
    h = hashlib.sha256(b"joblite-bytecode-1")
    try:
        instructions = list(dis.get_instructions(code))
    except Exception:  # an interpreter whose dis cannot read its own code: the raw form
        return _code_fingerprint(code)
    # (name, whether its argument is a jump target, whether it has an argument, value)
    kept: list[tuple[str, bool, bool, Any]] = []
    index: dict = {}
    for ins in instructions:
        index[ins.offset] = len(kept)
        if ins.opname in _NOT_BEHAVIOUR:
            continue
        pair = _SUPERINSTRUCTIONS.get(ins.opname)
        if pair is not None and isinstance(ins.argval, tuple) and len(ins.argval) == 2:
            # CPython 3.13 fuses two loads/stores only when they sit on one line: a
            # reformatted expression gives the pair fused or apart, spelled here as the
            # two plain instructions either way
            kept.extend((op, False, True, name) for op, name in zip(pair, ins.argval))
            continue
        kept.append((ins.opname, ins.opcode in _JUMPS, ins.arg is not None, ins.argval))
    for opname, is_jump, has_arg, value in kept:
        h.update(opname.encode())
        if is_jump and isinstance(value, int):
            text = f"->{index.get(value, '?')}"
        elif hasattr(value, "co_code"):
            text = _bytecode_digest(value)
        elif not has_arg:
            text = ""
        else:
            text = _const_text(value)
        h.update(b"\1")
        h.update(text.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


#: AST fields that hold no behaviour: comments (``# type:``) and how a string was spelled
_COSMETIC_FIELDS = frozenset({"type_comment", "kind"})
_DOC_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _feed_ast(node: Any, out: list) -> None:
    """A serialisation of a syntax tree without positions, docstrings, comments or empty
    fields, the same on every supported Python (``ast.dump`` changed its output in 3.13)."""
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for field in node._fields:
            if field in _COSMETIC_FIELDS:
                continue
            value = getattr(node, field, None)
            if field == "body" and isinstance(node, _DOC_OWNERS) and value:
                first = value[0]
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    value = value[1:]  # the docstring
            if value is None or (isinstance(value, list) and not value):
                continue
            out.append(field + "=")
            _feed_ast(value, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _feed_ast(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(f"{type(node).__name__}:{node!r}")


def _syntax_digest(source: str) -> Optional[str]:
    """Digest of a definition's syntax tree (``None`` when it does not parse on its own)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    out: list = []
    _feed_ast(tree, out)
    return hashlib.sha256("".join(out).encode("utf-8", "surrogateescape")).hexdigest()


_CODE_HEADER = "# joblite code "
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _plain_text(value: Any) -> str:
    """Text of a default value that is the same in every run: plain values by ``repr``,
    others by their type only (a ``repr`` may hold a memory address)."""
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_plain_text(v) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted((str(k), _plain_text(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def func_code(func: Callable) -> str:
    """The function's code as stored beside its entries: a first line with the digest of
    what it does (see :func:`code_digest`), then its source (for messages and diffs).

    The digest covers the definition's syntax tree without docstrings, comments, blank lines
    or formatting (so the decorators and default values are in it), and its bytecode without
    positions (so a ``__code__`` replaced in memory, or a function without a source file, is
    covered too). A cosmetic edit keeps it; any edit that changes what runs changes it.
    """
    target = _target(func)
    try:
        # a decorator below the cache (functools.wraps, lru_cache): the code is the inner one's
        inner = inspect.unwrap(target)
    except ValueError:  # a cycle of __wrapped__
        inner = target
    if not any(
        inspect.isfunction(t) or inspect.isbuiltin(t) or inspect.isclass(t) for t in (target, inner)
    ):
        if type(target).__module__ not in ("builtins", "numpy"):
            target = inner = type(target)  # a callable object: its class holds the code
    codes: list[tuple[Any, Any]] = []
    for obj in (target, inner):
        code = getattr(obj, "__code__", None)
        if code is not None and all(code is not c for c, _ in codes):
            codes.append((code, obj))
    code = codes[-1][0] if codes else None
    parts = []
    source = None
    first_line = getattr(code, "co_firstlineno", None)
    if code is None or _has_source_file(code):
        try:
            lines, first_line = inspect.getsourcelines(target)
            source = textwrap.dedent("".join(lines))
        except Exception:  # no source file, a builtin, or a source inspect cannot parse
            source = None
    is_lambda = code is not None and code.co_name == "<lambda>"
    if source is not None and not is_lambda:
        # a lambda's source is the whole statement around it: only its bytecode is its own
        parts.append(f"ast:{_syntax_digest(source)}")
    for code_obj, owner in codes:
        parts.append(f"bytecode:{_bytecode_digest(code_obj)}")
        if not parts[0].startswith("ast:"):
            # without a syntax tree (a lambda, no source file) the signature is only in the
            # code object: `lambda *a: len(a)` and `lambda a: len(a)` share their bytecode
            parts.append(f"signature:{_signature_text(code_obj)}")
        # defaults live outside the code object (in the source's tree when there is one)
        defaults = (getattr(owner, "__defaults__", None), getattr(owner, "__kwdefaults__", None))
        parts.append(f"defaults:{_plain_text(defaults)}")
    if not parts:
        # builtins and ufuncs: no source, and their behaviour is tied to their name
        parts.append(f"name:{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    text = f"{_CODE_HEADER}{digest}\n"
    if source is not None:
        text += f"# first line: {first_line}\n{source}"
        if not text.endswith("\n"):
            text += "\n"
    else:
        text += f"# no source: {getattr(target, '__qualname__', repr(target))}\n"
    return text


def code_digest(code_text: str) -> str:
    """The behaviour digest of a stored code text (a whole-text digest for texts written by
    older versions, which then differ once)."""
    first, _, _ = code_text.partition("\n")
    if first.startswith(_CODE_HEADER):
        return first[len(_CODE_HEADER) :].strip()
    return hashlib.sha256(code_text.encode("utf-8", "replace")).hexdigest()


def code_source(code_text: str) -> tuple[int, list[str]]:
    """``(first line number, source lines)`` of a stored code text (``(0, [])`` if none)."""
    lines = code_text.splitlines()
    if lines and lines[0].startswith(_CODE_HEADER):
        lines = lines[1:]
    first = 0
    if lines and lines[0].startswith("# first line: "):
        try:
            first = int(lines[0][len("# first line: ") :])
        except ValueError:
            first = 0
        return first, lines[1:]
    return 0, []


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

_fork.renew_in_child(globals(), "_seen_lock")  # a lock another thread held at a fork
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
