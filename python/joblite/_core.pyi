"""Type stub of the Rust extension module ``joblite._core``."""

from collections.abc import Iterator as _Iterator
from typing import Any as _Any
from typing import Callable as _Callable
from typing import ClassVar as _ClassVar
from typing import Optional as _Optional
from typing import Union as _Union
from typing import final as _final
from typing import overload as _overload

from typing_extensions import Buffer as _Buffer

# checked against the built extension by `python -m mypy.stubtest joblite._core` (in CI)
__all__ = [
    "F2_IN_BAND_MIN",
    "F2_IN_BAND_PREFIX",
    "F2_IN_BAND_SUFFIX",
    "HASH_ENCODING_VERSION",
    "THREAD_LIMIT_VAR",
    "ArrowDictionaryIds",
    "DelayedCall",
    "DelayedFunction",
    "F2HeadStream",
    "F2Reader",
    "Lz4FrameReader",
    "StreamHasher",
    "TaskPool",
    "__version__",
    "arrow_feed_strings",
    "default_thread_limit",
    "delayed",
    "f2_dump",
    "f2_index_len",
    "f2_stream_len",
    "get_thread_limit",
    "hash",
    "identity_matters",
    "int64_progression",
    "run_call",
    "set_thread_limit",
    "split_calls",
    "xxh3_64",
]

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

HASH_ENCODING_VERSION: str

def hash(obj: object, hash_name: str = "blake3", coerce_mmap: bool = False) -> str:
    """Content hash of ``obj`` (see :func:`joblite.hash`)."""

def identity_matters(obj: object) -> bool:
    """Whether ``obj`` met twice differs from ``obj`` and an equal copy (the one rule of what
    counts as shared, for :func:`joblite.hash` and the arguments of ``Memory``)."""

def int64_progression(values: _Buffer) -> _Optional[tuple[int, int]]:
    """``(first, step)`` when the native int64 values form an arithmetic progression."""

@_final
class StreamHasher:
    """blake3 of a stream of contiguous buffers (the content handlers' column digests)."""

    def __new__(cls) -> StreamHasher: ...
    def update(self, data: _Buffer) -> None: ...
    @property
    def length(self) -> int: ...
    def digest(self) -> bytes: ...

# --- joblib's lz4 files (rust/bindings/lz4_frame.rs) ---

@_final
class Lz4FrameReader:
    def __new__(cls, fileobj: _Any) -> Lz4FrameReader: ...
    def readinto(self, buf: _Buffer) -> int: ...

# --- task pool (rust/bindings/task_pool.rs): the workers of backend="threading" ---

@_final
class TaskPool:
    """The task pool of the threading backend: native threads running Python callables.

    Workers stay attached to the interpreter and release the GIL whenever they are not
    running Python code; a callable that raises is reported as unraisable. (The core's own
    threads, for hashing and compression, are another pool: see ``set_thread_limit``.)
    """

    def __new__(
        cls, n_threads: int, name: str = "joblite-worker", threads: bool = True
    ) -> TaskPool: ...
    def next_job(self) -> _Optional[_Callable[[], object]]: ...
    def submit(self, func: _Callable[[], object], group: int = 0) -> None: ...
    def submit_many(self, funcs: list[_Callable[[], object]], group: int = 0) -> int: ...
    def cancel(self, group: int) -> int: ...
    def shutdown(self, wait: bool = True) -> None: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def closed(self) -> bool: ...

# --- delayed (rust/bindings/delayed.rs): the calls Parallel runs ---

@_final
class DelayedFunction:
    """What ``delayed(f)`` returns: calling it captures a call of ``f``.

    It has ``f``'s ``__name__``, ``__qualname__`` and other attributes, and ``__wrapped__``
    (so :func:`inspect.signature` gives ``f``'s), as a :func:`functools.wraps` wrapper
    would; ``__doc__`` and ``__module__`` are its own.
    """

    def __new__(cls, function: _Callable[..., object]) -> DelayedFunction: ...
    def __call__(self, *args: object, **kwargs: object) -> DelayedCall: ...
    @property
    def __wrapped__(self) -> _Callable[..., _Any]: ...
    def __reduce__(self) -> tuple[type[DelayedFunction], tuple[_Callable[..., object]]]: ...

@_final
class DelayedCall:
    """A call captured by ``delayed(f)(*args, **kwargs)``: reads as ``(f, args, kwargs)``.

    It unpacks, indexes, slices, iterates, compares equal to that tuple and has its
    ``repr``; it pickles and copies as that plain tuple. Its ``args`` and ``kwargs`` are
    built on first use, then always the same objects. Not hashable (the tuple with its
    dict is not either).
    """

    def __iter__(self) -> _Iterator[_Any]: ...
    def __len__(self) -> int: ...
    @_overload
    def __getitem__(self, key: int, /) -> _Any: ...
    @_overload
    def __getitem__(self, key: slice, /) -> tuple[_Any, ...]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __lt__(self, value: object, /) -> bool: ...
    def __le__(self, value: object, /) -> bool: ...
    def __gt__(self, value: object, /) -> bool: ...
    def __ge__(self, value: object, /) -> bool: ...
    __hash__: _ClassVar[None]  # type: ignore[assignment]
    def __reduce__(
        self,
    ) -> tuple[
        type[tuple[_Any, ...]],
        tuple[tuple[_Callable[..., _Any], tuple[_Any, ...], dict[str, _Any]]],
    ]: ...

