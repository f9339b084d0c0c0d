"""Type stub of the Rust extension module ``joblite._core``."""

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

# --- persistence (rust/bindings/persistence.rs) ---

# --- thread pool (rust/bindings/pool.rs) ---

from typing import Callable as _Callable

class ThreadPool:
    """A fixed-size pool of native threads running Python callables.

    Workers stay attached to the interpreter and release the GIL whenever they are not
    running Python code; a callable that raises is reported as unraisable.
    """

    def __init__(self, n_threads: int, name: str = "joblite-worker") -> None: ...
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
