//! `joblite._core.delayed`: the calls `Parallel` runs, `delayed(f)(*args, **kwargs)`,
//! built at the cost of one small object.
//!
//! A call reads as joblib's `(f, args, kwargs)`: it unpacks (`f, args, kwargs =
//! delayed(g)(x)`), indexes, slices, compares equal to that tuple, has its `repr`, and
//! pickles as that plain tuple. It is a `DelayedCall`, not a `tuple`, so that building
//! one costs a single allocation: `delayed(f)` is called through vectorcall (no argument
//! tuple built by CPython), a call of one positional argument keeps that argument alone
//! (its `args` tuple is built, once, when someone asks for it) and `kwargs` is built,
//! once, when asked for (each call its own dict, so mutating one never changes another).
//! Parallel itself never asks: `split_calls` reads the fields directly.
//!
//! `delayed(f)` for the same `f` as the previous call returns the same object, since
//! `delayed(f)(x) for x in xs` asks for it once per task.
//!
//! Both types are built with CPython's type API directly (PyO3's classes cannot be
//! called through vectorcall, and allocate through more layers): the code below is the
//! whole of their state and protocol. Every function runs with the GIL held (slots and
//! methods of a GIL-holding interpreter; the extension is not declared free-threaded).
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// A new strong reference to `obj` (CPython's `Py_NewRef`, which 3.9 lacks).
///
/// # Safety
/// `obj` must point to a live Python object and the GIL must be held: the increment is then
/// CPython's own `Py_INCREF`, and the caller owns the reference returned.
#[inline]
unsafe fn new_ref(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the caller guarantees a live object and the GIL (see above).
    unsafe { ffi::Py_INCREF(obj) };
    obj
}

/// The `DelayedCall` type, set once when the module is initialized.
static CALL_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());
/// The `DelayedFunction` type, set once when the module is initialized.
static FUNCTION_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// A captured call. Invariants (between any two statements that may run Python code):
/// every non-null field is a strong reference; `args`, when not null, is a tuple, and
/// then `arg` is null; `kwargs`, when not null, is a dict. `args` null with `arg` set
/// means `(arg,)`; both null means `()` (only after `tp_clear`, or a call of no
/// argument before its tuple is asked for). `kwargs` null means a new empty dict.
#[repr(C)]
struct CallObject {
    ob_base: ffi::PyObject,
    function: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
}

/// What `delayed(function)` returns. `vectorcall` is the entry CPython calls.
#[repr(C)]
struct FunctionObject {
    ob_base: ffi::PyObject,
    function: *mut ffi::PyObject,
    vectorcall: Option<ffi::vectorcallfunc>,
}

/// A new reference to `object`, or to `None` when it is null (a cleared field).
///
/// # Safety
/// `object` is null or a valid object; the GIL is held.
unsafe fn new_ref_or_none(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: per the contract, `object` is valid when not null, and None always is.
    unsafe {
        new_ref(if object.is_null() {
            ffi::Py_None()
        } else {
            object
        })
    }
}

/// Stops the garbage collector from tracking `args` when none of its items can be part
/// of a reference cycle (numbers, strings, None, untracked containers), as CPython does
/// itself for such tuples, but at once instead of at the tuple's first collection.
///
/// # Safety
/// `args` is a valid tuple whose items are all set; the GIL is held.
unsafe fn untrack_if_atomic(args: *mut ffi::PyObject) {
    // SAFETY: per the contract; GET_SIZE/GET_ITEM read a valid tuple within bounds.
    unsafe {
        for i in 0..ffi::PyTuple_GET_SIZE(args) {
            let item = ffi::PyTuple_GET_ITEM(args, i);
            if ffi::PyObject_IS_GC(item) != 0 && ffi::PyObject_GC_IsTracked(item) != 0 {
                return;
            }
        }
        // Untracking only removes the tuple from the collector's lists (a no-op if it
        // is not tracked); a tuple of untracked items can be part of no cycle.
        ffi::PyObject_GC_UnTrack(args.cast());
    }
}

