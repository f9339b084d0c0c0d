"""The registry of content handlers: which function gives the canonical content of a type.

The Rust walk asks :func:`handler_for` once per type and walk for every object it has no fast
path for; a handler's result is hashed in place of the object (after the object's type name).
Handlers registered lazily by module name run their registration the first time an object of
a type from that module is hashed, so joblite never imports pandas, pyarrow or torch itself.
"""

from __future__ import annotations

import importlib.util
import threading
import types
import weakref
from typing import Any, Callable, Optional, TypeVar, Union

from .. import _fork

__all__ = [
    "Handler",
    "handler_for",
    "register_hash_handler",
    "register_hash_handler_lazy",
    "slot_state",
    "unregister_hash_handler",
]

#: A handler: the object -> its canonical content (any value joblite.hash accepts).
Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.RLock()
_fork.renew_in_child(globals(), "_lock", threading.RLock)  # held by a thread at a fork
#: a read-only view of a dict (a dataclass field's ``metadata``, a class's ``__dict__``) is
#: the dict it shows; pickle refuses it
_handlers: dict[type, Handler] = {types.MappingProxyType: dict}
#: top-level module name -> registration functions still to run
_lazy: dict[str, list[Callable[[], None]]] = {}
#: type -> its handler (None: no handler), filled by handler_for, emptied by registrations
_found: weakref.WeakKeyDictionary[type, Optional[Handler]] = weakref.WeakKeyDictionary()


def register_hash_handler(
    cls: Union[type, tuple[type, ...]], handler: Optional[Handler] = None
) -> Any:
    """Teach :func:`joblite.hash` (and so every cache key) the content of a type.

    ``handler(obj)`` returns the canonical content of ``obj``: any value joblite can hash
    (tuples, dicts, strings, numbers, numpy arrays, other registered types...). Two objects
    whose contents hash equal get one key; the type's module and qualified name are always
    part of the key as well, so two types never share keys. Subclasses use the handler of
    their nearest registered base class. Registering a type again replaces its handler.

    Parameters
    ----------
    cls : type or tuple of types
        The type(s) the handler describes.
    handler : callable, optional
        ``handler(obj) -> content``. Leave it out to use ``register_hash_handler`` as a
        decorator.

    Returns
    -------
    callable
        ``handler`` (or, used as a decorator, a function that registers and returns it).

    Examples
    --------
    >>> import joblite
    >>> class Point:
    ...     def __init__(self, x, y, cache=None):
    ...         self.x, self.y, self.cache = x, y, cache
    >>> @joblite.register_hash_handler(Point)
    ... def _point_content(p):
    ...     return (p.x, p.y)  # the cache is not content
    >>> joblite.hash(Point(1, 2)) == joblite.hash(Point(1, 2, cache=[0]))
    True
    """
    types = cls if isinstance(cls, tuple) else (cls,)
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"register_hash_handler needs a type, got {t!r}")

    def register(func: F) -> F:
        if not callable(func):
            raise TypeError(f"the handler must be callable, got {func!r}")
        with _lock:
            for t in types:
                _handlers[t] = func
            _found.clear()
        return func

    if handler is None:
        return register
    return register(handler)  # type: ignore[type-var]


def register_hash_handler_lazy(module: str) -> Callable[[F], F]:
    """Register handlers for the types of ``module`` only once one of them is hashed.

    The decorated function takes no argument; it is called (once) the first time
    :func:`joblite.hash` meets an object whose type is defined in ``module`` (a top-level
    package name such as ``"pandas"``), and registers handlers with
    :func:`register_hash_handler`. So the library is imported by the user's code, never by
    joblite. This is how joblite's own handlers for pandas, pyarrow, torch, xarray and scipy
    are registered.

    Parameters
    ----------
    module : str
        A top-level module name (``"mylib"``, not ``"mylib.sub"``).

    Returns
    -------
    callable
        A decorator that records the registration function and returns it unchanged.
    """
    if not module or "." in module:
        raise ValueError(f"register_hash_handler_lazy needs a top-level module, got {module!r}")

    def record(func: F) -> F:
        with _lock:
            _lazy.setdefault(module, []).append(func)
            _found.clear()
        return func

    return record


def unregister_hash_handler(cls: type) -> None:
    """Forget the handler registered for ``cls`` (its objects are hashed as before)."""
    with _lock:
        _handlers.pop(cls, None)
        _found.clear()


