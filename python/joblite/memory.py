"""Memory: transparent disk caching of function results, with joblib's API.

``Memory(location).cache(f)`` returns a :class:`MemorizedFunc` that computes ``f`` once per
distinct arguments and serves later calls from the store (see ``docs/memory.md``).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import logging
import math
import os
import threading
import time
import warnings
from typing import Any, Callable, Optional, Union

from . import __version__
from ._funcinfo import (
    CallBinder,
    format_signature,
    func_code,
    func_identity,
    input_reprs,
    unwrap,
)
from .exceptions import CacheWarning, CorruptFileError
from .hashing import hash as _hash
from .logger import Logger, emit, format_time, short_format_time
from .store import (
    StoreBackendBase,
    make_store,
    parse_age,
    parse_bytes,
    register_store_backend,
)

__all__ = [
    "MemorizedFunc",
    "MemorizedResult",
    "Memory",
    "expires_after",
    "register_store_backend",
]

_log = logging.getLogger("joblite")
_MISSING = object()
_held = threading.local()  # compute locks this thread holds: never wait on oneself


def _key_from_digest(digest: str) -> str:
    tail = digest.rsplit(":", 1)[-1]
    if not tail.isalnum():
        tail = "".join(c for c in tail if c.isalnum())
    return tail[-32:].lower()


def _store_for(location: Any, backend: Any, verbose: int, options: Optional[dict]) -> Any:
    if location is None or isinstance(location, StoreBackendBase):
        return location
    if isinstance(location, str) and "://" in location:
        # an fsspec URL (s3://bucket/prefix, gcs://..., memory://...): the object-store backend
        if backend == "local":
            backend = "fsspec"
        return make_store(backend, location.rstrip("/") + "/joblite", verbose, options)
    return make_store(backend, os.path.join(os.fspath(location), "joblite"), verbose, options)


class _LimitKeeper:
    """Enforces a Memory's size limits after writes without scanning the store on every call.

    The first write of a process scans once; afterwards the bytes and items written since are
    added to the last scan's totals and a new scan (with eviction down to 90% of the limits,
    so scans stay rare) runs only when an estimate crosses a limit, or now and then to see other
    processes' writes.
    """

    def __init__(
        self,
        store: Any,
        bytes_limit: Optional[int],
        items_limit: Optional[int],
        age_limit: Optional[float],
    ) -> None:
        self.store = store
        self.bytes_limit = bytes_limit
        self.items_limit = items_limit
        self.age_limit = age_limit
        self.active = store is not None and not (
            bytes_limit is None and items_limit is None and age_limit is None
        )
        self.known_bytes: Optional[int] = None
        self.known_items = 0
        self.last_scan = 0.0
        self.scan_cost = 0.0
        self.scans = 0

    def after_write(self, nbytes: int) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if self.known_bytes is None:
            due = True
        else:
            self.known_bytes += nbytes
            self.known_items += 1
            due = (
                (self.bytes_limit is not None and self.known_bytes > self.bytes_limit)
                or (self.items_limit is not None and self.known_items > self.items_limit)
                or (
                    self.age_limit is not None
                    and now - self.last_scan > max(1.0, self.age_limit / 4)
                )
                or now - self.last_scan > max(60.0, 20 * self.scan_cost)
            )
        if due:
            self.enforce()

    def enforce(self) -> None:
        start = time.monotonic()
        b = self.bytes_limit
        n = self.items_limit
        _, kept = self.store.reduce_size(
            None if b is None else b - b // 10,
            None if n is None else n - n // 10,
            self.age_limit,
        )
        self.known_bytes = sum(e.size for e in kept)
        self.known_items = len(kept)
        self.last_scan = time.monotonic()
        self.scan_cost = self.last_scan - start
        self.scans += 1


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
        self.store_backend = _store_for(location, backend, verbose, None)
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


class NotMemorizedFunc:
    """What :meth:`Memory.cache` returns when ``location=None``: calls go straight through."""

    _wraps_for_cache = True

    def __init__(self, func: Callable) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> NotMemorizedResult:
        """Call and wrap the value in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(self.func(*args, **kwargs))

    def call(self, *args: Any, **kwargs: Any) -> tuple:
        """Call; returns ``(output, {})``."""
        return self.func(*args, **kwargs), {}

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """Always ``False``: nothing is cached."""
        return False

    def clear(self, warn: bool = True) -> None:
        """Nothing to clear."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(func={self.func!r})"


class AsyncNotMemorizedFunc(NotMemorizedFunc):
    """:class:`NotMemorizedFunc` for ``async def`` functions."""

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> NotMemorizedResult:  # type: ignore[override]
        """Await the call and wrap the value in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(await self.func(*args, **kwargs))

    async def call(self, *args: Any, **kwargs: Any) -> tuple:  # type: ignore[override]
        """Await the call; returns ``(output, {})``."""
        return await self.func(*args, **kwargs), {}