/// The call's `args` tuple (borrowed from the call), built and kept on first use.
///
/// # Safety
/// `call` is a valid `DelayedCall`; the GIL is held. Null with an exception set on error.
unsafe fn call_args(call: *mut CallObject) -> *mut ffi::PyObject {
    // SAFETY: `call` is valid (contract); PyTuple_New may run the collector (so Python
    // code), hence the fields are read again after it, and the tuple is filled from what
    // they hold then. SET_ITEM moves the call's reference to `arg` into the tuple, and
    // `arg` is cleared right after it, with no Python code in between.
    unsafe {
        if !(*call).args.is_null() {
            return (*call).args;
        }
        let size = if (*call).arg.is_null() { 0 } else { 1 };
        let tuple = ffi::PyTuple_New(size);
        if tuple.is_null() {
            return ptr::null_mut();
        }
        if !(*call).args.is_null() {
            // built meanwhile (by code the collector ran): keep that one
            ffi::Py_DECREF(tuple);
            return (*call).args;
        }
        if size == 1 {
            let arg = if (*call).arg.is_null() {
                new_ref(ffi::Py_None()) // cleared meanwhile
            } else {
                (*call).arg
            };
            ffi::PyTuple_SET_ITEM(tuple, 0, arg);
            (*call).arg = ptr::null_mut();
            untrack_if_atomic(tuple);
        }
        (*call).args = tuple;
        tuple
    }
}

/// The call's `kwargs` dict (borrowed from the call), built and kept on first use.
///
/// # Safety
/// `call` is a valid `DelayedCall`; the GIL is held. Null with an exception set on error.
unsafe fn call_kwargs(call: *mut CallObject) -> *mut ffi::PyObject {
    // SAFETY: `call` is valid (contract); the field is read again after PyDict_New,
    // which may run Python code through the collector.
    unsafe {
        if !(*call).kwargs.is_null() {
            return (*call).kwargs;
        }
        let dict = ffi::PyDict_New();
        if dict.is_null() {
            return ptr::null_mut();
        }
        if !(*call).kwargs.is_null() {
            ffi::Py_DECREF(dict);
            return (*call).kwargs;
        }
        (*call).kwargs = dict;
        dict
    }
}

/// The plain tuple `(function, args, kwargs)` of a call (a new reference).
///
/// # Safety
/// `object` is a valid `DelayedCall`; the GIL is held. Null with an exception set on
/// error.
unsafe fn call_as_tuple(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let call = object.cast::<CallObject>();
    // SAFETY: `call` is valid (contract); each field is read after the last call that
    // may run Python code, and null fields (cleared by the collector) read as None.
    unsafe {
        if call_args(call).is_null() || call_kwargs(call).is_null() {
            return ptr::null_mut();
        }
        let tuple = ffi::PyTuple_New(3);
        if tuple.is_null() {
            return ptr::null_mut();
        }
        ffi::PyTuple_SET_ITEM(tuple, 0, new_ref_or_none((*call).function));
        ffi::PyTuple_SET_ITEM(tuple, 1, new_ref_or_none((*call).args));
        ffi::PyTuple_SET_ITEM(tuple, 2, new_ref_or_none((*call).kwargs));
        tuple
    }
}

/// Applies `f` to the call's plain tuple: how every protocol but the fields' own reads.
///
/// # Safety
/// `object` is a valid `DelayedCall`; the GIL is held; `f` returns a new reference or
/// null with an exception set, and does not keep its argument.
unsafe fn with_tuple(
    object: *mut ffi::PyObject,
    f: impl FnOnce(*mut ffi::PyObject) -> *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: per the contract; the tuple is a new reference released after use.
    unsafe {
        let tuple = call_as_tuple(object);
        if tuple.is_null() {
            return ptr::null_mut();
        }
        let out = f(tuple);
        ffi::Py_DECREF(tuple);
        out
    }
}

