"""The exception and warning types joblite raises, all in one small hierarchy."""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING, Any, Optional, Union


class JobliteError(Exception):
    """Base class of every exception joblite raises on its own account."""


class CorruptFileError(JobliteError, ValueError):
    """A file is not what it claims to be: truncated, failed its checksum, wrong magic, ...

    Parameters
    ----------
    path : str or os.PathLike or None
        The file (``None`` for in-memory data such as :func:`joblite.loads` input).
    reason : str
        What is wrong, in words.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]], reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        where = "<bytes>" if self.path is None else repr(self.path)
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Optional[str], str]]:  # keep them when pickled
        return (type(self), (self.path, self.reason))


class UnsafeLoadError(JobliteError, pickle.UnpicklingError):
    """A safe load (``allow_pickle=False``) met something that would import or call code."""


if TYPE_CHECKING:
    from loky.process_executor import TerminatedWorkerError

    class WorkerCrashedError(JobliteError, TerminatedWorkerError):
        """A worker process of a Parallel call died (killed, segfault, out of memory)."""

else:

    def __getattr__(name: str) -> Any:
        # WorkerCrashedError derives from loky's TerminatedWorkerError (so that
        # ``except TerminatedWorkerError`` catches it, as with joblib), and importing loky
        # costs ~0.1 s: the class is made on first use, not when joblite is imported.
        if name != "WorkerCrashedError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from loky.process_executor import TerminatedWorkerError

        class WorkerCrashedError(JobliteError, TerminatedWorkerError):
            """A worker process of a Parallel call died (killed, segfault, out of memory,
            os._exit): a :class:`RuntimeError`, and loky's ``TerminatedWorkerError``."""

        WorkerCrashedError.__qualname__ = "WorkerCrashedError"  # pickled by name
        globals()["WorkerCrashedError"] = WorkerCrashedError
        return WorkerCrashedError


class CacheWarning(UserWarning):
    """Something went wrong with a cache entry; the call recomputed and carried on."""


class UnhashableError(JobliteError, pickle.PicklingError, TypeError):
    """:func:`joblite.hash` (or a cached call's key) met an object it cannot hash.

    A ``TypeError`` and, as joblib raises, a ``pickle.PicklingError``.

    Parameters
    ----------
    reason : str
        Why the object cannot be hashed.
    path : str, default ""
        Where the object sits inside the hashed value, in Python syntax relative to it
        (``"['col']"``, ``"[0].weights"``); empty when it is the value itself.

    Attributes
    ----------
    reason : str
    path : str
    """

    def __init__(self, reason: str = "", path: str = "") -> None:
        self.reason = reason
        self.path = path
        # joblib's words first ("PicklingError while hashing"), for code that matches them
        where = f"PicklingError while hashing obj{path}: "
        if reason.startswith("PicklingError"):
            where = ""
        hint = (
            ""
            if "register_hash_handler" in reason or "ignore=" in reason
            else ". Teach joblite this type with joblite.register_hash_handler, or leave the "
            "argument out of the cache key with @memory.cache(ignore=[...])"
        )
        super().__init__(f"{where}{reason}{hint}")

    def _under(self, prefix: str) -> UnhashableError:
        """The same error, seen from a container: ``prefix`` goes in front of the path."""
        moved = type(self)(self.reason, prefix + self.path)
        moved.__cause__ = self.__cause__
        return moved

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # keep them when pickled
        return (type(self), (self.reason, self.path))