class MemorizedFunc(Logger):
    """A function whose results are cached in a store, keyed by its arguments.

    Created by :meth:`Memory.cache`; calling it returns the cached value when there is one and
    otherwise computes, stores and returns it.

    Parameters
    ----------
    func : callable
        The function (plain, nested, lambda, ``functools.partial``, method, ufunc, builtin).
    location : str, os.PathLike or StoreBackendBase
        The cache location (as given to :class:`Memory`) or a configured store.
    backend : str, default="local"
    ignore : list of str, optional
        Argument names left out of the cache key.
    mmap_mode : {None, 'r+', 'r', 'w+', 'c'}
        Memory-map numpy arrays of the cached result (first call included).
    compress : bool or int
        Compression of stored results (passed to :func:`joblite.dump`).
    verbose : int, default=1
        0 silent; >0 joblib's ``[Memory] Calling ...`` lines on a miss; >10 also on a hit.
    timestamp : float, optional
    cache_validation_callback : callable, optional
        ``callback(metadata) -> bool``; a cached result for which it returns ``False`` is
        recomputed (see :func:`expires_after`).
    compute_once : bool, default=True
        Concurrent callers of one missing entry wait for a single computation.
    compute_once_timeout : float, default=600
        Seconds a caller waits for another's computation before computing itself.
    """

    _wraps_for_cache = True

    def __init__(
        self,
        func: Callable,
        location: Any,
        backend: str = "local",
        ignore: Optional[list[str]] = None,
        mmap_mode: Optional[str] = None,
        compress: Any = False,
        verbose: int = 1,
        timestamp: Optional[float] = None,
        cache_validation_callback: Optional[Callable[[dict], bool]] = None,
        *,
        compute_once: bool = True,
        compute_once_timeout: float = 600.0,
        backend_options: Optional[dict] = None,
        _limits: Optional[_LimitKeeper] = None,
    ) -> None:
        functools.update_wrapper(self, func)  # type: ignore[arg-type]
        Logger.__init__(self)
        if ignore is not None and not isinstance(ignore, (list, tuple)):
            raise TypeError(f"ignore must be a list of argument names, got {ignore!r}")
        if cache_validation_callback is not None and not callable(cache_validation_callback):
            raise ValueError(
                f"cache_validation_callback needs to be callable. Got {cache_validation_callback}."
            )
        self.func = func
        self.ignore = list(ignore or [])
        self.mmap_mode = mmap_mode
        self.compress = compress
        self._verbose = verbose
        self.timestamp = time.time() if timestamp is None else timestamp
        self.cache_validation_callback = cache_validation_callback
        self.compute_once = bool(compute_once)
        self.compute_once_timeout = float(compute_once_timeout)
        self.store_backend = _store_for(location, backend, verbose, backend_options)
        self._limits = _limits if _limits is not None else _LimitKeeper(None, None, None, None)
        self._binder = CallBinder(func, self.ignore)
        module, qualname, self._name = func_identity(func)
        self.func_id = f"{module}/{qualname}"
        inner = unwrap(func)[0]
        raw_module = getattr(inner, "__module__", None) or module
        self._call_path = f"{raw_module}.{getattr(inner, '__qualname__', self._name)}"
        self._code: Optional[str] = None
        self._code_checked = False
        self._coerce = mmap_mode is not None

    # ------------------------------------------------------------ keys
    def _get_args_id(self, *args: Any, **kwargs: Any) -> str:
        """The argument hash of a call (the entry's key)."""
        values = self._binder.normalise(args, kwargs)
        return _key_from_digest(_hash((self._binder.names, values), coerce_mmap=self._coerce))

    def _check_code(self) -> bool:
        """Store the function's code, or clear the entries if the stored code differs."""
        if self._code is None:
            self._code = func_code(self.func)
        store = self.store_backend
        try:
            stored = store.load_func_code(self.func_id)
            if stored is None:
                store.store_func_code(self.func_id, self._code)
            elif stored != self._code:
                if self._verbose > 0:
                    _log.warning(
                        "[Memory] Function %s (identified by %s) has changed: "
                        "clearing its cached results",
                        self._name,
                        self.func_id,
                    )
                store.clear_func(self.func_id)
                store.store_func_code(self.func_id, self._code)
        except OSError as exc:
            warnings.warn(
                CacheWarning(
                    f"[Memory] cannot record the code of {self._name} in "
                    f"{store.location!r} ({exc}); calling it without caching"
                ),
                stacklevel=4,
            )
            return False
        self._code_checked = True
        return True

    # ------------------------------------------------------------ lookup
    def _lookup(self, key: str) -> tuple[Any, Optional[str]]:
        """``(value or _MISSING, problem)``; problem says why an entry present was unusable."""
        store = self.store_backend
        fid = self.func_id
        if self.cache_validation_callback is not None:
            try:
                meta = store.load_metadata(fid, key)
            except KeyError:
                return _MISSING, store.describe_missing(fid, key)
            except CorruptFileError as exc:
                return _MISSING, f"unreadable metadata: {exc}"
            if not self.cache_validation_callback(meta):
                store.clear_entry(fid, key)
                return _MISSING, None
        try:
            start = time.perf_counter()
            value = store.load_output(fid, key, self.mmap_mode)
        except KeyError:
            return _MISSING, store.describe_missing(fid, key)
        except Exception as exc:
            return _MISSING, f"cannot load the cached result ({type(exc).__name__}: {exc})"
        store.record_access(fid, key)
        if self._verbose > 10:
            t = time.perf_counter() - start
            emit(f"[Memory]{short_format_time(t)}: Loading {self._name} from {fid}/{key}")
        return value, None

    def _quiet_load(self, key: str, record: bool = True) -> Any:
        """The cached value if present and valid, else ``_MISSING``; never warns."""
        if self.cache_validation_callback is not None:
            try:
                meta = self.store_backend.load_metadata(self.func_id, key)
                if not self.cache_validation_callback(meta):
                    return _MISSING
            except Exception:
                return _MISSING
        try:
            value = self.store_backend.load_output(self.func_id, key, self.mmap_mode)
        except Exception:
            return _MISSING
        if record:
            self.store_backend.record_access(self.func_id, key)
        return value

    def _warn_problem(self, problem: Optional[str]) -> None:
        if problem:
            warnings.warn(
                CacheWarning(f"[Memory] {problem}; recomputing {self._name}"), stacklevel=4
            )

    def _try_acquire(self, key: str) -> tuple[Any, Any]:
        """One attempt at the compute lock: ``(token, value)``; both falsy means wait."""
        try:
            token = self.store_backend.try_lock(self.func_id, key)
        except OSError:
            return True, _MISSING  # cannot lock (read-only, full disk): compute unlocked
        value = self._quiet_load(key)
        if token is not None and value is not _MISSING:
            self.store_backend.release_lock(token)
            return None, value
        return token, value

    def _wait_message(self) -> str:
        return (
            f"[Memory] waited {self.compute_once_timeout:.0f}s for another caller to compute "
            f"{self._name}; computing it here too"
        )

    def _acquire(self, key: str) -> tuple[Any, Any]:
        """Take the entry's compute lock, or wait until another caller has stored the entry."""
        if not (self.compute_once and self.store_backend.supports_locking):
            return True, _MISSING
        held = getattr(_held, "keys", None)
        if held is not None and (self.func_id, key) in held:
            return True, _MISSING  # nested call of the same entry (a cached partial of f)
        deadline = time.monotonic() + self.compute_once_timeout
        delay = 0.001
        while True:
            token, value = self._try_acquire(key)
            if token is not None or value is not _MISSING:
                return token, value
            if time.monotonic() > deadline:
                warnings.warn(CacheWarning(self._wait_message()), stacklevel=4)
                return True, _MISSING
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # ------------------------------------------------------------ compute
    def _before_call(self, args: tuple, kwargs: dict) -> float:
        if self._verbose > 0:
            emit(
                f"{'_' * 80}\n[Memory] Calling {self._call_path}...\n"
                + format_signature(self._name, args, kwargs)
            )
        return time.time()

    def _after_call(
        self, key: str, args: tuple, kwargs: dict, output: Any, start: float
    ) -> tuple[Any, dict]:
        duration = time.time() - start
        if self._verbose > 0:
            msg = f"{self._name} - {format_time(duration)}"
            emit("_" * max(0, 80 - len(msg)) + msg)
        metadata: dict = {
            "duration": duration,
            "input_args": input_reprs(self._binder.named_arguments(args, kwargs)),
            "time": time.time(),
            "func_id": self.func_id,
            "key": key,
            "joblite_version": __version__,
        }
        if not self._code_checked and not self._check_code():
            return output, metadata
        try:
            metadata = self.store_backend.store_entry(
                self.func_id, key, output, metadata, self.compress
            )
        except Exception as exc:
            warnings.warn(
                CacheWarning(
                    f"[Memory] could not store the result of {self._name} in the cache "
                    f"({type(exc).__name__}: {exc}); it is returned but not cached"
                ),
                stacklevel=4,
            )
            return output, metadata
        if self.mmap_mode is not None:
            # return a memory map on the first call too, like every later call
            reloaded = self._quiet_load(key, record=False)
            if reloaded is not _MISSING:
                output = reloaded
        try:
            self._limits.after_write(int(metadata.get("output_bytes", 0)))
        except OSError as exc:
            warnings.warn(CacheWarning(f"[Memory] cache size limits: {exc}"), stacklevel=4)
        return output, metadata

    def _shelved(self, key: str, metadata: Optional[dict] = None) -> MemorizedResult:
        return MemorizedResult(
            self.store_backend,
            (self.func_id, key),
            mmap_mode=self.mmap_mode,
            verbose=self._verbose - 1,
            timestamp=self.timestamp,
            metadata=metadata,
        )

    def _cached_call(self, args: tuple, kwargs: dict, shelving: bool) -> tuple[Any, dict]:
        key = self._get_args_id(*args, **kwargs)
        if not self._code_checked and not self._check_code():
            return self.func(*args, **kwargs), {}
        value, problem = self._lookup(key)
        if value is not _MISSING:
            return (self._shelved(key) if shelving else value), {}
        self._warn_problem(problem)
        token, value = self._acquire(key)
        if value is not _MISSING:
            return (self._shelved(key) if shelving else value), {}
        held = getattr(_held, "keys", None)
        if held is None:
            held = _held.keys = set()
        entry = (self.func_id, key)
        nested = entry in held
        held.add(entry)
        try:
            start = self._before_call(args, kwargs)
            output = self.func(*args, **kwargs)
            output, metadata = self._after_call(key, args, kwargs, output, start)
        finally:
            if not nested:
                held.discard(entry)
            self.store_backend.release_lock(token)
        return (self._shelved(key, metadata) if shelving else output), metadata

    # ------------------------------------------------------------ public
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._code_checked and self.cache_validation_callback is None:
            # the hit path, kept short: one hash, one open
            key = self._get_args_id(*args, **kwargs)
            try:
                value = self.store_backend.load_output(self.func_id, key, self.mmap_mode)
            except Exception:
                pass
            else:
                self.store_backend.record_access(self.func_id, key)
                if self._verbose <= 10:
                    return value
        return self._cached_call(args, kwargs, shelving=False)[0]

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # decorating a method in a class body: bind the instance like a function would
        if instance is None:
            return self
        return functools.partial(self, instance)

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> MemorizedResult:
        """Compute (or find) the result and return a :class:`MemorizedResult` handle to it."""
        return self._cached_call(args, kwargs, shelving=True)[0]

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        """Compute even if cached, store the result, and return ``(output, metadata)``."""
        key = self._get_args_id(*args, **kwargs)
        if not self._code_checked:
            self._check_code()
        start = self._before_call(args, kwargs)
        output = self.func(*args, **kwargs)
        return self._after_call(key, args, kwargs, output, start)

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """Whether a call with these arguments would be served from the cache."""
        key = self._get_args_id(*args, **kwargs)
        if not self._code_checked and not self._check_code():
            return False
        if not self.store_backend.contains_entry(self.func_id, key):
            return False
        if self.cache_validation_callback is not None:
            try:
                return bool(
                    self.cache_validation_callback(
                        self.store_backend.load_metadata(self.func_id, key)
                    )
                )
            except (KeyError, CorruptFileError):
                return False
        return True

    def clear(self, warn: bool = True) -> None:
        """Remove every cached result of this function."""
        if warn and self._verbose > 0:
            self.warn(f"Clearing function cache identified by {self.func_id}")
        self.store_backend.clear_func(self.func_id)
        self._code_checked = False

    def __reduce__(self) -> tuple:
        kwargs = {
            "ignore": self.ignore,
            "mmap_mode": self.mmap_mode,
            "compress": self.compress,
            "verbose": self._verbose,
            "cache_validation_callback": self.cache_validation_callback,
            "compute_once": self.compute_once,
            "compute_once_timeout": self.compute_once_timeout,
        }
        return (_rebuild, (type(self), self.func, self.store_backend, kwargs))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(func={self.func!r}, location={self.store_backend.location!r})"
        )