unsafe extern "C" fn call_traverse(
    object: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    let call = object.cast::<CallObject>();
    // SAFETY: the collector passes a valid `DelayedCall`; each non-null field is a
    // strong reference, and a heap type's instances must visit their type.
    unsafe {
        for field in [(*call).function, (*call).args, (*call).arg, (*call).kwargs] {
            if !field.is_null() {
                let out = visit(field, arg);
                if out != 0 {
                    return out;
                }
            }
        }
        visit(ffi::Py_TYPE(object).cast(), arg)
    }
}

unsafe extern "C" fn call_clear(object: *mut ffi::PyObject) -> c_int {
    let call = object.cast::<CallObject>();
    // SAFETY: `call` is a valid `DelayedCall`; Py_CLEAR nulls each field before its
    // decref, so code run by that decref sees a consistent object.
    unsafe {
        ffi::Py_CLEAR(&raw mut (*call).function);
        ffi::Py_CLEAR(&raw mut (*call).args);
        ffi::Py_CLEAR(&raw mut (*call).arg);
        ffi::Py_CLEAR(&raw mut (*call).kwargs);
    }
    0
}

unsafe extern "C" fn call_dealloc(object: *mut ffi::PyObject) {
    // SAFETY: CPython deallocates a valid object whose count reached zero: untrack it
    // before clearing, free it with its type's tp_free (the GC allocator's, set by
    // PyType_Ready for a GC type), then release the heap type's reference that
    // PyType_GenericAlloc took.
    unsafe {
        let kind = ffi::Py_TYPE(object);
        ffi::PyObject_GC_UnTrack(object.cast());
        call_clear(object);
        if let Some(free) = (*kind).tp_free {
            free(object.cast());
        }
        ffi::Py_DECREF(kind.cast());
    }
}

unsafe extern "C" fn call_iter(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedCall`; GetIter keeps its own reference.
    unsafe { with_tuple(object, |tuple| ffi::PyObject_GetIter(tuple)) }
}

unsafe extern "C" fn call_length(_object: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    3
}

/// Item `index` of the call (0: function, 1: args, 2: kwargs; negative from the end),
/// building only what is asked for; null (no exception set) for any other index.
///
/// # Safety
/// `object` is a valid `DelayedCall`; the GIL is held.
unsafe fn call_field(object: *mut ffi::PyObject, index: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    let call = object.cast::<CallObject>();
    // SAFETY: per the contract; each branch returns a new reference (or null with an
    // exception set by the builder).
    unsafe {
        match if index < 0 { index + 3 } else { index } {
            0 => new_ref_or_none((*call).function),
            1 => {
                let args = call_args(call);
                if args.is_null() {
                    args
                } else {
                    new_ref(args)
                }
            }
            2 => {
                let kwargs = call_kwargs(call);
                if kwargs.is_null() {
                    kwargs
                } else {
                    new_ref(kwargs)
                }
            }
            _ => ptr::null_mut(),
        }
    }
}

unsafe extern "C" fn call_item(
    object: *mut ffi::PyObject,
    index: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedCall`; the item gets its own reference.
    unsafe {
        if (-3..3).contains(&index) {
            return call_field(object, index);
        }
        with_tuple(object, |tuple| ffi::PySequence_GetItem(tuple, index))
    }
}

unsafe extern "C" fn call_subscript(
    object: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedCall` and key; the item gets its own
    // reference (a slice is a new tuple). An int key in range reads the field alone.
    unsafe {
        if ffi::PyLong_CheckExact(key) != 0 {
            let index = ffi::PyLong_AsSsize_t(key);
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear(); // an overflow: out of range, as the tuple says below
            } else if (-3..3).contains(&index) {
                return call_field(object, index);
            }
        }
        with_tuple(object, |tuple| ffi::PyObject_GetItem(tuple, key))
    }
}

unsafe extern "C" fn call_repr(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedCall`.
    unsafe { with_tuple(object, |tuple| ffi::PyObject_Repr(tuple)) }
}

