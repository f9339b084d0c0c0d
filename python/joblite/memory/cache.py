"""Memory: the user's handle on a cache (``Memory(location).cache(f)``), its limits and its
statistics."""

from __future__ import annotations

import datetime
import functools
import inspect
import math
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar, Union, overload

from ..logger import Logger
from ..store import StoreBackendBase, parse_age, parse_bytes
from .arguments import CallBinder
from .functions import AsyncMemorizedFunc, AsyncNotMemorizedFunc, MemorizedFunc, NotMemorizedFunc
from .limits import LimitKeeper
from .stats import CacheStats, collect_stats
from .stores import store_for

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    _P = ParamSpec("_P")
else:  # only type checkers need a ParamSpec (Python 3.9 has none)
    _P = TypeVar("_P")
_R = TypeVar("_R")


class _JoblibStyleStore(Protocol):
    """A store backend object written for joblib (duck-typed: what ``location`` also accepts)."""

    def configure(self, location: Any, *args: Any, **kwargs: Any) -> Any: ...
    def _item_exists(self, location: Any) -> Any: ...


Location = Union[str, "os.PathLike[str]", StoreBackendBase, _JoblibStyleStore, None]

__all__ = ["Memory", "expires_after"]


class Memory(Logger):
    """A context for caching function results on disk: ``Memory(location).cache(func)``.

    Parameters
    ----------
    location : str, os.PathLike, StoreBackendBase or None
        Where the cache lives (entries go in ``<location>/joblite``). ``None`` disables
        caching: cached functions are called directly.
    backend : str, default="local"
        A store registered with :func:`register_store_backend`.
    mmap_mode : {None, 'r+', 'r', 'w+', 'c'}, optional
        Memory-map numpy arrays of cached results when loading them.
    compress : bool or int, default=False
        Compression of stored results (see :func:`joblite.dump`).
    verbose : int, default=1
        0 silent; >0 prints joblib's ``[Memory] Calling ...`` lines on every computation.
    backend_options : dict, optional
        Options of the store (see ``docs/memory.md``).
    bytes_limit : int or str, optional
        Keep the cache under this size (``"2G"`` works), least recently used entries removed
        first, checked after writes.
    items_limit : int, optional
        Keep at most this many entries.
    age_limit : datetime.timedelta or float, optional
        Remove entries not used for this long (seconds when a number).
    compute_once : bool, default=True
        Concurrent callers (threads or processes) of the same missing entry wait for one
        computation instead of each computing it.
    compute_once_timeout : float, default=600
        Seconds to wait for another caller's computation before computing anyway.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from joblite import Memory
    >>> mem = Memory(tempfile.mkdtemp(), verbose=0)
    >>> square = mem.cache(np.square)
    >>> square(np.arange(3))
    array([0, 1, 4])
    """

    def __init__(
        self,
        location: Location = None,
        backend: str = "local",
        mmap_mode: Optional[str] = None,
        compress: Any = False,
        verbose: int = 1,
        backend_options: Optional[dict] = None,
        *,
        bytes_limit: Union[int, str, None] = None,
        items_limit: Optional[int] = None,
        age_limit: Union[datetime.timedelta, float, None] = None,
        compute_once: bool = True,
        compute_once_timeout: float = 600.0,
    ) -> None:
        Logger.__init__(self)
        if mmap_mode not in (None, "r+", "r", "w+", "c"):
            raise ValueError(f"mmap_mode must be None, 'r+', 'r', 'w+' or 'c', got {mmap_mode!r}")
        if location is not None and not isinstance(location, (str, os.PathLike, StoreBackendBase)):
            if not (hasattr(location, "_item_exists") and hasattr(location, "configure")):
                raise TypeError(
                    "location must be a path, a StoreBackendBase or None, "
                    f"got {type(location).__name__}"
                )
        if items_limit is not None and (
            isinstance(items_limit, bool) or not isinstance(items_limit, int) or items_limit < 0
        ):
            raise ValueError(f"items_limit must be a non-negative int, got {items_limit!r}")
        if not (compute_once_timeout >= 0 and math.isfinite(compute_once_timeout)):
            raise ValueError(f"compute_once_timeout must be >= 0, got {compute_once_timeout!r}")
        if compress and mmap_mode is not None:
            warnings.warn("Compressed results cannot be memmapped", stacklevel=2)
        self._verbose = verbose
        self.mmap_mode = mmap_mode
        self.compress = compress
        self.backend = backend
        self.backend_options = dict(backend_options or {})
        self.timestamp = time.time()
        self.location = location
        self.bytes_limit = parse_bytes(bytes_limit)
        self.items_limit = items_limit
        self.age_limit = parse_age(age_limit)
        self.compute_once = bool(compute_once)
        self.compute_once_timeout = float(compute_once_timeout)
        self.store_backend = store_for(location, backend, verbose, self.backend_options)
        self._limits = LimitKeeper(
            self.store_backend, self.bytes_limit, self.items_limit, self.age_limit
        )

    @overload
    def cache(
        self,
        func: Callable[_P, _R],
        ignore: Optional[list[str]] = None,
        verbose: Optional[int] = None,
        mmap_mode: Any = False,
        cache_validation_callback: Optional[Callable[[dict], bool]] = None,
        *,
        hash_with: Optional[dict[str, Callable[[Any], Any]]] = None,
    ) -> MemorizedFunc[_P, _R]: ...

    @overload
    def cache(
        self,
        func: None = None,
        ignore: Optional[list[str]] = None,
        verbose: Optional[int] = None,
        mmap_mode: Any = False,
        cache_validation_callback: Optional[Callable[[dict], bool]] = None,
        *,
        hash_with: Optional[dict[str, Callable[[Any], Any]]] = None,
    ) -> Callable[[Callable[_P, _R]], MemorizedFunc[_P, _R]]: ...

    def cache(
        self,
        func: Optional[Callable[..., Any]] = None,
        ignore: Optional[list[str]] = None,
        verbose: Optional[int] = None,
        mmap_mode: Any = False,
        cache_validation_callback: Optional[Callable[[dict], bool]] = None,
        *,
        hash_with: Optional[dict[str, Callable[[Any], Any]]] = None,
    ) -> Any:
        """Wrap ``func`` so that its results are cached; usable as a decorator.

        Parameters
        ----------
        func : callable, optional
            The function; leave it out to get a decorator (``@memory.cache(ignore=[...])``).
        ignore : list of str, optional
            Argument names left out of the cache key (``["self"]`` for methods).
        verbose : int, optional
            Defaults to the Memory's.
        mmap_mode : {None, 'r+', 'r', 'w+', 'c'}, optional
            Defaults to the Memory's.
        cache_validation_callback : callable, optional
            ``callback(metadata) -> bool``; ``False`` means recompute (see
            :func:`expires_after`).
        hash_with : dict, optional
            ``{argument name: function}``: the argument enters the cache key as
            ``function(value)`` instead of its whole content, for objects you know better
            than the hash does (``{"model": lambda m: m.get_params()}``). A joblite addition;
            a name that is not an argument of ``func`` raises ``ValueError``.

        Returns
        -------
        MemorizedFunc
            (an ``AsyncMemorizedFunc`` for ``async def`` functions; a pass-through when the
            Memory has no location). For type checkers, a ``MemorizedFunc[P, R]`` with the
            signature of ``func``: calling it is checked like calling ``func``.
        """
        if cache_validation_callback is not None and not callable(cache_validation_callback):
            raise ValueError(
                f"cache_validation_callback needs to be callable. Got {cache_validation_callback}."
            )
        if func is None:
            return functools.partial(
                self.cache,
                ignore=ignore,
                verbose=verbose,
                mmap_mode=mmap_mode,
                cache_validation_callback=cache_validation_callback,
                hash_with=hash_with,
            )
        if isinstance(func, (MemorizedFunc, NotMemorizedFunc)):
            func = func.func
        is_async = inspect.iscoroutinefunction(func)
        if self.store_backend is None:
            if hash_with:  # refuse unknown names here too, as a cached function would
                CallBinder(func, ignore, "", hash_with)
            return (AsyncNotMemorizedFunc if is_async else NotMemorizedFunc)(func)
        cls = AsyncMemorizedFunc if is_async else MemorizedFunc
        return cls(
            func,
            self.store_backend,
            backend=self.backend,
            ignore=ignore,
            mmap_mode=self.mmap_mode if mmap_mode is False else mmap_mode,
            compress=self.compress,
            verbose=self._verbose if verbose is None else verbose,
            timestamp=self.timestamp,
            cache_validation_callback=cache_validation_callback,
            compute_once=self.compute_once,
            compute_once_timeout=self.compute_once_timeout,
            hash_with=hash_with,
            _limits=self._limits,
        )

    def clear(self, warn: bool = True) -> None:
        """Remove every entry of the cache."""
        if warn and self._verbose > 0:
            self.warn("Flushing completely the cache")
        if self.store_backend is not None:
            self.store_backend.clear()

    def reduce_size(
        self,
        bytes_limit: Union[int, str, None] = None,
        items_limit: Optional[int] = None,
        age_limit: Union[datetime.timedelta, float, None] = None,
    ) -> None:
        """Remove least recently used entries until the cache fits the limits.

        Parameters
        ----------
        bytes_limit : int or str, optional
            Maximum total size (``"1G"`` works). Defaults to the Memory's ``bytes_limit``.
        items_limit : int, optional
            Maximum number of entries. Defaults to the Memory's.
        age_limit : datetime.timedelta or float, optional
            Remove entries not used for longer than this. Defaults to the Memory's.
        """
        if self.store_backend is None:
            return
        b = parse_bytes(bytes_limit) if bytes_limit is not None else self.bytes_limit
        n = items_limit if items_limit is not None else self.items_limit
        a = parse_age(age_limit) if age_limit is not None else self.age_limit
        if b is None and n is None and a is None:
            return
        self.store_backend.reduce_size(b, n, a)

    def stats(self) -> CacheStats:
        """Hits, misses, time saved and bytes of this cache, per function and in total.

        Counts cover every process that used the cache (worker processes included) since each
        entry was created; a cleared function's counts go with it. It lists the whole store,
        so call it to report, not on every call.

        Returns
        -------
        CacheStats
            Totals, and per ``func_id`` in ``.functions``.

        Examples
        --------
        >>> import tempfile
        >>> from joblite import Memory
        >>> mem = Memory(tempfile.mkdtemp(), verbose=0)
        >>> double = mem.cache(lambda x: 2 * x)
        >>> [double(1), double(1), double(2)]
        [2, 2, 4]
        >>> s = mem.stats()
        >>> (s.hits, s.misses, s.entries)
        (1, 2, 2)
        """
        if self.store_backend is None:
            return CacheStats()
        return collect_stats(self.store_backend)

    def eval(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, computed only if not cached."""
        if self.store_backend is None:
            return func(*args, **kwargs)
        return self.cache(func)(*args, **kwargs)

    def __repr__(self) -> str:
        where = None if self.store_backend is None else self.store_backend.location
        return f"{type(self).__name__}(location={where})"

    def __reduce__(self) -> tuple:
        kwargs = {
            "location": self.location,
            "backend": self.backend,
            "mmap_mode": self.mmap_mode,
            "compress": self.compress,
            "verbose": self._verbose,
            "backend_options": self.backend_options,
            "bytes_limit": self.bytes_limit,
            "items_limit": self.items_limit,
            "age_limit": self.age_limit,
            "compute_once": self.compute_once,
            "compute_once_timeout": self.compute_once_timeout,
        }
        return (_rebuild_memory, (kwargs,))


def _rebuild_memory(kwargs: dict) -> Memory:
    return Memory(**kwargs)


def expires_after(
    days: float = 0,
    seconds: float = 0,
    microseconds: float = 0,
    milliseconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    weeks: float = 0,
) -> Callable[[dict], bool]:
    """A ``cache_validation_callback`` that recomputes results older than the given duration.

    Parameters
    ----------
    days, seconds, microseconds, milliseconds, minutes, hours, weeks : float
        Passed to :class:`datetime.timedelta`.

    Examples
    --------
    >>> import tempfile
    >>> from joblite import Memory, expires_after
    >>> mem = Memory(tempfile.mkdtemp(), verbose=0)
    >>> @mem.cache(cache_validation_callback=expires_after(minutes=5))
    ... def fetch(url):
    ...     return len(url)
    """
    limit = datetime.timedelta(
        days=days,
        seconds=seconds,
        microseconds=microseconds,
        milliseconds=milliseconds,
        minutes=minutes,
        hours=hours,
        weeks=weeks,
    ).total_seconds()

    def cache_validation_callback(metadata: dict) -> bool:
        stored = metadata.get("time")
        if not isinstance(stored, (int, float)):
            return False
        return time.time() - stored < limit

    return cache_validation_callback
