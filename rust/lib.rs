//! Rust core of joblite.
//!
//! Each module owns one capability and never mentions Python, so the core can be
//! unit-tested with `cargo test` and benchmarked with `cargo bench` without an
//! interpreter. `bindings` (behind the `python` feature) is the only place that
//! knows about PyO3: it converts arguments, releases the GIL and maps errors.

pub mod codec;
pub mod container;
pub mod format2;
pub mod hash;
pub mod pages;
pub mod pool;
pub mod threads;

#[cfg(feature = "python")]
mod bindings;