def _rebuild(cls: type, func: Callable, store: Any, kwargs: dict) -> Any:
    return cls(func, store, **kwargs)


class AsyncMemorizedFunc(MemorizedFunc):
    """:class:`MemorizedFunc` for ``async def`` functions: calls return awaitables."""

    async def _acached_call(self, args: tuple, kwargs: dict, shelving: bool) -> tuple[Any, dict]:
        key = self._get_args_id(*args, **kwargs)
        if not self._code_checked and not self._check_code():
            return await self.func(*args, **kwargs), {}
        value, problem = self._lookup(key)
        if value is not _MISSING:
            return (self._shelved(key) if shelving else value), {}
        self._warn_problem(problem)
        token, value = True, _MISSING
        if self.compute_once and self.store_backend.supports_locking:
            deadline = time.monotonic() + self.compute_once_timeout
            delay = 0.001
            while True:
                token, value = self._try_acquire(key)
                if token is not None or value is not _MISSING:
                    break
                if time.monotonic() > deadline:
                    warnings.warn(CacheWarning(self._wait_message()), stacklevel=3)
                    token = True
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        if value is not _MISSING:
            return (self._shelved(key) if shelving else value), {}
        try:
            start = self._before_call(args, kwargs)
            output = await self.func(*args, **kwargs)
            output, metadata = self._after_call(key, args, kwargs, output, start)
        finally:
            self.store_backend.release_lock(token)
        return (self._shelved(key, metadata) if shelving else output), metadata

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return (await self._acached_call(args, kwargs, shelving=False))[0]

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> MemorizedResult:  # type: ignore[override]
        """Await the result (cached or computed); return a :class:`MemorizedResult`."""
        return (await self._acached_call(args, kwargs, shelving=True))[0]

    async def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:  # type: ignore[override]
        """Await a forced computation; store it; return ``(output, metadata)``."""
        key = self._get_args_id(*args, **kwargs)
        if not self._code_checked:
            self._check_code()
        start = self._before_call(args, kwargs)
        output = await self.func(*args, **kwargs)
        return self._after_call(key, args, kwargs, output, start)


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
        location: Any = None,
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
        self.store_backend = _store_for(location, backend, verbose, self.backend_options)
        self._limits = _LimitKeeper(
            self.store_backend, self.bytes_limit, self.items_limit, self.age_limit
        )

    def cache(
        self,
        func: Optional[Callable] = None,
        ignore: Optional[list[str]] = None,
        verbose: Optional[int] = None,
        mmap_mode: Any = False,
        cache_validation_callback: Optional[Callable[[dict], bool]] = None,
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

        Returns
        -------
        MemorizedFunc
            (an ``AsyncMemorizedFunc`` for ``async def`` functions; a pass-through when the
            Memory has no location).
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
            )
        if isinstance(func, (MemorizedFunc, NotMemorizedFunc)):
            func = func.func
        is_async = inspect.iscoroutinefunction(func)
        if self.store_backend is None:
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