unsafe extern "C" fn call_richcompare(
    object: *mut ffi::PyObject,
    other: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedCall` first (reflected comparisons swap
    // their operands) and a valid `other`; every new reference made here is released.
    unsafe {
        let other_is_call = ffi::Py_TYPE(other) == CALL_TYPE.load(Ordering::Relaxed);
        if !other_is_call && ffi::PyTuple_Check(other) == 0 {
            return new_ref(ffi::Py_NotImplemented());
        }
        with_tuple(object, |mine| {
            if other_is_call {
                with_tuple(other, |theirs| ffi::PyObject_RichCompare(mine, theirs, op))
            } else {
                ffi::PyObject_RichCompare(mine, other, op)
            }
        })
    }
}

unsafe extern "C" fn call_reduce(
    object: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // A call pickles (and copies) as the plain tuple joblib builds: `(tuple, (t,))`.
    // SAFETY: CPython passes a valid `DelayedCall`; PyTuple_Type is a static type.
    unsafe {
        with_tuple(object, |tuple| {
            let kind = (&raw mut ffi::PyTuple_Type).cast::<ffi::PyObject>();
            let inner = ffi::PyTuple_New(1);
            if inner.is_null() {
                return ptr::null_mut();
            }
            ffi::PyTuple_SET_ITEM(inner, 0, new_ref(tuple));
            let outer = ffi::PyTuple_New(2);
            if outer.is_null() {
                ffi::Py_DECREF(inner);
                return ptr::null_mut();
            }
            ffi::PyTuple_SET_ITEM(outer, 0, new_ref(kind));
            ffi::PyTuple_SET_ITEM(outer, 1, inner);
            outer
        })
    }
}

unsafe extern "C" fn call_new(
    _kind: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_new with the GIL held.
    let py = unsafe { Python::assume_attached() };
    PyTypeError::new_err("DelayedCall objects are made by delayed(f)(*args, **kwargs)").restore(py);
    ptr::null_mut()
}

/// `delayed(f)(*args, **kwargs)`: the vectorcall entry of `DelayedFunction`.
unsafe extern "C" fn function_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedFunction`, `nargs` positional arguments
    // then one value per name of the `kwnames` tuple (or null) in `args`, all borrowed.
    // The new call is allocated zeroed and tracked by PyType_GenericAlloc (so consistent
    // at every point, as `call_traverse` reads null fields as absent); each field stores
    // a new reference, and on error the half-built call is released, which clears it.
    unsafe {
        let nargs = ffi::PyVectorcall_NARGS(nargsf);
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_GET_SIZE(kwnames)
        };
        let kind = CALL_TYPE.load(Ordering::Relaxed);
        let object = ffi::PyType_GenericAlloc(kind, 0);
        if object.is_null() {
            return ptr::null_mut();
        }
        let call = object.cast::<CallObject>();
        (*call).function = new_ref_or_none((*callable.cast::<FunctionObject>()).function);
        if nargs == 1 && nkw == 0 {
            (*call).arg = new_ref(*args);
            return object;
        }
        let tuple = ffi::PyTuple_New(nargs);
        if tuple.is_null() {
            ffi::Py_DECREF(object);
            return ptr::null_mut();
        }
        for i in 0..nargs {
            ffi::PyTuple_SET_ITEM(tuple, i, new_ref(*args.offset(i)));
        }
        untrack_if_atomic(tuple);
        (*call).args = tuple;
        if nkw > 0 {
            let dict = ffi::PyDict_New();
            if dict.is_null() {
                ffi::Py_DECREF(object);
                return ptr::null_mut();
            }
            (*call).kwargs = dict;
            for j in 0..nkw {
                let value = *args.offset(nargs + j);
                if ffi::PyDict_SetItem(dict, ffi::PyTuple_GET_ITEM(kwnames, j), value) < 0 {
                    ffi::Py_DECREF(object);
                    return ptr::null_mut();
                }
            }
        }
        object
    }
}

