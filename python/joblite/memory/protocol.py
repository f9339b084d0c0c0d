"""The one call protocol of a cached function: key, code check, lookup, compute-once wait,
compute, store. Written once as a generator; :mod:`.functions` runs it with a thin sync driver
and a thin async driver, so both always behave the same.

The generator yields :data:`COMPUTE` when the function must be called (the driver sends the
output back, or throws the function's exception in) and a float when it must wait that many
seconds for another caller's computation.
"""

from __future__ import annotations

import contextvars
import logging
import time
import warnings
from collections.abc import Generator
from typing import Any, Callable, Optional, Union

from .. import __version__
from ..exceptions import CacheWarning, CorruptFileError
from ..logger import emit, format_time, short_format_time
from .arguments import CallBinder, format_signature, input_reprs
from .chain import digests_of, has_maps, plain_arrays, register_loaded
from .identity import (
    FuncIdentity,
    JobLibCollisionWarning,
    code_digest,
    func_code,
    note_in_process,
)
from .limits import LimitKeeper
from .result import MemorizedResult

__all__ = ["COMPUTE", "MISSING", "CallSteps"]

_log = logging.getLogger("joblite")
MISSING: Any = object()
COMPUTE: Any = object()
#: the entries whose computation the current thread or task is inside: never wait on oneself
_held: contextvars.ContextVar[frozenset] = contextvars.ContextVar(
    "joblite_memory_held", default=frozenset()
)

Step = Union[float, object]
#: the lock "entry" serialising code checks of one function (never a real key: not hex)
_CODE_CHECK_KEY = "000code-check"


