"""Cached functions: :class:`MemorizedFunc` (and its async twin) drive the call protocol of
:mod:`.protocol`; :class:`NotMemorizedFunc` is what a Memory without a location returns.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import types
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar

from ..logger import Logger
from .arguments import CallBinder
from .explain import MissExplanation
from .identity import FuncIdentity, func_code, identify
from .limits import LimitKeeper
from .protocol import COMPUTE, MISSING, FunctionCache, Step
from .result import MemorizedResult, NotMemorizedResult
from .stores import store_for

if TYPE_CHECKING:  # a cached function keeps its signature for type checkers
    from typing_extensions import ParamSpec

    _P = ParamSpec("_P")
else:  # only type checkers need a ParamSpec (Python 3.9 has none)
    _P = TypeVar("_P")
_R = TypeVar("_R")

__all__ = [
    "AsyncMemorizedFunc",
    "AsyncNotMemorizedFunc",
    "MemorizedFunc",
    "NotMemorizedFunc",
]


def _run_sync(
    steps: Generator[Step, Any, tuple[Any, dict]], func: Callable, args: tuple, kwargs: dict
) -> tuple[Any, dict]:
    """Run the protocol: call the function when asked, sleep when asked to wait."""
    try:
        step = next(steps)
        while True:
            if step is COMPUTE:
                try:
                    output = func(*args, **kwargs)
                except BaseException as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(output)
            else:
                try:
                    time.sleep(step)  # type: ignore[arg-type]
                except BaseException:
                    steps.close()
                    raise
                step = next(steps)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _run_async(
    steps: Generator[Step, Any, tuple[Any, dict]],
    func: Callable[..., Awaitable],
    args: tuple,
    kwargs: dict,
) -> tuple[Any, dict]:
    """:func:`_run_sync` for coroutine functions: await the call, ``asyncio.sleep`` to wait."""
    try:
        step = next(steps)
        while True:
            if step is COMPUTE:
                try:
                    output = await func(*args, **kwargs)
                except BaseException as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(output)
            else:
                try:
                    await asyncio.sleep(step)  # type: ignore[call-overload]
                except BaseException:
                    steps.close()
                    raise
                step = next(steps)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class NotMemorizedFunc(Generic[_P, _R]):
    """What :meth:`Memory.cache` returns when ``location=None``: calls go straight through."""

    _wraps_for_cache = True

    def __init__(self, func: Callable[_P, _R]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return self.func(*args, **kwargs)

    def call_and_shelve(self, *args: _P.args, **kwargs: _P.kwargs) -> NotMemorizedResult:
        """Call and wrap the value in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(self.func(*args, **kwargs))

    def call(self, *args: _P.args, **kwargs: _P.kwargs) -> tuple[_R, dict[str, Any]]:
        """Call; returns ``(output, {})``."""
        return self.func(*args, **kwargs), {}

    def check_call_in_cache(self, *args: _P.args, **kwargs: _P.kwargs) -> bool:
        """Always ``False``: nothing is cached."""
        return False

    def explain_miss(self, *args: _P.args, **kwargs: _P.kwargs) -> MissExplanation:
        """Always a miss: the Memory has no location (see :meth:`MemorizedFunc.explain_miss`)."""
        name = getattr(self.func, "__name__", repr(self.func))
        return MissExplanation(hit=False, reason="disabled", function=name, key="")

    def clear(self, warn: bool = True) -> None:
        """Nothing to clear."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(func={self.func!r})"


class AsyncNotMemorizedFunc(NotMemorizedFunc[_P, Any]):
    """:class:`NotMemorizedFunc` for ``async def`` functions."""

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> NotMemorizedResult:  # type: ignore[override]
        """Await the call and wrap the value in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(await self.func(*args, **kwargs))

    async def call(self, *args: Any, **kwargs: Any) -> tuple:  # type: ignore[override]
        """Await the call; returns ``(output, {})``."""
        return await self.func(*args, **kwargs), {}


def _delegated(name: str, doc: str) -> Any:
    """A read-write attribute of the wrapper that lives in its :class:`FunctionCache`."""
    return property(
        lambda self: getattr(self._cache, name),
        lambda self, value: setattr(self._cache, name, value),
        doc=doc,
    )


