"""Type stub of the Rust extension module ``joblite._core``."""

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

HASH_ENCODING_VERSION: str

def hash(obj: object, hash_name: str = "blake3", coerce_mmap: bool = False) -> str:
    """Content hash of ``obj`` (see :func:`joblite.hash`)."""

# --- persistence (rust/bindings/persistence.rs) ---

# --- thread pool (rust/bindings/pool.rs) ---
