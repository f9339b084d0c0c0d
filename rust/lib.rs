//! Rust core of joblite.
//!
//! Each module owns one capability and never mentions Python, so the core can be
//! unit-tested with `cargo test` and benchmarked with `cargo bench` without an
//! interpreter. `bindings` (behind the `python` feature) is the only place that
//! knows about PyO3: it converts arguments, releases the GIL and maps errors.

pub mod core_threads;
pub mod error;
pub mod format2;
pub mod hash;
pub mod lz4_frame;
pub mod pages;
pub mod task_pool;

#[cfg(feature = "python")]
mod bindings;