class MemorizedFunc(Logger, Generic[_P, _R]):
    """A function whose results are cached in a store, keyed by its arguments.

    Created by :meth:`Memory.cache`; calling it returns the cached value when there is one and
    otherwise computes, stores and returns it. Its identity (where its results live) and code
    fingerprint are computed where it is decorated and travel with it when it is pickled, so
    every process that runs it (threads, loky, multiprocessing, dask workers) shares the same
    entries.

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
        0 silent; >0 joblib's ``[Memory] Calling ...`` lines on a miss; >10 also a line on
        each hit and, on each miss, why it missed (see :meth:`explain_miss`).
    timestamp : float, optional
    cache_validation_callback : callable, optional
        ``callback(metadata) -> bool``; a cached result for which it returns ``False`` is
        recomputed (see :func:`expires_after`).
    compute_once : bool, default=True
        Concurrent callers of one missing entry wait for a single computation.
    compute_once_timeout : float, default=600
        Seconds a caller waits for another's computation before computing itself.
    backend_options : dict, optional
        Options of the store when ``location`` is a path.
    hash_with : dict, optional
        ``{argument name: function}``: that argument enters the key as ``function(value)``
        (see :meth:`Memory.cache`).
    """

    _wraps_for_cache = True

    def __init__(
        self,
        func: Callable[_P, _R],
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
        hash_with: Optional[dict[str, Callable[[Any], Any]]] = None,
        _limits: Optional[LimitKeeper] = None,
        _identity: Optional[FuncIdentity] = None,
        _code: Optional[str] = None,
        _closure_digest: Optional[str] = None,
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
        self._cache = FunctionCache(
            func,
            store_for(location, backend, verbose, backend_options),
            _identity if _identity is not None else identify(func),
            CallBinder(func, self.ignore, _closure_digest, hash_with),
            _limits if _limits is not None else LimitKeeper(None, None, None, None),
            mmap_mode=mmap_mode,
            compress=compress,
            verbose=verbose,
            timestamp=time.time() if timestamp is None else timestamp,
            cache_validation_callback=cache_validation_callback,
            compute_once=bool(compute_once),
            compute_once_timeout=float(compute_once_timeout),
            code=_code,
            remote=_identity is not None,  # rebuilt from a pickle: maybe a worker
        )

    store_backend = _delegated("store_backend", "The store holding this function's entries.")
    mmap_mode = _delegated("mmap_mode", "Memory-map mode of loaded results (or ``None``).")
    compress = _delegated("compress", "Compression of stored results.")
    timestamp = _delegated("timestamp", "When the Memory was created (unix time).")
    cache_validation_callback = _delegated(
        "cache_validation_callback", "``callback(metadata) -> bool`` deciding if a hit is valid."
    )
    compute_once = _delegated("compute_once", "Concurrent callers wait for one computation.")
    compute_once_timeout = _delegated(
        "compute_once_timeout", "Seconds to wait for another caller's computation."
    )
    _verbose = _delegated("verbose", "The verbosity level.")

    @property
    def func_id(self) -> str:
        """``"<module>/<qualname>"``: where this function's entries live in the store."""
        return self._cache.func_id

    @property
    def hash_with(self) -> dict[str, Callable[[Any], Any]]:
        """``{argument name: function}`` of the arguments keyed by a function of their value."""
        return dict(self._cache.binder.hash_with)

    # ------------------------------------------------------------ public
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        # the hit path, kept short (one hash, one open); everything else is the protocol's
        cache = self._cache
        keyed = cache.key(args, kwargs)
        if cache.code_checked and cache.cache_validation_callback is None and cache.verbose <= 10:
            value = cache.find(keyed[0])[0]
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
        steps = cache.steps(args, kwargs, shelving=False, keyed=keyed)
        return _run_sync(steps, self.func, args, kwargs)[0]  # type: ignore[no-any-return]

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # decorating a method in a class body: bind the instance like a function would
        if instance is None:
            return self
        return functools.partial(self, instance)

    def call_and_shelve(self, *args: _P.args, **kwargs: _P.kwargs) -> MemorizedResult:
        """Compute (or find) the result and return a :class:`MemorizedResult` handle to it."""
        steps = self._cache.steps(args, kwargs, shelving=True)
        return _run_sync(steps, self.func, args, kwargs)[0]  # type: ignore[no-any-return]

    def call(self, *args: _P.args, **kwargs: _P.kwargs) -> tuple[_R, dict[str, Any]]:
        """Compute even if cached, store the result, and return ``(output, metadata)``."""
        steps = self._cache.steps(args, kwargs, shelving=False, force=True)
        return _run_sync(steps, self.func, args, kwargs)

    def check_call_in_cache(self, *args: _P.args, **kwargs: _P.kwargs) -> bool:
        """Whether a call with these arguments would be served from the cache."""
        return self._cache.will_hit(self._get_args_id(*args, **kwargs))

    def explain_miss(self, *args: _P.args, **kwargs: _P.kwargs) -> MissExplanation:
        """Why a call with these arguments would not be served from the cache, without
        calling the function or loading a result.

        The answer compares the call with what the store holds: the function's code changed
        since its entries were computed (and at which lines), or which arguments differ from
        the nearest of its most recent entries, by parameter name (for a DataFrame, which
        columns or the index; for a dict, which keys). A call that would hit says so.
        ``verbose > 10`` prints the same on every real miss.

        Returns
        -------
        MissExplanation
            ``.hit``, ``.reason``, ``.arguments``, ``.changed_lines``...; ``str()`` of it
            reads as a sentence.

        Raises
        ------
        UnhashableError
            An argument cannot be hashed (the message names it).

        Examples
        --------
        >>> import tempfile
        >>> from joblite import Memory
        >>> mem = Memory(tempfile.mkdtemp(), verbose=0)
        >>> scale = mem.cache(lambda x, factor: x * factor)
        >>> scale(2, factor=10)
        20
        >>> why = scale.explain_miss(2, factor=3)
        >>> why.reason, why.arguments
        ('arguments differ', {'factor': ()})
        """
        cache = self._cache
        key, keyed = cache.key(args, kwargs)
        return cache.explain(key, keyed, cache.binder.named_arguments(args, kwargs))

    def _get_args_id(self, *args: Any, **kwargs: Any) -> str:
        """The argument hash of a call (the entry's key)."""
        return self._cache.key(args, kwargs)[0]

    def clear(self, warn: bool = True) -> None:
        """Remove every cached result of this function."""
        if warn and self._verbose > 0:
            self.warn(f"Clearing function cache identified by {self.func_id}")
        self.store_backend.clear_func(self.func_id)
        self._cache.code_checked = False

    def __reduce__(self) -> tuple:
        cache = self._cache
        if cache.code is None:
            cache.code = func_code(self.func)
        kwargs = {
            "ignore": self.ignore,
            "mmap_mode": self.mmap_mode,
            "compress": self.compress,
            "verbose": self._verbose,
            "cache_validation_callback": self.cache_validation_callback,
            "compute_once": self.compute_once,
            "compute_once_timeout": self.compute_once_timeout,
            "hash_with": {k: _func_for_pickle(v) for k, v in cache.binder.hash_with.items()}
            or None,
            "_identity": cache.identity,
            "_code": cache.code,
            "_closure_digest": cache.binder.closure_digest,
        }
        func = _func_for_pickle(self.func)
        return (_rebuild, (type(self), func, self.store_backend, kwargs))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(func={self.func!r}, location={self.store_backend.location!r})"
        )


