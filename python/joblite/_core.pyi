"""Type stub of the Rust extension module ``joblite._core``."""

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

# --- persistence (rust/bindings/persistence.rs) ---
from collections.abc import Buffer as _Buffer
from os import PathLike as _PathLike
from typing import Optional as _Optional

CONTAINER_MAGIC: bytes
DEFAULT_CHUNK_SIZE: int

def write_container(
    path: _Optional[str | _PathLike[str]],
    segments: list[tuple[_Buffer, int, int, _Optional[list[_Buffer]]]],
    chunk_size: int = ...,
    fsync: bool = True,
    lz4_chunk_size: int = ...,
) -> _Optional[bytes]: ...
def mark_mapped_writable(path: str | _PathLike[str]) -> None: ...
def lz4_frame_decompress(data: _Buffer) -> bytes: ...

class ContainerReader:
    @staticmethod
    def open(path: str | _PathLike[str]) -> ContainerReader: ...
    @staticmethod
    def from_buffer(data: _Buffer) -> ContainerReader: ...
    @property
    def flags(self) -> int: ...
    def segments(self) -> list[tuple[int, int, int, int, int]]: ...
    def chunks(self, index: int) -> list[tuple[int, int, int]]: ...
    def read_into(self, targets: list[tuple[int, _Buffer]], verify: bool) -> None: ...
    def read_stored(self, index: int, chunk: int, verify: bool) -> bytes: ...
    def verify(self, index: int, data: _Buffer) -> None: ...

# --- thread pool (rust/bindings/pool.rs) ---
