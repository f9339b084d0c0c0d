//! Rust core of joblite.
//!
//! Each module owns one capability and never mentions Python, so the core can be
//! unit-tested with `cargo test` and benchmarked with `cargo bench` without an
//! interpreter. `bindings` (behind the `python` feature) is the only place that
//! knows about PyO3: it converts arguments, releases the GIL and maps errors.

pub mod codec;
pub mod container;
pub mod core_threads;
pub mod error;
pub mod format2;
pub mod hash;
pub mod pages;
pub mod task_pool;
/// The former name of [`core_threads`], for the call sites not yet renamed.
pub(crate) use core_threads as threads;

#[cfg(feature = "python")]
mod bindings;
