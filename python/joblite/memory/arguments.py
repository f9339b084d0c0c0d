"""A call's arguments as the cache sees them: bound to parameter names with defaults filled
and ``ignore`` removed (the key's input), hashed into the entry key, and shown in messages.
"""

from __future__ import annotations

import inspect
import pprint
import sys
import warnings
import weakref
from typing import Any, Callable, Optional

from .. import _core
from ..exceptions import UnhashableError
from .chain import key_values
from .identity import closure_state, unwrap

__all__ = ["ArgumentError", "CallBinder", "format_signature", "input_reprs"]


class ArgumentError(ValueError, TypeError):
    """A cached function was called with arguments its signature does not accept.

    A ``ValueError`` as joblib raises, and a ``TypeError`` as the plain call would.
    """


class CallBinder:
    """Normalises ``(args, kwargs)`` of calls to one callable so equal calls give equal keys.

    ``f(1)``, ``f(a=1)`` and ``f(1, b=<default>)`` normalise to the same tuple; names in
    ``ignore`` drop out; ``*args`` become a tuple and ``**kwargs`` a sorted tuple of pairs.
    A nested function's captured values, as they are when it is decorated, are part of every
    key (two closures of one factory never share entries); ``closure_digest`` carries them
    from the decorating process to a worker.
    """

    def __init__(
        self,
        func: Callable,
        ignore: Optional[list[str]] = None,
        closure_digest: Optional[str] = None,
    ) -> None:
        inner, self.preset_args, self.preset_kwargs = unwrap(func)
        self.func_name = getattr(inner, "__qualname__", None) or repr(inner)
        self.bound_self: tuple = ()
        if closure_digest is None:
            closure_digest = _closure_digest(func, self.func_name)
        self.closure_digest = closure_digest
        target: Any = inner
        if inspect.ismethod(inner):
            self.bound_self = (inner.__self__,)
            target = inner.__func__
        elif not (inspect.isfunction(inner) or inspect.isbuiltin(inner)):
            call = type(inner).__dict__.get("__call__")
            if inspect.isfunction(call):  # a callable object: its state is an argument
                self.bound_self = (inner,)
                target = call
        #: the function whose ``__code__`` is the cached code (a method's function, a
        #: callable object's ``__call__``)
        self.target: Any = target
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

    def _bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        assert self.signature is not None
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            shown = format_signature(self.func_name, args, kwargs, limit=60)
            if "too many positional" in str(exc):
                raise ArgumentError(
                    f"Too many arguments for {self.func_name}{self.signature}: {shown} was called"
                ) from None
            raise ArgumentError(f"{exc} for {self.func_name}{self.signature}: {shown}") from None

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
            bound = self._bind(args, kwargs)
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

    def key(self, args: tuple, kwargs: dict, code_digest: str, coerce_mmap: bool = False) -> str:
        """The entry key of a call: a digest of the named argument values and of the code
        (so two versions of a function never share an entry, even for a moment)."""
        values = self.normalise(args, kwargs)
        try:
            keyed: tuple = (self.names, key_values(values), code_digest)
            if self.closure_digest is not None:
                keyed = (*keyed, self.closure_digest)
            digest = _core.hash(keyed, "blake3", coerce_mmap)
        except TypeError as exc:
            raise self._unhashable(values, exc) from exc
        return digest[-32:]

    def _unhashable(self, values: tuple, exc: TypeError) -> UnhashableError:
        for name, value in zip(self.names, values):
            try:
                _core.hash(value)
            except TypeError as inner:
                plain = name.lstrip("*")
                return UnhashableError(
                    f"PicklingError while hashing argument {plain!r} of {self.func_name} "
                    f"(a {type(value).__name__}): {_strip_prefix(str(inner))}. Leave it out "
                    f"of the cache key with @memory.cache(ignore=[{plain!r}])"
                )
        return UnhashableError(f"PicklingError while hashing: {_strip_prefix(str(exc))}")

    def named_arguments(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """``{name: value}`` of a call with ``ignore`` removed (for metadata and messages)."""
        values = self.normalise(args, kwargs)
        return dict(zip(self.names, values))


#: a nested function's captured values as they were when it was first decorated in this
#: process: decorating the same function object again gives the same key even if it has
#: mutated what it captured since (a list it appends to, say)
_closure_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _closure_digest(func: Callable, name: str) -> Optional[str]:
    target = unwrap(func)[0]
    target = getattr(target, "__func__", target)
    try:
        known = _closure_digests.get(target)
    except TypeError:  # not weakly referenceable
        known = None
    if known is not None:
        return str(known)
    state = closure_state(func)
    if state is None:
        return None
    for var, value in state:
        try:
            _core.hash(value)
        except UnhashableError as exc:
            # Never refuse what joblib caches: key this closure as joblib does (by its code
            # alone), and say so once, when it is decorated.
            warnings.warn(
                f"{name} captured {var!r} (a {type(value).__name__}), which cannot be hashed "
                f"({exc.reason}); its cache is keyed by its code alone, as joblib does, so "
                "closures of one factory share results. Pass it as an argument (ignore=["
                f"{var!r}] if it does not change the result) or teach joblite the type with "
                "joblite.register_hash_handler",
                UserWarning,
                stacklevel=5,  # the user's @memory.cache line
            )
            return None
    digest = str(_core.hash(state))
    try:
        _closure_digests[target] = digest
    except TypeError:
        pass
    return digest


def _strip_prefix(message: str) -> str:
    return message.removeprefix("joblite.hash: ")


def _short_repr(value: Any, limit: int) -> str:
    """joblib's concise argument display: numpy summarised to its corners, depth 3."""
    try:
        np = sys.modules.get("numpy")
        if np is not None:
            with np.printoptions(precision=6, threshold=64, edgeitems=1):
                text = pprint.pformat(value, indent=2, depth=3)
        else:
            text = pprint.pformat(value, indent=2, depth=3)
    except Exception as exc:  # a broken __repr__ must not break caching
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
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
