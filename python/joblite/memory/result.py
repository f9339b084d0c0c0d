"""The shelved result: a picklable handle on one cache entry (``call_and_shelve``)."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..logger import Logger
from .stores import store_for

__all__ = ["MemorizedResult", "NotMemorizedResult"]


class MemorizedResult(Logger):
    """A handle on one cached result: :meth:`get` loads it, :meth:`clear` removes it.

    Returned by :meth:`MemorizedFunc.call_and_shelve`; picklable, so it can be sent to another
    process that shares the store.

    Parameters
    ----------
    location : str or StoreBackendBase
        The store (or the path given to :class:`Memory`).
    call_id : tuple of (str, str)
        ``(func_id, args_id)``.
    backend : str, default="local"
    mmap_mode : {None, 'r+', 'r', 'w+', 'c'}
    verbose : int, default=0
    timestamp : float, optional
    metadata : dict, optional
    """

    def __init__(
        self,
        location: Any,
        call_id: tuple,
        backend: str = "local",
        mmap_mode: Optional[str] = None,
        verbose: int = 0,
        timestamp: Optional[float] = None,
        metadata: Optional[dict] = None,
    ) -> None:
        Logger.__init__(self)
        self.store_backend = store_for(location, backend, verbose, None)
        self._call_id = tuple(call_id)
        self.mmap_mode = mmap_mode
        self.verbose = verbose
        self.timestamp = time.time() if timestamp is None else timestamp
        self.metadata = metadata if metadata is not None else {}

    @property
    def func_id(self) -> str:
        """``"<module>/<qualname>"`` of the function."""
        return self._call_id[0]

    @property
    def args_id(self) -> str:
        """The argument hash of the call."""
        return self._call_id[1]

    @property
    def func(self) -> str:
        """The function's identifier (as joblib, not the function object)."""
        return self.func_id

    def get(self) -> Any:
        """Load the cached value.

        Raises
        ------
        KeyError
            The entry is no longer in the cache (cleared or evicted).
        """
        try:
            return self.store_backend.load_output(self.func_id, self.args_id, self.mmap_mode)
        except KeyError:
            raise KeyError(
                f"The cached result of {self.func_id} (args_id {self.args_id}) is not in "
                f"{self.store_backend.location!r} anymore: it was cleared or evicted"
            ) from None

    def clear(self) -> None:
        """Remove the cached value from the store."""
        self.store_backend.clear_entry(self.func_id, self.args_id)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(location={self.store_backend.location!r}, "
            f"func={self.func_id!r}, args_id={self.args_id!r})"
        )


class NotMemorizedResult:
    """The result of ``call_and_shelve`` when caching is disabled: it holds the value."""

    __slots__ = ("valid", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.valid = True

    def get(self) -> Any:
        """The value (``KeyError`` after :meth:`clear`)."""
        if self.valid:
            return self.value
        raise KeyError("No value stored.")

    def clear(self) -> None:
        """Forget the value."""
        self.valid = False
        self.value = None

    def __repr__(self) -> str:
        return f"NotMemorizedResult({self.value!r})" if self.valid else "NotMemorizedResult()"

    def __getstate__(self) -> dict:
        return {"valid": self.valid, "value": self.value}

    def __setstate__(self, state: dict) -> None:
        self.valid = state["valid"]
        self.value = state["value"]