def _rebuild(cls: type, func: Callable, store: Any, kwargs: dict) -> Any:
    return cls(func, store, **kwargs)


class _ShadowedFunc:
    """A function plain pickle cannot send by reference: a lambda, a nested function, or a
    module-level function whose name now holds its cached wrapper (``@memory.cache``).

    It goes by value through cloudpickle, so a cached function reaches stdlib multiprocessing
    workers too; a process that has the module (fork, spawn) resolves the name instead.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func

    def __reduce__(self) -> tuple:
        import cloudpickle

        func = self.func
        return (_resolve_shadowed, (func.__module__, func.__qualname__, cloudpickle.dumps(func)))


def _resolve_shadowed(module: str, qualname: str, payload: bytes) -> Callable:
    obj: Any = sys.modules.get(module)
    if obj is None and module == "__main__":
        obj = sys.modules.get("__mp_main__")
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if getattr(type(obj), "_wraps_for_cache", False):
        obj = obj.func
    if callable(obj) and getattr(obj, "__qualname__", None) == qualname:
        return obj  # type: ignore[no-any-return]
    import cloudpickle

    return cloudpickle.loads(payload)  # type: ignore[no-any-return]


def _func_for_pickle(func: Callable) -> Any:
    """The function as it can be pickled: by reference when its name finds it, else by value."""
    if not isinstance(func, types.FunctionType):
        return func
    if "<" in func.__qualname__:
        return _ShadowedFunc(func)  # a lambda or nested function: by value only
    obj: Any = sys.modules.get(func.__module__)
    for part in func.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return func if obj is func else _ShadowedFunc(func)


class AsyncMemorizedFunc(MemorizedFunc[_P, Any]):
    """:class:`MemorizedFunc` for ``async def`` functions: calls return awaitables."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        steps = self._cache.steps(args, kwargs, shelving=False)
        return (await _run_async(steps, self.func, args, kwargs))[0]

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> MemorizedResult:  # type: ignore[override]
        """Await the result (cached or computed); return a :class:`MemorizedResult`."""
        steps = self._cache.steps(args, kwargs, shelving=True)
        return (await _run_async(steps, self.func, args, kwargs))[0]  # type: ignore[no-any-return]

    async def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:  # type: ignore[override]
        """Await a forced computation; store it; return ``(output, metadata)``."""
        steps = self._cache.steps(args, kwargs, shelving=False, force=True)
        return await _run_async(steps, self.func, args, kwargs)