unsafe extern "C" fn function_new(
    kind: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes the type, an argument tuple and a dict or null.
    unsafe {
        if ffi::PyTuple_GET_SIZE(args) != 1 || (!kwargs.is_null() && ffi::PyDict_Size(kwargs) != 0)
        {
            let py = Python::assume_attached();
            PyTypeError::new_err("DelayedFunction(function) takes exactly one argument")
                .restore(py);
            return ptr::null_mut();
        }
        new_function(kind, ffi::PyTuple_GET_ITEM(args, 0))
    }
}

/// A new `DelayedFunction` of `function` (borrowed).
///
/// # Safety
/// `kind` is the `DelayedFunction` type (or a subclass), `function` a valid object;
/// the GIL is held.
unsafe fn new_function(
    kind: *mut ffi::PyTypeObject,
    function: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: per the contract; the object is zeroed by the allocator and both fields
    // are set before it is returned.
    unsafe {
        let object = ffi::PyType_GenericAlloc(kind, 0);
        if object.is_null() {
            return ptr::null_mut();
        }
        let this = object.cast::<FunctionObject>();
        (*this).function = new_ref(function);
        (*this).vectorcall = Some(function_vectorcall);
        object
    }
}

unsafe extern "C" fn function_traverse(
    object: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the collector passes a valid `DelayedFunction`; see `call_traverse`.
    unsafe {
        let function = (*object.cast::<FunctionObject>()).function;
        if !function.is_null() {
            let out = visit(function, arg);
            if out != 0 {
                return out;
            }
        }
        visit(ffi::Py_TYPE(object).cast(), arg)
    }
}

unsafe extern "C" fn function_clear(object: *mut ffi::PyObject) -> c_int {
    // SAFETY: a valid `DelayedFunction`; see `call_clear`.
    unsafe { ffi::Py_CLEAR(&raw mut (*object.cast::<FunctionObject>()).function) };
    0
}

unsafe extern "C" fn function_dealloc(object: *mut ffi::PyObject) {
    // SAFETY: as `call_dealloc`.
    unsafe {
        let kind = ffi::Py_TYPE(object);
        ffi::PyObject_GC_UnTrack(object.cast());
        function_clear(object);
        if let Some(free) = (*kind).tp_free {
            free(object.cast());
        }
        ffi::Py_DECREF(kind.cast());
    }
}

unsafe extern "C" fn function_wrapped(
    object: *mut ffi::PyObject,
    _: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedFunction`.
    unsafe { new_ref_or_none((*object.cast::<FunctionObject>()).function) }
}

/// Attributes of the function (`__name__`, `__qualname__`, `__dict__`...) when the
/// object has none of that name, as a `functools.wraps` wrapper would have them (not
/// `__doc__` and `__module__`: the class's own come first).
unsafe extern "C" fn function_getattro(
    object: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedFunction` and attribute name; the GIL is
    // held, so the borrowed pointers below become owned references safely.
    unsafe {
        let found = ffi::PyObject_GenericGetAttr(object, name);
        if !found.is_null() || ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) == 0 {
            return found;
        }
        ffi::PyErr_Clear();
        let py = Python::assume_attached();
        let function = Bound::from_owned_ptr(
            py,
            new_ref_or_none((*object.cast::<FunctionObject>()).function),
        );
        let name =
            Bound::from_borrowed_ptr(py, name).cast_into_unchecked::<pyo3::types::PyString>();
        match function.getattr(&name) {
            Ok(value) => value.into_ptr(),
            Err(_) => {
                PyAttributeError::new_err(format!(
                    "'DelayedFunction' object (delayed({})) has no attribute {}",
                    function.repr().map(|r| r.to_string()).unwrap_or_default(),
                    name.repr().map(|r| r.to_string()).unwrap_or_default(),
                ))
                .restore(py);
                ptr::null_mut()
            }
        }
    }
}

