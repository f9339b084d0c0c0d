//! The core thread limit (`crate::core_threads`): how many threads hashing, compression and
//! checksums may use in this process.
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::core_threads;

/// Set the core thread limit (`None`: back to the default); returns the previous explicit
/// limit, or `None` when there was none.
#[pyfunction]
#[pyo3(signature = (limit))]
fn set_thread_limit(limit: Option<i64>) -> PyResult<Option<usize>> {
    let limit = match limit {
        None => None,
        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => {
            return Err(PyValueError::new_err(format!(
                "the thread limit must be an int >= 1 or None, got {n}"
            )))
        }
    };
    Ok(core_threads::set_limit(limit))
}

/// The core thread limit in force.
#[pyfunction]
fn get_thread_limit() -> usize {
    core_threads::limit()
}

/// The limit used when none is set: `JOBLITE_NUM_THREADS`, else `OMP_NUM_THREADS`, else the
/// CPUs of the process (read once per process).
#[pyfunction]
fn default_thread_limit() -> usize {
    core_threads::default_limit()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Read the environment now, at import, as BLAS libraries do: a library that changes
    // os.environ later for the processes it starts (dask's LocalCluster sets
    // OMP_NUM_THREADS=1 in its parent) must not make this process's core single-threaded.
    // A forked child reads it again at its first use (another pid).
    core_threads::default_limit();
    m.add_function(wrap_pyfunction!(set_thread_limit, m)?)?;
    m.add_function(wrap_pyfunction!(get_thread_limit, m)?)?;
    m.add_function(wrap_pyfunction!(default_thread_limit, m)?)?;
    m.add("THREAD_LIMIT_VAR", core_threads::LIMIT_VAR)?;
    Ok(())
}
