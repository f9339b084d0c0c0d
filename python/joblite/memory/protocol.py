"""One cached function's entries and the one call protocol over them: key, code check,
lookup, compute-once wait, compute, store. :class:`FunctionCache` holds the state; the
cached-function wrappers of :mod:`.functions` hold one and run its :meth:`~FunctionCache.steps`
generator with a thin sync driver and a thin async driver, so both always behave the same.

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
from typing import Any, Callable, NamedTuple, Optional, Union

from .. import __version__
from ..exceptions import CacheWarning, CorruptFileError
from ..logger import emit, format_time, short_format_time
from ..store.base import ClearedWhileStoring
from .arguments import CallBinder, format_signature, input_reprs
from .chain import digests_of, has_maps, plain_arrays, register_loaded
from .explain import MissExplanation, argument_parts, explain_call
from .identity import (
    FuncIdentity,
    JobLibCollisionWarning,
    code_digest,
    func_code,
    note_in_process,
)
from .limits import LimitKeeper
from .result import MemorizedResult

__all__ = ["COMPUTE", "MISSING", "Claim", "FunctionCache"]

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


class Claim(NamedTuple):
    """One attempt at the compute lock of a missing entry.

    ``state`` is ``"locked"`` (``token`` is ours: compute), ``"found"`` (another caller
    stored the entry meanwhile: ``value``) or ``"wait"`` (another caller is computing it).
    """

    state: str
    token: Any = None
    value: Any = MISSING


_WAIT = Claim("wait")


class FunctionCache:
    """Everything one cached function needs to serve a call: where its entries live, how a
    call is keyed, its code state, its options, and the steps of a call.

    Parameters
    ----------
    func : callable
        The cached function.
    store : StoreBackendBase
        The configured store.
    identity : FuncIdentity
        Where its entries live.
    binder : CallBinder
        How a call's arguments become its key.
    limits : LimitKeeper
        The Memory's size, count and age limits.
    code : str, optional
        The code text, when it came with a pickled cached function.
    remote : bool
        Rebuilt from a pickle (maybe in a worker): access records are written at once.
    """

    def __init__(
        self,
        func: Callable,
        store: Any,
        identity: FuncIdentity,
        binder: CallBinder,
        limits: LimitKeeper,
        *,
        mmap_mode: Optional[str],
        compress: Any,
        verbose: int,
        timestamp: float,
        cache_validation_callback: Optional[Callable[[dict], bool]],
        compute_once: bool,
        compute_once_timeout: float,
        code: Optional[str] = None,
        remote: bool = False,
    ) -> None:
        self.func = func
        self.store_backend = store
        self.identity = identity
        self.binder = binder
        self.limits = limits
        self.mmap_mode = mmap_mode
        self.compress = compress
        self.verbose = verbose
        self.timestamp = timestamp
        self.cache_validation_callback = cache_validation_callback
        self.compute_once = compute_once
        self.compute_once_timeout = compute_once_timeout
        self.code = code
        self.code_obj = self._current_code_obj()
        self.code_digest: Optional[str] = None
        self.replaced = False
        self.code_checked = False
        self.remote = remote

    @property
    def func_id(self) -> str:
        """``"<module>/<qualname>"``: where this function's entries live in the store."""
        return self.identity.func_id

    # ------------------------------------------------------------ key and code
    def key(self, args: tuple, kwargs: dict) -> tuple[str, tuple]:
        """``(entry key, keyed argument values)`` of a call."""
        digest = self.code_digest
        if digest is None or self._current_code_obj() is not self.code_obj:
            digest = self.refresh_code()
        return self.binder.keyed(args, kwargs, digest, self.mmap_mode is not None)

    def _current_code_obj(self) -> Any:
        return getattr(self.binder.target, "__code__", None)

    def refresh_code(self) -> str:
        """The code text and its digest, again if ``__code__`` was replaced in memory."""
        code_obj = self._current_code_obj()
        replaced = self.code_digest is not None and code_obj is not self.code_obj
        if self.code is None or replaced:
            self.code = func_code(self.func)
        self.code_obj = code_obj
        self.code_digest = code_digest(self.code)
        if replaced:
            self.code_checked = False
            self.replaced = True
        return self.code_digest

    def check_code(self) -> bool:
        """Store the function's code, or clear the entries if the stored code differs.

        Returns ``False`` when the code cannot be recorded (then the call is not cached).
        """
        if self.code is None:
            self.refresh_code()
        assert self.code is not None
        replaced, self.replaced = self.replaced, False
        if not replaced:
            note_in_process(self.identity)
        store = self.store_backend
        # one checker at a time per function, so a code change clears its entries once, even
        # when several workers see it first at the same moment
        token = self._lock_code_check() if store.supports_locking else None
        try:
            stored = store.load_func_code(self.func_id)
            if stored is None:
                store.store_func_code(self.func_id, self.code)
            elif code_digest(stored) == code_digest(self.code):
                if stored != self.code:  # a cosmetic edit: keep the entries, show new lines
                    store.store_func_code(self.func_id, self.code)
            else:
                if replaced:
                    warnings.warn(
                        JobLibCollisionWarning(
                            f"The code of function {self.identity.name!r} "
                            f"({self.identity.where}) was replaced in memory: clearing its "
                            "cached results"
                        ),
                        stacklevel=6,
                    )
                elif self.verbose > 0:
                    _log.warning(
                        "[Memory] Function %s (identified by %s) has changed: "
                        "clearing its cached results",
                        self.identity.name,
                        self.func_id,
                    )
                store.clear_func(self.func_id)
                store.store_func_code(self.func_id, self.code)
        except OSError as exc:
            warnings.warn(
                CacheWarning(
                    f"[Memory] cannot record the code of {self.identity.name} in "
                    f"{store.location!r} ({exc}); calling it without caching"
                ),
                stacklevel=6,
            )
            return False
        finally:
            if token is not None:
                store.release_lock(token)
        self.code_checked = True
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

    def code_ok(self) -> bool:
        """Whether the stored code is this function's (checked once per process)."""
        if self.code_checked:
            return True
        return self.check_code()

    # ------------------------------------------------------------ the one load path
    def find(self, key: str, quiet: bool = True, record: bool = True) -> tuple[Any, Optional[str]]:
        """``(stored value or MISSING, problem)`` of an entry, after the age limit and the
        validation callback have had their say.

        ``quiet``: never warns, prints or removes anything (a fast hit, a re-check under the
        compute lock). Otherwise an expired or rejected entry is removed, a hit is printed at
        ``verbose > 10``, and ``problem`` says why an entry that is there could not be used.
        """
        store = self.store_backend
        fid = self.func_id
        if self.limits.age_limit is not None and self.limits.expired(fid, key):
            if not quiet:
                store.clear_entry(fid, key)
            return MISSING, None
        if self.cache_validation_callback is not None:
            try:
                meta = store.load_metadata(fid, key)
            except KeyError:
                return MISSING, None if quiet else store.describe_missing(fid, key)
            except CorruptFileError as exc:
                return MISSING, None if quiet else f"unreadable metadata: {exc}"
            except Exception:
                if not quiet:
                    raise
                return MISSING, None
            if quiet:
                try:
                    valid = self.cache_validation_callback(meta)
                except Exception:
                    return MISSING, None
            else:
                valid = self.cache_validation_callback(meta)
            if not valid:
                if not quiet:
                    store.clear_entry(fid, key)
                return MISSING, None
        start = time.perf_counter()
        try:
            value = store.load_output(fid, key, self.mmap_mode)
        except KeyError:
            return MISSING, None if quiet else store.describe_missing(fid, key)
        except Exception as exc:
            if quiet:
                return MISSING, None
            return MISSING, f"cannot load the cached result ({type(exc).__name__}: {exc})"
        if self.mmap_mode == "r" and has_maps(value):
            self._register_maps(key, value)  # read-only maps are remembered for chaining
        if record:
            store.record_access(fid, key)
            if self.remote:
                self._flush_records()
        if not quiet and self.verbose > 10:
            t = time.perf_counter() - start
            emit(f"[Memory]{short_format_time(t)}: Loading {self.identity.name} from {fid}/{key}")
        return value, None

    def _register_maps(self, key: str, value: Any) -> None:
        try:
            digests = self.store_backend.load_metadata(self.func_id, key).get("array_digests")
        except (KeyError, CorruptFileError, OSError):
            return
        if isinstance(digests, dict):
            register_loaded(value, digests)

    def _flush_records(self) -> None:
        """Write the records now: a worker process may exit without running atexit hooks."""
        try:
            self.store_backend.flush(wait=True)
        except TypeError:  # a store whose flush() takes no argument
            self.store_backend.flush()

    def will_hit(self, key: str) -> bool:
        """Whether a call with this key would be served from the cache (loads nothing)."""
        if not self.code_ok():
            return False
        store = self.store_backend
        if not store.contains_entry(self.func_id, key):
            return False
        if self.limits.age_limit is not None and self.limits.expired(
            self.func_id, key, touch=False
        ):
            return False  # the call would recompute it
        if self.cache_validation_callback is not None:
            try:
                return bool(self.cache_validation_callback(store.load_metadata(self.func_id, key)))
            except (KeyError, CorruptFileError):
                return False
        return True

    # ------------------------------------------------------------ compute once
    def claim(self, key: str) -> Claim:
        """One attempt at the compute lock of a missing entry."""
        try:
            token = self.store_backend.try_lock(self.func_id, key)
        except OSError:
            return Claim("locked", True)  # cannot lock (read-only, full disk): compute unlocked
        value = self.find(key)[0]
        if value is not MISSING:
            if token is not None:
                self.store_backend.release_lock(token)
            return Claim("found", value=value)
        return _WAIT if token is None else Claim("locked", token)

    # ------------------------------------------------------------ compute and store
    def _before_call(self, args: tuple, kwargs: dict, why: str = "") -> float:
        if self.verbose > 0:
            emit(
                f"{'_' * 80}\n[Memory] Calling {self.identity.call_path}...\n"
                + format_signature(self.identity.name, args, kwargs)
                + (f"\n[Memory] {why}" if why else "")
            )
        return time.time()

    def _after_call(
        self, key: str, keyed: tuple, args: tuple, kwargs: dict, output: Any, start: float
    ) -> tuple[Any, dict]:
        duration = time.time() - start
        name = self.identity.name
        if self.verbose > 0:
            msg = f"{name} - {format_time(duration)}"
            emit("_" * max(0, 80 - len(msg)) + msg)
        named = self.binder.named_arguments(args, kwargs)
        metadata: dict = {
            "duration": duration,
            "input_args": input_reprs(named),
            "time": time.time(),
            "func_id": self.func_id,
            "key": key,
            "joblite_version": __version__,
        }
        if not self.code_checked and not self.check_code():
            return output, metadata
        metadata.update(self._argument_metadata(keyed, named))
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
        except ClearedWhileStoring as exc:
            _log.debug("[Memory] %s: cleared while its result was stored (%s)", name, exc)
            return output, metadata
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
            if self.remote:
                self._flush_records()
        if self.mmap_mode is not None:
            # return a memory map on the first call too, like every later call
            reloaded = self.find(key, record=False)[0]
            if reloaded is not MISSING:
                output = reloaded
        try:
            self.limits.after_write(int(metadata.get("output_bytes", 0)))
        except OSError as exc:
            warnings.warn(CacheWarning(f"[Memory] cache size limits: {exc}"), stacklevel=5)
        return output, metadata

    def _argument_metadata(self, keyed: tuple, named: dict[str, Any]) -> dict:
        """Per-argument digests (and per-part digests of frames and dicts) for explanations."""
        try:
            digests = self.binder.argument_digests(keyed)
        except Exception:  # never fail a call for its explanation
            return {}
        parts = {}
        for name, value in named.items():
            if name in self.binder.hash_with:
                continue  # keyed by the user's function: its parts are not the key's
            found = argument_parts(value)
            if found:
                parts[name] = found
        return {"arg_digests": digests, "arg_parts": parts}

    def shelved(self, key: str, metadata: Optional[dict] = None) -> MemorizedResult:
        """A :class:`MemorizedResult` handle on an entry."""
        return MemorizedResult(
            self.store_backend,
            (self.func_id, key),
            mmap_mode=self.mmap_mode,
            verbose=self.verbose - 1,
            timestamp=self.timestamp,
            metadata=metadata,
        )

    # ------------------------------------------------------------ explanations
    def explain(self, key: str, keyed: tuple, named: dict[str, Any]) -> MissExplanation:
        """What a call with this key would do, and why it would miss (computes nothing)."""
        return explain_call(self, key, keyed, named)

    # ------------------------------------------------------------ the protocol
    def steps(
        self,
        args: tuple,
        kwargs: dict,
        shelving: bool,
        force: bool = False,
        keyed: Optional[tuple[str, tuple]] = None,
    ) -> Generator[Step, Any, tuple[Any, dict]]:
        """The whole cached call; see the module docstring for what it yields."""
        key, keyed_values = self.key(args, kwargs) if keyed is None else keyed
        why = ""
        if self.verbose > 10 and not force and not self.code_checked:
            # before the code check clears the entries of a changed function
            why = self._explanation(key, keyed_values, args, kwargs)
        if not self.code_ok():
            return (yield COMPUTE), {}
        entry = (self.func_id, key)
        held = _held.get()
        nested = entry in held
        token: Any = True
        if not force:
            value, problem = self.find(key, quiet=False)
            if value is not MISSING:
                return (self.shelved(key) if shelving else value), {}
            if problem:
                warnings.warn(
                    CacheWarning(f"[Memory] {problem}; recomputing {self.identity.name}"),
                    stacklevel=4,
                )
            if self.verbose > 10 and not why:
                why = self._explanation(key, keyed_values, args, kwargs)
            if self.compute_once and self.store_backend.supports_locking and not nested:
                deadline = time.monotonic() + self.compute_once_timeout
                delay = 0.001
                while True:
                    claim = self.claim(key)
                    if claim.state == "found":
                        return (self.shelved(key) if shelving else claim.value), {}
                    if claim.state == "locked":
                        token = claim.token
                        break
                    if time.monotonic() > deadline:
                        warnings.warn(
                            CacheWarning(
                                f"[Memory] waited {self.compute_once_timeout:.0f}s for another "
                                f"caller to compute {self.identity.name}; computing it here too"
                            ),
                            stacklevel=4,
                        )
                        token = True
                        break
                    yield delay
                    delay = min(delay * 2, 0.05)
        reset = _held.set(held | {entry})
        try:
            start = self._before_call(args, kwargs, why)
            output = yield COMPUTE
            output, metadata = self._after_call(key, keyed_values, args, kwargs, output, start)
        finally:
            try:
                _held.reset(reset)
            except ValueError:  # closed from another context (garbage collection)
                pass
            self.store_backend.release_lock(token)
        return (self.shelved(key, metadata) if shelving else output), metadata

    def _explanation(self, key: str, keyed: tuple, args: tuple, kwargs: dict) -> str:
        """Why this call misses, for the ``Calling`` line at ``verbose > 10``."""
        try:
            return str(self.explain(key, keyed, self.binder.named_arguments(args, kwargs)))
        except Exception as exc:  # an explanation never fails the call
            return f"{self.identity.name}: cannot explain the miss ({type(exc).__name__}: {exc})"