def delayed(function: _Callable[..., object]) -> DelayedFunction:
    """Capture a call for Parallel: ``delayed(f)(*args, **kwargs)`` reads as ``(f, args, kwargs)``.

    The call is a :class:`DelayedCall`, which joblib code unpacks
    (``f, args, kwargs = delayed(g)(x)``), indexes and compares as joblib's plain tuple, and
    which pickles as that tuple. ``delayed(f)`` for the same ``f`` as the previous call
    returns the same object: ``delayed(f)(x) for x in xs`` costs one small object a task.

    Parameters
    ----------
    function : callable
        The function whose calls are captured.

    Returns
    -------
    DelayedFunction
        A callable returning a :class:`DelayedCall`, read as ``(function, args, kwargs)``.

    Examples
    --------
    >>> from joblite import delayed
    >>> delayed(pow)(2, 10)
    (<built-in function pow>, (2, 10), {})
    """

def split_calls(
    calls: list[_Any],
) -> _Optional[tuple[_Callable[..., _Any], list[_Any], bool]]:
    """``(function, arguments, single)`` when every call of ``calls`` is
    ``(function, args, {})`` for one ``function`` (``arguments``: each call's ``args``, or
    its one argument when all have exactly one: ``single``); ``None`` otherwise."""

def run_call(call: _Any) -> _Any:
    """Run one call, ``f(*args, **kwargs)``: a :class:`DelayedCall` (without building its
    ``args`` or ``kwargs`` when it has none) or an ``(f, args, kwargs)`` sequence."""

# --- core threads (rust/bindings/core_threads.rs): hashing, compression, checksums ---

THREAD_LIMIT_VAR: str

def set_thread_limit(limit: _Optional[int]) -> _Optional[int]:
    """Set the core thread limit (None: the default); gives the previous explicit one."""

def get_thread_limit() -> int:
    """The core thread limit in force."""

def default_thread_limit() -> int:
    """JOBLITE_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs (read once per process)."""

# --- format 2 (rust/bindings/format2.rs) ---

F2_IN_BAND_MIN: int
F2_IN_BAND_PREFIX: tuple[bytes, ...]
F2_IN_BAND_SUFFIX: tuple[bytes, ...]

def f2_dump(
    path: _Optional[str],
    stream: list[_Union[_Buffer, str]],
    buffers: list[_Buffer],
    codec: int,
    level: int,
    dump_start: int,
    fsync: bool,
) -> _Optional[bytes]: ...
def f2_index_len(n_chunks: int, n_buffers: int) -> int: ...
def f2_stream_len(data: _Buffer, name: _Optional[str] = None) -> _Optional[int]: ...
def xxh3_64(data: _Buffer) -> int: ...

@_final
class F2HeadStream:
    """Where a bz2 / xz dump read from a stream ends (its header stream decoded as it
    arrives)."""

    @staticmethod
    def start(first: _Buffer, name: _Optional[str] = None) -> _Optional[F2HeadStream]: ...
    def feed(self, data: _Buffer) -> _Optional[int]: ...
    @property
    def dump_len(self) -> _Optional[int]: ...

@_final
class F2Reader:
    """An open format-2 dump: its validated index and read plan."""

    @staticmethod
    def open(path: str, offset: int = 0) -> _Optional[F2Reader]: ...
    @staticmethod
    def from_buffer(data: _Buffer, name: _Optional[str] = None) -> _Optional[F2Reader]: ...
    @property
    def codec(self) -> str: ...
    @property
    def flags(self) -> int: ...
    @property
    def dump_len(self) -> int: ...
    @property
    def index_offset(self) -> _Optional[int]: ...
    @property
    def start(self) -> int: ...
    def buffers(self) -> list[tuple[int, bool, _Optional[int]]]: ...
    def buffer_positions(self) -> list[int]: ...
    def stream(self, verify: bool) -> tuple[bytes, list[_Optional[bytearray]]]: ...
    def read_bytes(self, k: int, verify: bool) -> bytes: ...
    def read_buffers(self, jobs: list[tuple[int, _Buffer]], verify: bool) -> None: ...
    def verify_buffer(self, k: int, data: _Buffer) -> None: ...
    def mark_mapped_writable(self) -> None: ...

# --- Arrow columns for the content hash (rust/bindings/hash.rs) ---

def arrow_feed_strings(
    kind: str,
    buffers: list[_Optional[_Buffer]],
    offset: int,
    length: int,
    row_base: int,
    nulls: StreamHasher,
    lengths: StreamHasher,
    data: StreamHasher,
) -> None:
    """Feed the null positions, lengths and bytes of one Arrow string/binary array."""

@_final
class ArrowDictionaryIds:
    """Ids of a dictionary column's distinct values, in order of first appearance."""

    def __new__(cls) -> ArrowDictionaryIds: ...
    def feed(
        self,
        index_width: int,
        index_signed: bool,
        index_buffers: list[_Optional[_Buffer]],
        offset: int,
        length: int,
        kind: str,
        value_buffers: list[_Optional[_Buffer]],
        value_offset: int,
        value_length: int,
        row_base: int,
        nulls: StreamHasher,
        ids: StreamHasher,
        lengths: StreamHasher,
        data: StreamHasher,
    ) -> None: ...
