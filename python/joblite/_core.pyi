"""Type stub of the Rust extension module ``joblite._core``."""

from typing import Any as _Any
from typing import Callable as _Callable
from typing import Optional as _Optional
from typing import final as _final

from typing_extensions import Buffer as _Buffer

# checked against the built extension by `python -m mypy.stubtest joblite._core` (in CI)
__all__ = [
    "F2_H_OVERHEAD",
    "HASH_ENCODING_VERSION",
    "THREAD_LIMIT_VAR",
    "DelayedFunction",
    "F2Reader",
    "Lz4FrameReader",
    "StreamHasher",
    "TaskPool",
    "__version__",
    "default_thread_limit",
    "delayed",
    "f2_index_len",
    "f2_scan",
    "f2_stream_len",
    "f2_write",
    "get_thread_limit",
    "hash",
    "lz4_frame_decompress",
    "set_thread_limit",
    "split_calls",
    "xxh3_64",
]

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

HASH_ENCODING_VERSION: str

def hash(obj: object, hash_name: str = "blake3", coerce_mmap: bool = False) -> str:
    """Content hash of ``obj`` (see :func:`joblite.hash`)."""

@_final
class StreamHasher:
    """blake3 of a stream of contiguous buffers (the content handlers' column digests)."""

    def __new__(cls) -> StreamHasher: ...
    def update(self, data: _Buffer) -> None: ...
    @property
    def length(self) -> int: ...
    def digest(self) -> bytes: ...

# --- joblib's lz4 files (rust/bindings/lz4_frame.rs) ---

def lz4_frame_decompress(data: _Buffer) -> bytes: ...

@_final
class Lz4FrameReader:
    def __new__(cls, data: _Buffer) -> Lz4FrameReader: ...
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
    def __call__(
        self, *args: object, **kwargs: object
    ) -> tuple[_Callable[..., _Any], tuple[_Any, ...], dict[str, _Any]]: ...
    @property
    def __wrapped__(self) -> _Callable[..., _Any]: ...
    def __reduce__(self) -> tuple[type[DelayedFunction], tuple[_Callable[..., object]]]: ...

def delayed(function: _Callable[..., object]) -> DelayedFunction:
    """Capture a call for Parallel: ``delayed(f)(*args, **kwargs)`` is ``(f, args, kwargs)``.

    The call is a plain tuple, so joblib code that unpacks it
    (``f, args, kwargs = delayed(g)(x)``) keeps working. ``delayed(f)`` for the same ``f``
    as the previous call returns the same object: ``delayed(f)(x) for x in xs`` costs one
    tuple a task.

    Parameters
    ----------
    function : callable
        The function whose calls are captured.

    Returns
    -------
    DelayedFunction
        A callable returning ``(function, args, kwargs)``.

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

# --- core threads (rust/bindings/core_threads.rs): hashing, compression, checksums ---

THREAD_LIMIT_VAR: str

def set_thread_limit(limit: _Optional[int]) -> _Optional[int]:
    """Set the core thread limit (None: the default); gives the previous explicit one."""

def get_thread_limit() -> int:
    """The core thread limit in force."""

def default_thread_limit() -> int:
    """JOBLITE_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs (read once per process)."""

# --- format 2 (rust/bindings/format2.rs) ---

F2_H_OVERHEAD: int

def f2_scan(stream: _Buffer) -> list[_Optional[tuple[int, int]]]: ...
def f2_write(
    path: _Optional[str],
    parts: list[_Buffer],
    bounds: list[int],
    buffers: list[tuple[int, int, int]],
    codec: int,
    level: int,
    h_len: int,
    fsync: bool,
) -> _Optional[bytes]: ...
def f2_index_len(n_chunks: int, n_buffers: int) -> int: ...
def f2_stream_len(data: _Buffer, name: _Optional[str] = None) -> _Optional[int]: ...
def xxh3_64(data: _Buffer) -> int: ...

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
    def stream(self, verify: bool) -> tuple[bytes, list[_Optional[bytearray]]]: ...
    def read_buffers(self, jobs: list[tuple[int, _Buffer]], verify: bool) -> None: ...
    def verify_buffer(self, k: int, data: _Buffer) -> None: ...
    def mark_mapped_writable(self) -> None: ...
