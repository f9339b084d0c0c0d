"""What Memory needs to know about a cached callable: a stable identity, a code fingerprint,
the normalised arguments of a call (the cache key's input) and joblib-style call formatting.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pprint
import re
import sys
import textwrap
from typing import Any, Callable, Optional

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


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
            func = func.func
        else:
            return func, args, kwargs


def _main_module_name() -> str:
    # A script's functions live in "__main__"; name them after the script so that two scripts
    # never share entries, while staying stable from one run to the next.
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return "__main__--" + os.path.splitext(os.path.basename(path))[0]
    return "__main__"


def func_identity(func: Callable) -> tuple[str, str, str]:
    """``(module, qualname, display_name)`` for a callable, stable across runs and processes.

    ``module`` and ``qualname`` are safe to use as directory names.
    """
    inner, _, _ = unwrap(func)
    target: Any = inner.__func__ if inspect.ismethod(inner) else inner
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if qualname is None or not isinstance(qualname, str):  # a callable object
        module = type(target).__module__
        qualname = type(target).__qualname__
    if not isinstance(module, str) or not module:
        module = type(target).__module__  # numpy ufuncs say "numpy" here
    name = qualname.rsplit(".", 1)[-1]
    if module == "__main__":
        module = _main_module_name()
    code = getattr(target, "__code__", None)
    if code is not None and "<lambda>" in qualname:
        # several lambdas of one scope share a qualname: tell them apart by their line
        qualname = f"{qualname}-L{code.co_firstlineno}"
    return _safe(module), _safe(qualname), name


def _code_fingerprint(code: Any) -> str:
    """Source-free fingerprint of a code object (for functions whose source is unavailable)."""
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            h.update(_code_fingerprint(const).encode())
        else:
            h.update(repr(const).encode("utf-8", "replace"))
    h.update(repr(code.co_names).encode())
    return h.hexdigest()


def func_code(func: Callable) -> str:
    """Text that changes when the function's code changes (its source when available)."""
    inner, _, _ = unwrap(func)
    target: Any = inner.__func__ if inspect.ismethod(inner) else inner
    if not (inspect.isfunction(target) or inspect.isbuiltin(target) or inspect.isclass(target)):
        if type(target).__module__ not in ("builtins", "numpy"):
            target = type(target)  # a callable object: its class holds the code
    try:
        return textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        pass
    code = getattr(target, "__code__", None)
    if code is not None:
        return f"# code fingerprint\n{_code_fingerprint(code)}\n"
    # builtins and ufuncs: no source, and their behaviour is tied to their name
    return f"# no source\n{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}\n"


class CallBinder:
    """Normalises ``(args, kwargs)`` of calls to one callable so equal calls give equal keys.

    ``f(1)``, ``f(a=1)`` and ``f(1, b=<default>)`` normalise to the same tuple; names in
    ``ignore`` drop out; ``*args`` become a tuple and ``**kwargs`` a sorted tuple of pairs.
    """

    def __init__(self, func: Callable, ignore: Optional[list[str]] = None) -> None:
        inner, self.preset_args, self.preset_kwargs = unwrap(func)
        self.bound_self: tuple = ()
        target: Any = inner
        if inspect.ismethod(inner):
            self.bound_self = (inner.__self__,)
            target = inner.__func__
        elif not (inspect.isfunction(inner) or inspect.isbuiltin(inner)):
            call = type(inner).__dict__.get("__call__")
            if inspect.isfunction(call):  # a callable object: its state is an argument
                self.bound_self = (inner,)
                target = call
        self.ignore = list(ignore or [])
        try:
            self.signature: Optional[inspect.Signature] = inspect.signature(target)
        except (TypeError, ValueError):
            self.signature = None  # builtins and ufuncs without a signature
        if self.signature is None:
            if self.ignore:
                raise ValueError(
                    f"ignore={self.ignore!r}: the signature of {inner!r} cannot be inspected, "
                    "so no argument can be ignored"
                )
            self.names: tuple = ("*args", "**kwargs")
            self._fast = False
            return
        params = list(self.signature.parameters.values())
        known = {p.name for p in params}
        for name in self.ignore:
            if not isinstance(name, str):
                raise TypeError(f"ignore must be a list of argument names, got {name!r}")
            if name not in known:
                raise ValueError(
                    f"ignore: argument {name!r} is not defined for function "
                    f"{getattr(target, '__qualname__', target)!r} (its arguments: {sorted(known)})"
                )
        ignored = set(self.ignore)
        self._keep = [i for i, p in enumerate(params) if p.name not in ignored]
        self.names = tuple(
            ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "")
            + p.name
            for p in params
            if p.name not in ignored
        )
        self._params = params
        simple = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._n_pos = sum(1 for p in params if p.kind in simple)
        self._fast = all(p.kind in simple for p in params)
        self._defaults = tuple(p.default for p in params)
        self._first_required_default = 0
        for i, p in enumerate(params):
            if p.default is p.empty:
                self._first_required_default = i + 1

    def normalise(self, args: tuple, kwargs: dict) -> tuple:
        """The tuple of argument values (in parameter order) that identifies this call."""
        if self.preset_args or self.preset_kwargs:
            args = self.preset_args + tuple(args)
            kwargs = {**self.preset_kwargs, **kwargs}
        if self.bound_self:
            args = self.bound_self + tuple(args)
        if self.signature is None:
            return (tuple(args), tuple(sorted(kwargs.items())))
        n = len(args)
        if self._fast and not kwargs and self._first_required_default <= n <= self._n_pos:
            values = tuple(args) + self._defaults[n:]
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            values_list = []
            for p in self._params:
                v = arguments[p.name]
                if p.kind is p.VAR_KEYWORD:
                    v = tuple(sorted(v.items()))
                elif p.kind is p.VAR_POSITIONAL:
                    v = tuple(v)
                values_list.append(v)
            values = tuple(values_list)
        if len(self._keep) != len(values):
            values = tuple(values[i] for i in self._keep)
        return values

    def named_arguments(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """``{name: value}`` of a call with ``ignore`` removed (for metadata and messages)."""
        values = self.normalise(args, kwargs)
        return dict(zip(self.names, values))


def _short_repr(value: Any, limit: int) -> str:
    text = pprint.pformat(value, indent=2)
    if len(text) > limit:
        text = text[: limit // 2] + "..."
    return text


def format_signature(name: str, args: tuple, kwargs: dict, limit: int = 1500) -> str:
    """``name(arg, kw=value)`` with long argument reprs cut, as joblib's verbose output shows."""
    parts = [_short_repr(a, limit) for a in args]
    parts += [f"{k}={_short_repr(v, limit)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def input_reprs(named: dict[str, Any], limit: int = 200) -> dict[str, str]:
    """Short ``repr`` of each argument, for the metadata file (kept small on purpose)."""
    out = {}
    for k, v in named.items():
        try:
            text = repr(v)
        except Exception as exc:  # a broken __repr__ must not break caching
            text = f"<unrepresentable {type(v).__name__}: {exc}>"
        out[k] = text if len(text) <= limit else text[: limit - 3] + "..."
    return out
