//! The Python extension module `joblite._core`: the only code that knows about PyO3.
//! Each submodule binds one capability of the core and registers its functions here.

use pyo3::prelude::*;

mod buffers;
mod core_threads;
mod delayed;
mod errors;
mod format2;
mod hash;
mod lz4_frame;
mod task_pool;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    format2::register(m)?;
    hash::register(m)?;
    lz4_frame::register(m)?;
    task_pool::register(m)?;
    core_threads::register(m)?;
    delayed::register(m)?;
    Ok(())
}
