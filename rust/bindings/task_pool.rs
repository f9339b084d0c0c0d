//! `joblite._core.TaskPool`: the task pool (`crate::task_pool`) running Python callables,
//! the workers of `Parallel(backend="threading")`.
//!
//! Each worker attaches to the interpreter once, for its whole life, and releases
//! the GIL whenever it is not running Python code (while it waits for a job). So a
//! job costs one queue pop and one GIL hand-over, not a thread-state creation.
//!
//! With `threads=False` the pool starts no thread: its owner runs Python threads that
//! loop on `next_job()`. The threading backend does so, because at interpreter exit a
//! daemon Python thread still running a task is abandoned cleanly, while a native
//! thread caught there inside the interpreter aborts the process (CPython ends such
//! threads with `pthread_exit`, which must not unwind through Rust frames): Ctrl-C
//! during a long call could otherwise only end once the running tasks finished.
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::task_pool::{JobQueue, TaskPool, TryPop};

/// The task pool of the threading backend: native threads running Python callables.
#[pyclass(name = "TaskPool", module = "joblite._core", frozen)]
pub struct PyTaskPool {
    pool: TaskPool<Py<PyAny>>,
}

fn python_worker(queue: &JobQueue<Py<PyAny>>) {
    Python::attach(|py| loop {
        let next = py.detach(|| queue.pop());
        let Some((_, job)) = next else { break };
        let bound = job.bind(py);
        if let Err(err) = bound.call0() {
            // The Python side wraps jobs so that they report their own errors; an error
            // reaching here is a bug in that wrapper, so make it visible, not silent.
            err.write_unraisable(py, Some(bound));
        }
    })
}

#[pymethods]
impl PyTaskPool {
    #[new]
    #[pyo3(signature = (n_threads, name = "joblite-worker", threads = true))]
    fn new(n_threads: usize, name: &str, threads: bool) -> PyResult<Self> {
        if n_threads == 0 {
            return Err(PyValueError::new_err(
                "TaskPool needs n_threads >= 1, got 0",
            ));
        }
        let pool = if threads {
            TaskPool::with_worker(n_threads, name, python_worker)
        } else {
            TaskPool::without_threads(n_threads)
        }
        .map_err(|e| PyRuntimeError::new_err(format!("could not start worker threads: {e}")))?;
        Ok(PyTaskPool { pool })
    }

    /// The next queued job, waiting for one with the GIL released; `None` once the
    /// pool is shut down (for workers the caller runs itself, see `threads=False`).
    fn next_job(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        // A job already queued, or a closed pool, is answered without releasing the
        // GIL: at interpreter exit an idle worker must not be caught waiting to take
        // it back.
        match self.pool.queue().try_pop() {
            TryPop::Job(_, job) => return Some(job),
            TryPop::Closed => return None,
            TryPop::Empty => {}
        }
        py.detach(|| self.pool.queue().pop()).map(|(_, job)| job)
    }

    /// Queue `func` (called with no argument) under `group`.
    #[pyo3(signature = (func, group = 0))]
    fn submit(&self, func: Py<PyAny>, group: u64) -> PyResult<()> {
        self.pool
            .submit(group, func)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Queue every callable of `funcs` under `group`; returns how many were queued.
    #[pyo3(signature = (funcs, group = 0))]
    fn submit_many(&self, funcs: Vec<Py<PyAny>>, group: u64) -> PyResult<usize> {
        self.pool
            .submit_many(group, funcs)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Withdraw the queued, not yet started jobs of `group`; returns how many.
    fn cancel(&self, group: u64) -> usize {
        // The withdrawn callables are dropped here, with the GIL held.
        self.pool.cancel_group(group).len()
    }

    /// Stop the pool: queued jobs are dropped unrun; with `wait`, block (GIL
    /// released) until the running jobs are finished and the threads have ended.
    #[pyo3(signature = (wait = true))]
    fn shutdown(&self, py: Python<'_>, wait: bool) {
        drop(self.pool.close());
        if wait {
            py.detach(|| self.pool.join());
        }
    }

    /// Number of worker threads.
    #[getter]
    fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Number of queued jobs no worker has taken yet.
    #[getter]
    fn pending(&self) -> usize {
        self.pool.queue().len()
    }

    /// Whether `shutdown` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.pool.queue().is_closed()
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskPool(n_threads={}, pending={}, closed={})",
            self.pool.n_threads(),
            self.pool.queue().len(),
            self.pool.queue().is_closed()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTaskPool>()?;
    Ok(())
}