class CallSteps:
    """State and steps shared by the sync and async cached functions."""

    func: Callable
    store_backend: Any
    mmap_mode: Optional[str]
    compress: Any
    cache_validation_callback: Optional[Callable[[dict], bool]]
    compute_once: bool
    compute_once_timeout: float
    timestamp: float
    _verbose: int
    _binder: CallBinder
    _identity: FuncIdentity
    _limits: LimitKeeper
    _code: Optional[str]
    _code_obj: Any
    _code_digest: Optional[str]
    _replaced: bool
    _code_checked: bool
    _remote: bool
    _coerce: bool

    @property
    def func_id(self) -> str:
        """``"<module>/<qualname>"``: where this function's entries live in the store."""
        return self._identity.func_id

    # ------------------------------------------------------------ key and code
    def _get_args_id(self, *args: Any, **kwargs: Any) -> str:
        """The argument hash of a call (the entry's key)."""
        digest = self._code_digest
        if digest is None or self._current_code_obj() is not self._code_obj:
            digest = self._refresh_code()
        return self._binder.key(args, kwargs, digest, self._coerce)

    def _current_code_obj(self) -> Any:
        return getattr(self._binder.target, "__code__", None)

    def _refresh_code(self) -> str:
        """The code text and its digest, again if ``__code__`` was replaced in memory."""
        code_obj = self._current_code_obj()
        replaced = self._code_digest is not None and code_obj is not self._code_obj
        if self._code is None or replaced:
            self._code = func_code(self.func)
        self._code_obj = code_obj
        self._code_digest = code_digest(self._code)
        if replaced:
            self._code_checked = False
            self._replaced = True
        return self._code_digest

    def _check_code(self) -> bool:
        """Store the function's code, or clear the entries if the stored code differs.

        Returns ``False`` when the code cannot be recorded (then the call is not cached).
        """
        if self._code is None:
            self._refresh_code()
        assert self._code is not None
        replaced, self._replaced = self._replaced, False
        if not replaced:
            note_in_process(self._identity)
        store = self.store_backend
        # one checker at a time per function, so a code change clears its entries once, even
        # when several workers see it first at the same moment
        token = self._lock_code_check() if store.supports_locking else None
        try:
            stored = store.load_func_code(self.func_id)
            if stored is None:
                store.store_func_code(self.func_id, self._code)
            elif code_digest(stored) == code_digest(self._code):
                if stored != self._code:  # a cosmetic edit: keep the entries, show new lines
                    store.store_func_code(self.func_id, self._code)
            else:
                if replaced:
                    warnings.warn(
                        JobLibCollisionWarning(
                            f"The code of function {self._identity.name!r} "
                            f"({self._identity.where}) was replaced in memory: clearing its "
                            "cached results"
                        ),
                        stacklevel=6,
                    )
                elif self._verbose > 0:
                    _log.warning(
                        "[Memory] Function %s (identified by %s) has changed: "
                        "clearing its cached results",
                        self._identity.name,
                        self.func_id,
                    )
                store.clear_func(self.func_id)
                store.store_func_code(self.func_id, self._code)
        except OSError as exc:
            warnings.warn(
                CacheWarning(
                    f"[Memory] cannot record the code of {self._identity.name} in "
                    f"{store.location!r} ({exc}); calling it without caching"
                ),
                stacklevel=6,
            )
            return False
        finally:
            if token is not None:
                store.release_lock(token)
        self._code_checked = True
        return True

    def _lock_code_check(self) -> Any:
        """The function's code-check lock, or ``None`` after 10 s (then check unlocked)."""
        deadline = time.monotonic() + 10.0
        delay = 0.001
        while True:
            try:
                token = self.store_backend.try_lock(self.func_id, _CODE_CHECK_KEY)
            except OSError:
                return None
            if token is not None or time.monotonic() > deadline:
                return token
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _code_ok(self) -> bool:
        if self._code_checked:
            return True
        return self._check_code()

    # ------------------------------------------------------------ lookup
    def _load(self, key: str) -> Any:
        """The stored value (``KeyError`` if absent); read-only maps are remembered for chaining."""
        value = self.store_backend.load_output(self.func_id, key, self.mmap_mode)
        if self.mmap_mode == "r" and has_maps(value):
            self._register_maps(key, value)
        return value

    def _register_maps(self, key: str, value: Any) -> None:
        try:
            digests = self.store_backend.load_metadata(self.func_id, key).get("array_digests")
        except (KeyError, CorruptFileError, OSError):
            return
        if isinstance(digests, dict):
            register_loaded(value, digests)

    def _fast_hit(self, key: str) -> Any:
        """The cached value when it can be served at once, else :data:`MISSING` (never warns)."""
        if self._limits.age_limit is not None and self._limits.expired(self.func_id, key):
            return MISSING
        try:
            value = self._load(key)
        except Exception:
            return MISSING
        self.store_backend.record_access(self.func_id, key)
        if self._remote:
            self._flush_records()
        return value

    def _record_hit(self, key: str) -> None:
        self.store_backend.record_access(self.func_id, key)
        if self._remote:
            self._flush_records()

    def _flush_records(self) -> None:
        """Write the records now: a worker process may exit without running atexit hooks."""
        try:
            self.store_backend.flush(wait=True)
        except TypeError:  # a store whose flush() takes no argument
            self.store_backend.flush()

    def _lookup(self, key: str) -> tuple[Any, Optional[str]]:
        """``(value or MISSING, problem)``; problem says why an entry present was unusable."""
        store = self.store_backend
        fid = self.func_id
        if self._limits.age_limit is not None and self._limits.expired(fid, key):
            store.clear_entry(fid, key)
            return MISSING, None
        if self.cache_validation_callback is not None:
            try:
                meta = store.load_metadata(fid, key)
            except KeyError:
                return MISSING, store.describe_missing(fid, key)
            except CorruptFileError as exc:
                return MISSING, f"unreadable metadata: {exc}"
            if not self.cache_validation_callback(meta):
                store.clear_entry(fid, key)
                return MISSING, None
        try:
            start = time.perf_counter()
            value = self._load(key)
        except KeyError:
            return MISSING, store.describe_missing(fid, key)
        except Exception as exc:
            return MISSING, f"cannot load the cached result ({type(exc).__name__}: {exc})"
        self._record_hit(key)
        if self._verbose > 10:
            t = time.perf_counter() - start
            emit(f"[Memory]{short_format_time(t)}: Loading {self._identity.name} from {fid}/{key}")
        return value, None

    def _quiet_load(self, key: str, record: bool = True) -> Any:
        """The cached value if present and valid, else :data:`MISSING`; never warns."""
        if self.cache_validation_callback is not None:
            try:
                meta = self.store_backend.load_metadata(self.func_id, key)
                if not self.cache_validation_callback(meta):
                    return MISSING
            except Exception:
                return MISSING
        try:
            value = self._load(key)
        except Exception:
            return MISSING
        if record:
            self._record_hit(key)
        return value

    def _warn_problem(self, problem: Optional[str]) -> None:
        if problem:
            warnings.warn(
                CacheWarning(f"[Memory] {problem}; recomputing {self._identity.name}"),
                stacklevel=5,
            )

    # ------------------------------------------------------------ compute once
    def _try_acquire(self, key: str) -> tuple[Any, Any]:
        """One attempt at the compute lock: ``(token, value)``; both falsy means wait."""
        try:
            token = self.store_backend.try_lock(self.func_id, key)
        except OSError:
            return True, MISSING  # cannot lock (read-only, full disk): compute unlocked
        value = self._quiet_load(key)
        if token is not None and value is not MISSING:
            self.store_backend.release_lock(token)
            return None, value
        return token, value

    # ------------------------------------------------------------ compute and store
    def _before_call(self, args: tuple, kwargs: dict) -> float:
        if self._verbose > 0:
            emit(
                f"{'_' * 80}\n[Memory] Calling {self._identity.call_path}...\n"
                + format_signature(self._identity.name, args, kwargs)
            )
        return time.time()

    def _after_call(
        self, key: str, args: tuple, kwargs: dict, output: Any, start: float
    ) -> tuple[Any, dict]:
        duration = time.time() - start
        name = self._identity.name
        if self._verbose > 0:
            msg = f"{name} - {format_time(duration)}"
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
        stored = plain_arrays(output)
        if self.mmap_mode is not None:
            try:
                digests = digests_of(stored)
            except TypeError:
                digests = {}
            if digests:
                metadata["array_digests"] = digests
        store = self.store_backend
        try:
            metadata = store.store_entry(self.func_id, key, stored, metadata, self.compress)
        except Exception as exc:
            warnings.warn(
                CacheWarning(
                    f"[Memory] could not store the result of {name} in the cache "
                    f"({type(exc).__name__}: {exc}); it is returned but not cached"
                ),
                stacklevel=5,
            )
            return output, metadata
        record_miss = getattr(store, "record_miss", None)
        if record_miss is not None:
            record_miss(self.func_id, key, duration)
            if self._remote:
                self._flush_records()
        if self.mmap_mode is not None:
            # return a memory map on the first call too, like every later call
            reloaded = self._quiet_load(key, record=False)
            if reloaded is not MISSING:
                output = reloaded
        try:
            self._limits.after_write(int(metadata.get("output_bytes", 0)))
        except OSError as exc:
            warnings.warn(CacheWarning(f"[Memory] cache size limits: {exc}"), stacklevel=5)
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

    # ------------------------------------------------------------ the protocol
    def _protocol(
        self,
        args: tuple,
        kwargs: dict,
        shelving: bool,
        force: bool = False,
        key: Optional[str] = None,
    ) -> Generator[Step, Any, tuple[Any, dict]]:
        """The whole cached call; see the module docstring for what it yields."""
        if key is None:
            key = self._get_args_id(*args, **kwargs)
        if not self._code_ok():
            return (yield COMPUTE), {}
        entry = (self.func_id, key)
        held = _held.get()
        nested = entry in held
        token: Any = True
        if not force:
            value, problem = self._lookup(key)
            if value is not MISSING:
                return (self._shelved(key) if shelving else value), {}
            self._warn_problem(problem)
            store = self.store_backend
            if self.compute_once and store.supports_locking and not nested:
                deadline = time.monotonic() + self.compute_once_timeout
                delay = 0.001
                while True:
                    token, value = self._try_acquire(key)
                    if token is not None or value is not MISSING:
                        break
                    if time.monotonic() > deadline:
                        warnings.warn(
                            CacheWarning(
                                f"[Memory] waited {self.compute_once_timeout:.0f}s for another "
                                f"caller to compute {self._identity.name}; computing it here too"
                            ),
                            stacklevel=4,
                        )
                        token = True
                        break
                    yield delay
                    delay = min(delay * 2, 0.05)
                if value is not MISSING:
                    return (self._shelved(key) if shelving else value), {}
        reset = _held.set(held | {entry})
        try:
            start = self._before_call(args, kwargs)
            output = yield COMPUTE
            output, metadata = self._after_call(key, args, kwargs, output, start)
        finally:
            try:
                _held.reset(reset)
            except ValueError:  # closed from another context (garbage collection)
                pass
            self.store_backend.release_lock(token)
        return (self._shelved(key, metadata) if shelving else output), metadata
