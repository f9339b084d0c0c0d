"""Type stub of the Rust extension module ``joblite._core``."""

__version__: str

# --- hashing (rust/bindings/hash.rs) ---

# --- persistence (rust/bindings/persistence.rs) ---

# --- thread pool (rust/bindings/pool.rs) ---
