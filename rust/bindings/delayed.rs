//! `joblite._core.delayed`: the calls `Parallel` runs, `delayed(f)(*args, **kwargs)`,
//! built at the cost of one tuple.
//!
//! A call is the plain tuple `(f, args, kwargs)` that joblib code unpacks
//! (`f, args, kwargs = delayed(g)(x)`). The callable `delayed(f)` returns is a small
//! native object: calling it takes the argument tuple and keyword dict CPython already
//! built for the call, so a task costs one 3-tuple (and an empty dict), not a Python
//! frame. `delayed(f)` for the same `f` as the previous call returns the same object,
//! since `delayed(f)(x) for x in xs` asks for it once per task.
use std::sync::Mutex;

use pyo3::exceptions::PyAttributeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// What `delayed(function)` returns: calling it captures a call of `function` as
/// `(function, args, kwargs)`.
#[pyclass(name = "DelayedFunction", module = "joblite._core", frozen)]
pub struct DelayedFunction {
    function: Py<PyAny>,
}

#[pymethods]
impl DelayedFunction {
    #[new]
    fn new(function: Py<PyAny>) -> Self {
        DelayedFunction { function }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let kwargs = match kwargs {
            Some(kwargs) => kwargs,
            None => PyDict::new(py),
        };
        untrack_if_atomic(&args);
        PyTuple::new(
            py,
            [
                self.function.bind(py).clone(),
                args.into_any(),
                kwargs.into_any(),
            ],
        )
    }

    /// The function whose calls are captured (as `functools.wraps` sets it).
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.function.clone_ref(py)
    }

    /// Attributes of the function (`__name__`, `__qualname__`, `__dict__`...), as a
    /// `functools.wraps` wrapper would have them (not `__doc__` and `__module__`: the
    /// class's own come first).
    fn __getattr__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let function = self.function.bind(py);
        function.getattr(name).map_err(|_| {
            PyAttributeError::new_err(format!(
                "'DelayedFunction' object (delayed({})) has no attribute {}",
                function.repr().map(|r| r.to_string()).unwrap_or_default(),
                name
            ))
        })
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let args = PyTuple::new(py, [self.function.bind(py).clone()])?;
        PyTuple::new(
            py,
            [py.get_type::<DelayedFunction>().into_any(), args.into_any()],
        )
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("delayed({})", self.function.bind(py).repr()?))
    }
}

/// Stops the garbage collector from tracking `args` when none of its items can be part
/// of a reference cycle (numbers, strings, None, untracked containers), as CPython does
/// itself for such tuples, but at once instead of at the tuple's first collection: the
/// tuples of the tasks a Parallel call reads ahead then never make the collector run.
fn untrack_if_atomic(args: &Bound<'_, PyTuple>) {
    for item in args.iter_borrowed() {
        // SAFETY: `item` is a valid object borrowed from `args`, which we hold.
        let tracked = unsafe {
            ffi::PyObject_IS_GC(item.as_ptr()) != 0
                && ffi::PyObject_GC_IsTracked(item.as_ptr()) != 0
        };
        if tracked {
            return;
        }
    }
    // SAFETY: `args` is a valid tuple we hold a reference to; untracking a GC object
    // only removes it from the collector's lists (a no-op if it is not tracked), and a
    // tuple whose items are all untracked can be part of no cycle.
    unsafe { ffi::PyObject_GC_UnTrack(args.as_ptr().cast()) };
}

/// The function of the last `delayed` call and what it returned.
static LAST: Mutex<Option<(Py<PyAny>, Py<DelayedFunction>)>> = Mutex::new(None);

/// Capture calls of `function` for `Parallel`: `delayed(f)(*args, **kwargs)` is
/// `(f, args, kwargs)`.
#[pyfunction]
fn delayed(py: Python<'_>, function: Bound<'_, PyAny>) -> PyResult<Py<DelayedFunction>> {
    // The lock is never held while Python code may run (an allocation can start the
    // garbage collector, whose finalizers may call delayed() in this very thread).
    // A poisoned lock only means a panic while it was held; the slot is always whole.
    {
        let last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, wrapper)) = last.as_ref() {
            if known.is(&function) {
                return Ok(wrapper.clone_ref(py));
            }
        }
    }
    let wrapper = Py::new(
        py,
        DelayedFunction {
            function: function.clone().unbind(),
        },
    )?;
    let previous = LAST
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace((function.unbind(), wrapper.clone_ref(py)));
    drop(previous); // after the lock is released: its decref may run Python code
    Ok(wrapper)
}

/// `(function, arguments, single)` when every call of `calls` is `(function, args, {})`
/// for one `function`: `arguments` lists each call's `args`, or its one argument when
/// every call has exactly one (`single`). `None` for any other batch.
///
/// This is how a batch of calls of one function travels to a process worker (the
/// function once, then the arguments, as `multiprocessing.Pool.map` sends them) and
/// runs (`map(function, arguments)`): one pass here instead of unpacking every call in
/// Python.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn split_calls<'py>(
    py: Python<'py>,
    calls: &Bound<'py, PyList>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyList>, bool)>> {
    let mut first: Option<Bound<'py, PyAny>> = None;
    let mut all_args: Vec<Bound<'py, PyTuple>> = Vec::with_capacity(calls.len());
    let mut single = true;
    for item in calls.iter() {
        let Ok(call) = item.cast::<PyTuple>() else {
            return Ok(None);
        };
        if call.len() != 3 {
            return Ok(None);
        }
        let function = call.get_item(0)?;
        match &first {
            Some(known) if !known.is(&function) => return Ok(None),
            Some(_) => {}
            None => first = Some(function),
        }
        let Ok(kwargs) = call.get_item(2)?.cast_into::<PyDict>() else {
            return Ok(None);
        };
        if !kwargs.is_empty() {
            return Ok(None);
        }
        let Ok(args) = call.get_item(1)?.cast_into::<PyTuple>() else {
            return Ok(None);
        };
        single &= args.len() == 1;
        all_args.push(args);
    }
    let Some(function) = first else {
        return Ok(None);
    };
    let arguments = if single {
        let items = all_args
            .iter()
            .map(|args| args.get_item(0))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)?
    } else {
        PyList::new(py, all_args)?
    };
    Ok(Some((function, arguments, single)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DelayedFunction>()?;
    m.add_function(wrap_pyfunction!(delayed, m)?)?;
    m.add_function(wrap_pyfunction!(split_calls, m)?)?;
    Ok(())
}
