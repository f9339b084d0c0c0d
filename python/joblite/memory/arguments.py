"""A call's arguments as the cache sees them: bound to parameter names with defaults filled
and ``ignore`` removed (the key's input), hashed into the entry key, and shown in messages.
"""

from __future__ import annotations

import inspect
import pprint
import re
import sys
import types
import warnings
import weakref
from typing import Any, Callable, Optional

from .. import _core
from ..exceptions import UnhashableError
from ..hashing import hash as content_hash
from .chain import ArrayDigest, array_digest
from .identity import closure_state, unwrap

__all__ = ["ArgumentError", "CallBinder", "ValueDigest", "format_signature", "input_reprs"]

#: argument types keyed inline (hashing them on their own would cost more than it saves)
_INLINE = frozenset({int, float, str, bytes, bool, type(None)})
#: a tuple or list of at most this many such values is keyed inline too
_INLINE_ITEMS = 16


class ValueDigest:
    """Stands for an argument in a key: the content digest of its value, computed once per call
    (it is also the argument's digest stored with the entry, for :meth:`explain_miss`)."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __reduce__(self) -> tuple:
        return (ValueDigest, (self.digest,))


def _hash_with_tag(name: str) -> str:
    return f"joblite.hash_with:{name}"


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
        hash_with: Optional[dict[str, Callable[[Any], Any]]] = None,
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
        if hash_with is not None and not isinstance(hash_with, dict):
            raise TypeError(
                "hash_with must be a dict {argument name: function of the argument}, "
                f"got {type(hash_with).__name__}"
            )
        self.hash_with: dict[str, Callable[[Any], Any]] = dict(hash_with or {})
        for name, fn in self.hash_with.items():
            if not callable(fn):
                raise TypeError(
                    f"hash_with[{name!r}] must be a function of the argument, got {fn!r}"
                )
        #: position (among the kept names) -> the user's key function of that argument
        self._overrides: dict[int, Callable[[Any], Any]] = {}
        try:
            self.signature: Optional[inspect.Signature] = inspect.signature(target)
        except (TypeError, ValueError):
            self.signature = None  # builtins and ufuncs without a signature
        if self.signature is None:
            if self.ignore or self.hash_with:
                what = "ignore" if self.ignore else "hash_with"
                raise ValueError(
                    f"{what}: the signature of {inner!r} cannot be inspected, so no argument "
                    "can be named"
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
        unknown = sorted(n for n in self.hash_with if n not in known)
        if unknown:
            raise ValueError(
                f"hash_with: {', '.join(repr(n) for n in unknown)} "
                f"{'is not an argument' if len(unknown) == 1 else 'are not arguments'} of "
                f"{getattr(target, '__qualname__', target)!r} (its arguments: {sorted(known)})"
            )
        both = sorted(ignored & set(self.hash_with))
        if both:
            raise ValueError(
                f"hash_with and ignore both name {both}: an ignored argument has no key"
            )
        self._keep = [i for i, p in enumerate(params) if p.name not in ignored]
        self.names = tuple(
            ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "")
            + p.name
            for p in params
            if p.name not in ignored
        )
        self._params = params
        plain_names = [p.name for p in params if p.name not in ignored]
        self._overrides = {plain_names.index(n): fn for n, fn in self.hash_with.items()}
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
        return self.keyed(args, kwargs, code_digest, coerce_mmap)[0]

    def keyed(
        self, args: tuple, kwargs: dict, code_digest: str, coerce_mmap: bool = False
    ) -> tuple[str, tuple]:
        """``(key, keyed values)``: each argument as it enters the key, a plain value inline
        or a :class:`ValueDigest` (see :meth:`argument_digests`).

        Raises
        ------
        UnhashableError
            An argument cannot be hashed: the message names it (and where inside it).
        """
        values = self.normalise(args, kwargs)
        keyed_values = self._keyed_values(values, coerce_mmap)
        keyed: tuple = (self.names, keyed_values, code_digest)
        if self.closure_digest is not None:
            keyed = (*keyed, self.closure_digest)
        shared = self._shared(values)
        if shared:
            keyed = (*keyed, ("shared arguments", shared))
        try:
            digest = _core.hash(keyed, "blake3", coerce_mmap)
        except TypeError as exc:  # only plain values are left: cannot happen, but say so
            raise UnhashableError(
                f"PicklingError while hashing: {_strip_prefix(str(exc))}"
            ) from exc
        return digest[-32:], keyed_values

    def _shared(self, values: tuple) -> tuple:
        """``(later, first)`` positions of arguments passed more than once as one object
        (counting the items of ``*args`` and ``**kwargs``) whose identity matters:
        ``f(a, a)`` and ``f(a, copy(a))`` are different calls to a function that mutates one
        and reads the other, as joblib's key tells them apart. Which objects count is the
        rule of the hash walk itself (``_core.identity_matters``: an argument counts here
        exactly when ``hash([a, a])`` and ``hash([a, copy(a)])`` differ), so the two levels
        agree; see "Shared objects are content" in docs/hash.md."""
        flat: list = []
        for name, value in zip(self.names, values):
            if name.startswith("**"):
                flat.extend(v for _, v in value)
            elif name.startswith("*"):
                flat.extend(value)
            else:
                flat.append(value)
        first: dict[int, int] = {}
        shared = []
        for position, value in enumerate(flat):
            if type(value) in _INLINE:
                continue  # never counts; skipped only to keep the common call cheap
            seen = first.setdefault(id(value), position)
            if seen != position and _core.identity_matters(value):
                shared.append((position, seen))
        return tuple(shared)

    def _keyed_values(self, values: tuple, coerce_mmap: bool) -> tuple:
        out = []
        np = sys.modules.get("numpy")
        ndarray = np.ndarray if np is not None else ()
        for i, value in enumerate(values):
            override = self._overrides.get(i)
            if override is None and (
                type(value) in _INLINE
                or (
                    type(value) in (tuple, list)
                    and len(value) <= _INLINE_ITEMS
                    and all(type(v) in _INLINE for v in value)
                )
            ):
                out.append(value)
                continue
            if override is not None:
                # the user's function runs outside the try: its own errors are its own
                value = (_hash_with_tag(self.names[i].lstrip("*")), override(value))
            try:
                if override is None and isinstance(value, ndarray):
                    out.append(array_digest(value))  # its chained digest, or its own
                    continue
                out.append(ValueDigest(content_hash(value, "blake3", coerce_mmap)))
            except TypeError as exc:  # UnhashableError is one
                raise self._unhashable(i, value, exc) from exc
        return tuple(out)

    def _unhashable(self, index: int, value: Any, exc: TypeError) -> UnhashableError:
        name = self.names[index].lstrip("*")
        where = getattr(exc, "path", None)
        if isinstance(where, str) and where:
            # an instance's state dict reads as its attributes: model.inner, not
            # model.<state>['inner']
            where = _STATE_KEY.sub(r".\1", where)
        else:
            where = _locate(value)
        inside = f" at {name}{where}" if where else ""
        reason = getattr(exc, "reason", None)
        detail = reason if isinstance(reason, str) and reason else _strip_prefix(str(exc))
        if inside and detail.startswith("at obj") and ": " in detail:
            detail = detail.split(": ", 1)[1]  # the hash's own path, said above by name
        return UnhashableError(
            f"PicklingError while hashing argument {name!r} of {self.func_name} (a "
            f"{type(value).__name__}){inside}: {detail}. Two ways out: "
            "teach joblite to hash that type (register a hash handler, see docs/hash.md), or "
            f"leave the argument out of the cache key with @memory.cache(ignore=[{name!r}]) "
            f"(or key it yourself with hash_with={{{name!r}: ...}})"
        )

    def argument_digests(self, keyed_values: tuple) -> dict[str, str]:
        """``{parameter name: digest}`` of a call's keyed values (stored with the entry)."""
        out = {}
        for name, value in zip(self.names, keyed_values):
            if isinstance(value, (ValueDigest, ArrayDigest)):
                out[name] = value.digest
            else:
                out[name] = _core.hash(value, "blake3")
        return out

    def named_arguments(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """``{name: value}`` of a call with ``ignore`` removed (for metadata and messages)."""
        values = self.normalise(args, kwargs)
        return dict(zip(self.names, values))


#: a nested function's captured values as they were when it was first decorated in this
#: process: decorating the same function object again gives the same key even if it has
#: mutated what it captured since (a list it appends to, say)
_closure_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _unlisted_module_function(target: Any) -> Optional[Any]:
    """``target`` when it is a plain function of a module that is not the one of its name in
    ``sys.modules`` (so its name does not identify it), else ``None``.

    Lambdas, nested functions (keyed by their closure and line) and a script's functions
    (``__main__`` is named differently in workers) are left out.
    """
    if not isinstance(target, types.FunctionType) or "<" in target.__qualname__:
        return None
    module = target.__module__
    if module in ("__main__", "__mp_main__"):
        return None
    listed = sys.modules.get(module) if isinstance(module, str) else None
    if listed is not None and getattr(listed, "__dict__", None) is target.__globals__:
        return None
    return target


def _closure_digest(func: Callable, name: str) -> Optional[str]:
    target = unwrap(func)[0]
    target = getattr(target, "__func__", target)
    try:
        known = _closure_digests.get(target)
    except TypeError:  # not weakly referenceable
        known = None
    if known is not None:
        return str(known)
    captured = closure_state(func)
    unlisted = _unlisted_module_function(target)
    if captured is None and unlisted is None:
        return None
    state: tuple = captured or ()
    if unlisted is not None:
        # Its module and name do not lead back to it (a plugin file loaded without entering
        # sys.modules, an exec'd namespace): two such copies of one code share a name, so
        # what the function reads (its globals, defaults and code) tells them apart, as the
        # hash keys such a function given as an argument.
        state = (*state, ("<function by value>", unlisted))
    for var, value in state:
        try:
            _core.hash(value)
        except UnhashableError as exc:
            # Never refuse what joblib caches: key this closure as joblib does (by its code
            # alone), and say so once, when it is decorated.
            if value is unlisted:
                warnings.warn(
                    f"{name} is not found by its module and name (its module is not in "
                    f"sys.modules), so joblite keys it by what it reads, but {name}"
                    f"{getattr(exc, 'path', '') or ''} cannot be hashed ({exc.reason}); its "
                    "cache is keyed by its name and code alone, as joblib does, so two copies "
                    "of it may share results. Teach joblite the type with "
                    "joblite.register_hash_handler",
                    UserWarning,
                    stacklevel=5,
                )
                return None
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


def _locate(value: Any, depth: int = 4) -> str:
    """Where inside ``value`` hashing fails (``"['model'].coef_"``), by hashing its parts: only
    on the error path, a few levels into dicts, lists, tuples and attributes."""
    if depth == 0:
        return ""
    items: Any
    if isinstance(value, dict):
        items = ((f"[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    elif isinstance(getattr(value, "__dict__", None), dict):
        items = ((f".{k}", v) for k, v in vars(value).items())
    else:
        return ""
    for n, (step, item) in enumerate(items):
        if n >= 1000:
            break
        try:
            content_hash(item)
        except TypeError:
            return step + _locate(item, depth - 1)
        except Exception:  # a part whose hashing fails otherwise: not what we look for
            continue
    return ""


_STATE_KEY = re.compile(r"\.<state>\['([A-Za-z_][A-Za-z0-9_]*)'\]")


def _strip_prefix(message: str) -> str:
    """The hash's own message without the prefixes the cache's message already has."""
    message = message.removeprefix("joblite.hash: ")
    if message.startswith("PicklingError while hashing ") and ": " in message:
        message = message.split(": ", 1)[1]
    return message


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