def handler_for(cls: type) -> Optional[Handler]:
    """The handler of ``cls`` (its own, a base class's, or Arrow's by protocol), or None."""
    try:
        return _found[cls]
    except (KeyError, TypeError):
        pass
    with _lock:
        mro = getattr(cls, "__mro__", (cls,))
        for base in mro:
            top = str(getattr(base, "__module__", "") or "").partition(".")[0]
            pending = _lazy.pop(top, None)
            for register in pending or ():
                register()
        found: Optional[Handler] = None
        for base in mro:
            if base in _handlers:
                found = _handlers[base]
                break
        else:
            if _speaks_arrow(cls):
                from ._arrow import capsule_content

                found = capsule_content
        try:
            _found[cls] = found
        except TypeError:  # not weakly referenceable
            pass
        return found


def _speaks_arrow(cls: type) -> bool:
    """A producer of the Arrow PyCapsule interface, read with pyarrow when it is installed."""
    if not (hasattr(cls, "__arrow_c_stream__") or hasattr(cls, "__arrow_c_array__")):
        return False
    if cls.__name__.endswith("Reader"):
        # a one-shot stream (pyarrow's RecordBatchReader): reading it to hash it would hand
        # the function an exhausted reader; it keeps the walk of its reduction
        return False
    return importlib.util.find_spec("pyarrow") is not None


def slot_state(obj: Any, library: str) -> dict:
    """Values in the ``__slots__`` of the classes of ``obj`` defined outside ``library`` (a
    top-level module name): the state a user's subclass of a registered type keeps there is
    content that the library's handler does not read."""
    found: dict = {}
    for klass in type(obj).__mro__:
        if str(getattr(klass, "__module__", "")).partition(".")[0] in (library, "builtins"):
            continue
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__") or name in found:
                continue
            try:
                found[name] = getattr(obj, name)
            except AttributeError:  # an unset slot
                continue
    return found


#: co_flags bits that change how a function is called or what a call returns
_CALL_FLAGS = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200


def _code_content(code: types.CodeType) -> tuple:
    """A code object met as a value (a ``ForwardRef``'s compiled annotation, a code constant
    kept in a class): what it runs, as the walk of a function reads it (positions left out)."""
    flags = code.co_flags & _CALL_FLAGS
    n = code.co_argcount + code.co_kwonlyargcount + bool(flags & 0x04) + bool(flags & 0x08)
    signature = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, flags)
    return (code.co_code, signature, code.co_varnames[:n], code.co_names, code.co_consts)


_handlers[types.CodeType] = _code_content


@register_hash_handler_lazy("typing")
def _typing_handlers() -> None:
    import typing

    def forward_ref(ref: Any) -> tuple:
        # what it names, not the value evaluating it cached (filled on first use)
        return (ref.__forward_arg__, getattr(ref, "__forward_module__", None))

    register_hash_handler(typing.ForwardRef, forward_ref)


#: class attributes that are not what the class does: names and text (cosmetic edits keep the
#: key), the per-instance slot machinery, and caches that pickle or abc fill in on first use
_CLASS_NOISE = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__doc__",
        "__firstlineno__",
        "__static_attributes__",
        "__slotnames__",
        "_abc_impl",
        "__abstractmethods__",
        "__parameters__",
    }
)


def class_content(cls: type) -> tuple:
    """What a class defined where it cannot be found by name does: its bases and the items of
    its namespace (methods by value, class attributes), for the walk of a class defined in a
    function (``make.<locals>.Scaler``) or in a script's ``__main__``.

    Two classes made by one factory with different captured values, or a script's class whose
    methods or class attributes were edited between runs, so give different keys. Descriptors
    pickle cannot store are replaced by the functions they hold; the slot descriptors and the
    caches filled in on first use (``__slotnames__``, ``_abc_impl``) are left out.
    """
    items: dict = {}
    for name, value in vars(cls).items():
        if name in _CLASS_NOISE:
            continue
        kind = type(value)
        if kind is staticmethod or kind is classmethod:
            value = (kind.__name__, value.__func__)
        elif isinstance(value, property):
            value = ("property", value.fget, value.fset, value.fdel)
        elif kind.__name__ in ("member_descriptor", "getset_descriptor") and kind.__module__ in (
            "builtins",
            None,
        ):
            continue  # the slots themselves, spelled by __slots__
        elif kind.__name__ == "cached_property" and kind.__module__ == "functools":
            value = ("cached_property", value.func)
        items[name] = value
    return (cls.__bases__, items)