unsafe extern "C" fn function_reduce(
    object: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedFunction`.
    unsafe {
        let py = Python::assume_attached();
        let function = Bound::from_owned_ptr(
            py,
            new_ref_or_none((*object.cast::<FunctionObject>()).function),
        );
        let kind = Bound::from_borrowed_ptr(py, ffi::Py_TYPE(object).cast());
        match (kind, (function,)).into_pyobject(py) {
            Ok(out) => out.into_ptr(),
            Err(error) => {
                error.restore(py);
                ptr::null_mut()
            }
        }
    }
}

unsafe extern "C" fn function_repr(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid `DelayedFunction`.
    unsafe {
        let py = Python::assume_attached();
        let function = Bound::from_owned_ptr(
            py,
            new_ref_or_none((*object.cast::<FunctionObject>()).function),
        );
        match function.repr() {
            Ok(text) => pyo3::types::PyString::new(py, &format!("delayed({text})")).into_ptr(),
            Err(error) => {
                error.restore(py);
                ptr::null_mut()
            }
        }
    }
}

/// The function of the last `delayed` call and what it returned.
static LAST: Mutex<Option<(Py<PyAny>, Py<PyAny>)>> = Mutex::new(None);

/// Capture calls of `function` for `Parallel`: `delayed(f)(*args, **kwargs)` reads as
/// `(f, args, kwargs)`.
#[pyfunction]
fn delayed(py: Python<'_>, function: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
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
    // SAFETY: FUNCTION_TYPE was set at module initialization (this function is only
    // reachable through the module) and `function` is a valid object.
    let wrapper = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            new_function(FUNCTION_TYPE.load(Ordering::Relaxed), function.as_ptr()),
        )?
    }
    .unbind();
    let previous = LAST
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace((function.unbind(), wrapper.clone_ref(py)));
    drop(previous); // after the lock is released: its decref may run Python code
    Ok(wrapper)
}

/// One call of a batch, as `split_calls` reads it.
enum Arguments<'py> {
    One(Bound<'py, PyAny>),
    Tuple(Bound<'py, PyTuple>),
}

/// `(function, arguments)` of one call without keyword arguments; None otherwise.
fn read_call<'py>(
    item: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Arguments<'py>)>> {
    let py = item.py();
    if item.get_type_ptr() == CALL_TYPE.load(Ordering::Relaxed) {
        // SAFETY: `item` is a `DelayedCall` (its type checked just above), kept alive by
        // the caller's list for this whole function; its fields are read (and turned
        // into owned references) with no Python code run in between.
        unsafe {
            let call = item.as_ptr().cast::<CallObject>();
            let kwargs = (*call).kwargs;
            if !kwargs.is_null() && ffi::PyDict_Size(kwargs) != 0 {
                return Ok(None);
            }
            let function = Bound::from_owned_ptr(py, new_ref_or_none((*call).function));
            if !(*call).args.is_null() {
                let args = Bound::from_borrowed_ptr(py, (*call).args).cast_into::<PyTuple>()?;
                return Ok(Some((function, Arguments::Tuple(args))));
            }
            if (*call).arg.is_null() {
                return Ok(Some((function, Arguments::Tuple(PyTuple::empty(py)))));
            }
            let arg = Bound::from_borrowed_ptr(py, (*call).arg);
            return Ok(Some((function, Arguments::One(arg))));
        }
    }
    let Ok(call) = item.cast::<PyTuple>() else {
        return Ok(None);
    };
    if call.len() != 3 {
        return Ok(None);
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
    Ok(Some((call.get_item(0)?, Arguments::Tuple(args))))
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
    let mut all_args: Vec<Arguments<'py>> = Vec::with_capacity(calls.len());
    let mut single = true;
    for item in calls.iter() {
        let Some((function, args)) = read_call(&item)? else {
            return Ok(None);
        };
        match &first {
            Some(known) if !known.is(&function) => return Ok(None),
            Some(_) => {}
            None => first = Some(function),
        }
        single &= match &args {
            Arguments::One(_) => true,
            Arguments::Tuple(args) => args.len() == 1,
        };
        all_args.push(args);
    }
    let Some(function) = first else {
        return Ok(None);
    };
    let arguments = if single {
        let items = all_args
            .into_iter()
            .map(|args| match args {
                Arguments::One(arg) => Ok(arg),
                Arguments::Tuple(args) => args.get_item(0),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)?
    } else {
        let items = all_args
            .into_iter()
            .map(|args| match args {
                Arguments::One(arg) => PyTuple::new(py, [arg]),
                Arguments::Tuple(args) => Ok(args),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)?
    };
    Ok(Some((function, arguments, single)))
}

/// Run one call: `function(*args, **kwargs)` of a `DelayedCall` (without building its
/// `args` tuple or `kwargs` dict when it has none) or of a `(function, args, kwargs)`
/// sequence, as joblib's `func(*args, **kwargs)` does.
#[pyfunction]
fn run_call<'py>(py: Python<'py>, call: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if call.get_type_ptr() == CALL_TYPE.load(Ordering::Relaxed) {
        // SAFETY: `call` is a `DelayedCall` (type checked just above), alive for this
        // whole function; its fields become owned references before any Python code
        // runs (the call of the function may change or clear them).
        let (function, arg, kwargs) = unsafe {
            let raw = call.as_ptr().cast::<CallObject>();
            let function = Bound::from_owned_ptr(py, new_ref_or_none((*raw).function));
            let arg = if (*raw).args.is_null() && !(*raw).arg.is_null() {
                Some(Bound::from_borrowed_ptr(py, (*raw).arg))
            } else {
                None
            };
            let kwargs = if (*raw).kwargs.is_null() {
                None
            } else {
                Some(Bound::from_borrowed_ptr(py, (*raw).kwargs).cast_into::<PyDict>()?)
            };
            (function, arg, kwargs)
        };
        let kwargs = kwargs.filter(|kwargs| !kwargs.is_empty());
        if let (Some(arg), None) = (&arg, &kwargs) {
            return function.call1((arg,));
        }
        // SAFETY: as above; `call_args` builds (or returns) the tuple the call keeps.
        let args = unsafe {
            Bound::from_borrowed_ptr_or_err(py, call_args(call.as_ptr().cast::<CallObject>()))?
        }
        .cast_into::<PyTuple>()?;
        return function.call(args, kwargs.as_ref());
    }
    let function = call.get_item(0)?;
    let args = call.get_item(1)?;
    let kwargs = call.get_item(2)?;
    let args = match args.cast_into::<PyTuple>() {
        Ok(args) => args,
        Err(error) => error
            .into_inner()
            .try_iter()?
            .collect::<PyResult<Vec<_>>>()
            .and_then(|items| PyTuple::new(py, items))?,
    };
    let kwargs = match kwargs.cast_into::<PyDict>() {
        Ok(kwargs) => kwargs,
        Err(error) => {
            let dict = PyDict::new(py);
            dict.update(&error.into_inner().cast_into::<pyo3::types::PyMapping>()?)?;
            dict
        }
    };
    function.call(args, Some(&kwargs))
}

const CALL_DOC: &std::ffi::CStr = c"A call captured by delayed(f)(*args, **kwargs).\n\n\
It reads as joblib's plain tuple (f, args, kwargs): it unpacks, indexes, slices, compares \
equal to that tuple and pickles as it.";
const FUNCTION_DOC: &std::ffi::CStr =
    c"What delayed(function) returns: calling it captures a call of \
function.";

/// A type made from `slots` (leaked: types live as long as the process).
fn make_type<'py>(
    py: Python<'py>,
    name: &'static std::ffi::CStr,
    basicsize: usize,
    flags: std::ffi::c_ulong,
    slots: Vec<ffi::PyType_Slot>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut slots = slots;
    slots.push(ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    });
    let slots: &'static mut [ffi::PyType_Slot] = Box::leak(slots.into_boxed_slice());
    let spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: name.as_ptr(),
        basicsize: c_int::try_from(basicsize).expect("a small struct"),
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | flags) as _,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: the spec, its name and its slots are 'static (leaked); every slot
    // function has the signature its slot number asks for.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(spec)) }
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

fn leak_methods(name: &'static std::ffi::CStr, function: ffi::PyCFunction) -> *mut c_void {
    let methods = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: function,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: ptr::null(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    methods.as_mut_ptr().cast()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let call_type = make_type(
        py,
        c"joblite._core.DelayedCall",
        std::mem::size_of::<CallObject>(),
        0,
        vec![
            slot(ffi::Py_tp_doc, CALL_DOC.as_ptr() as *mut c_void),
            slot(ffi::Py_tp_new, call_new as *mut c_void),
            slot(ffi::Py_tp_dealloc, call_dealloc as *mut c_void),
            slot(ffi::Py_tp_traverse, call_traverse as *mut c_void),
            slot(ffi::Py_tp_clear, call_clear as *mut c_void),
            slot(ffi::Py_tp_iter, call_iter as *mut c_void),
            slot(ffi::Py_sq_length, call_length as *mut c_void),
            slot(ffi::Py_sq_item, call_item as *mut c_void),
            slot(ffi::Py_mp_length, call_length as *mut c_void),
            slot(ffi::Py_mp_subscript, call_subscript as *mut c_void),
            slot(ffi::Py_tp_repr, call_repr as *mut c_void),
            slot(ffi::Py_tp_richcompare, call_richcompare as *mut c_void),
            slot(
                ffi::Py_tp_hash,
                ffi::PyObject_HashNotImplemented as *mut c_void,
            ),
            slot(ffi::Py_tp_methods, leak_methods(c"__reduce__", call_reduce)),
        ],
    )?;
    let members = Box::leak(Box::new([
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: std::mem::offset_of!(FunctionObject, vectorcall) as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: ptr::null(),
        },
        ffi::PyMemberDef::default(),
    ]));
    let getset = Box::leak(Box::new([
        ffi::PyGetSetDef {
            name: c"__wrapped__".as_ptr(),
            get: Some(function_wrapped),
            set: None,
            doc: c"The function whose calls are captured (as functools.wraps sets it).".as_ptr(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef::default(),
    ]));
    let function_type = make_type(
        py,
        c"joblite._core.DelayedFunction",
        std::mem::size_of::<FunctionObject>(),
        ffi::Py_TPFLAGS_HAVE_VECTORCALL,
        vec![
            slot(ffi::Py_tp_doc, FUNCTION_DOC.as_ptr() as *mut c_void),
            slot(ffi::Py_tp_new, function_new as *mut c_void),
            slot(ffi::Py_tp_dealloc, function_dealloc as *mut c_void),
            slot(ffi::Py_tp_traverse, function_traverse as *mut c_void),
            slot(ffi::Py_tp_clear, function_clear as *mut c_void),
            slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
            slot(ffi::Py_tp_members, members.as_mut_ptr().cast()),
            slot(ffi::Py_tp_getset, getset.as_mut_ptr().cast()),
            slot(ffi::Py_tp_getattro, function_getattro as *mut c_void),
            slot(ffi::Py_tp_repr, function_repr as *mut c_void),
            slot(
                ffi::Py_tp_methods,
                leak_methods(c"__reduce__", function_reduce),
            ),
        ],
    )?;
    // The module keeps both types alive for the life of the process (and so these
    // pointers valid): a reference is also leaked here, in case the module is dropped.
    CALL_TYPE.store(call_type.clone().into_ptr().cast(), Ordering::Relaxed);
    FUNCTION_TYPE.store(function_type.clone().into_ptr().cast(), Ordering::Relaxed);
    m.add("DelayedCall", call_type)?;
    m.add("DelayedFunction", function_type)?;
    m.add_function(wrap_pyfunction!(delayed, m)?)?;
    m.add_function(wrap_pyfunction!(split_calls, m)?)?;
    m.add_function(wrap_pyfunction!(run_call, m)?)?;
    Ok(())
}
