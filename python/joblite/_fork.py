"""Locks that a forked child gets back unlocked.

A lock held by another thread at the instant of a ``fork`` stays held forever in the child
(only the forking thread exists there), so the child's first use of it would wait forever.
:func:`renew_in_child` registers a lock attribute (of a module, through its ``globals()``,
or of an object) to be replaced by a new lock in every forked child. The locks themselves
stay plain :mod:`threading` locks: no cost on their use.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Union

_Factory = Callable[[], Any]
# (module globals, or a weak reference to an object), attribute name, lock factory
_renewed: list[tuple[Union[dict, weakref.ref], str, _Factory]] = []
_renewed_lock = threading.Lock()


def renew_in_child(owner: Any, name: str, factory: _Factory = threading.Lock) -> None:
    """Give ``owner.name`` (or ``owner[name]`` when ``owner`` is a module's ``globals()``) a
    new ``factory()`` lock in every child this process forks from now on. An object is held
    weakly: once it is gone, nothing is done for it."""
    ref: Union[dict, weakref.ref] = owner if isinstance(owner, dict) else weakref.ref(owner)
    with _renewed_lock:
        if len(_renewed) > 256:  # objects come and go (stores): drop the dead ones
            _renewed[:] = [e for e in _renewed if isinstance(e[0], dict) or e[0]() is not None]
        _renewed.append((ref, name, factory))


def _after_fork_in_child() -> None:
    global _renewed_lock
    _renewed_lock = threading.Lock()
    for ref, name, factory in _renewed:
        if isinstance(ref, dict):
            ref[name] = factory()
        else:
            obj = ref()
            if obj is not None:
                setattr(obj, name, factory())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
