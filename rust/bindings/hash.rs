//! `_core.hash`: the object walk of `joblite.hash`.
//!
//! Builtin types and numpy arrays have fast paths that write a type tag, a length prefix and
//! the value's bytes into an [`Encoder`]; anything else is walked through its pickle reduction.
//! The byte-level encoding (and the multi-threaded hashing of large buffers) lives in
//! `crate::hash`; this module only looks at Python objects. The encoding is specified in
//! `docs/hash.md`.

use std::collections::HashMap;
use std::os::raw::c_int;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyRecursionError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule as PyModuleType;
use pyo3::types::{
    PyByteArray, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};

use super::buffers::{export_raw, raw_bytes_of};
use crate::hash::arrow::{DictionaryIds, Indices, Layout, Malformed, Sink, Strings};
use crate::hash::{feed_strided, tag, Algorithm, Encoder, PARALLEL_THRESHOLD};

/// Deepest nesting the walk follows before raising `RecursionError`. Every level costs a few
/// hundred bytes of native stack (more on the reduction path, which calls back into Python), so
/// this stays well inside the 8 MiB stack of a Python thread.
const MAX_DEPTH: usize = 2_000;

/// The leading fields of numpy's `PyArrayObject_fields` (numpy/ndarraytypes.h), which numpy
/// documents as its C-API layout and has kept unchanged from 1.7 through 2.x.
#[repr(C)]
struct NumpyArrayFields {
    ob_base: ffi::PyObject,
    data: *mut u8,
    nd: c_int,
    dimensions: *const ffi::Py_ssize_t,
    strides: *const ffi::Py_ssize_t,
    base: *mut ffi::PyObject,
    descr: *mut ffi::PyObject,
}

/// numpy's types, looked up once numpy has been imported by someone else.
struct NumpyTypes {
    ndarray: Py<PyType>,
    memmap: Py<PyType>,
    generic: Py<PyType>,
}

static NUMPY: PyOnceLock<NumpyTypes> = PyOnceLock::new();
static COPYREG_DISPATCH: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
/// `object.__hash__`, the identity hash a class keeps unless it hashes by value.
static OBJECT_HASH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ORDERED_DICT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `joblite.exceptions.UnhashableError`, the one error meaning "cannot hash this".
static UNHASHABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `pickle.PicklingError`: a reduction that raises it (or TypeError) cannot be hashed.
static PICKLING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `joblite.hashing._registry.handler_for`: the registered content handler of a type, or None.
static HANDLER_FOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `joblite.hashing._registry.class_content`: what a class walked by value is made of.
static CLASS_CONTENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// Tag of a class walked by value (module, qualname, digest of its content); local to the
/// walk of Python objects, so it lives here rather than in `crate::hash::tag`.
const CLASS_BY_VALUE: u8 = b'K';
/// Tag of a wrapper (`functools.lru_cache`...) whose pickle name does not lead back to it:
/// module, name, then the wrapped object.
const WRAPPED: u8 = b'w';
/// Tag of a class met again while its own content is walked (distance on the class stack).
const CLASS_BACKREF: u8 = b'k';
/// The bits of `co_flags` that change how a function is called or what calling it returns:
/// `*args`, `**kwargs`, generator, coroutine, iterable coroutine, async generator.
const CALL_FLAGS: u64 = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200;

/// `UnhashableError(reason, path="")`, with `cause` as its `__cause__`.
fn unhashable(py: Python<'_>, reason: String, cause: Option<PyErr>) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let cls = UNHASHABLE.import(py, "joblite.exceptions", "UnhashableError")?;
        let err = PyErr::from_value(cls.call1((reason,))?);
        err.set_cause(py, cause);
        Ok(err)
    };
    make().unwrap_or_else(|e| e)
}

/// Whether `err` says "this object cannot be pickled" (TypeError or pickle.PicklingError) as
/// opposed to anything else that went wrong inside a reduction (KeyboardInterrupt, a bug in a
/// user's `__reduce__`), which must reach the caller unchanged.
fn is_cannot_pickle(py: Python<'_>, err: &PyErr) -> bool {
    if err.is_instance_of::<PyTypeError>(py) {
        return true;
    }
    match PICKLING_ERROR.import(py, "pickle", "PicklingError") {
        Ok(cls) => err.is_instance(py, cls),
        Err(_) => false,
    }
}

/// numpy's types when numpy is imported; `None` otherwise (then no array can exist, and
/// joblite never imports numpy itself).
fn numpy_types(py: Python<'_>) -> PyResult<Option<&NumpyTypes>> {
    if let Some(types) = NUMPY.get(py) {
        return Ok(Some(types));
    }
    let modules = py
        .import(intern!(py, "sys"))?
        .getattr(intern!(py, "modules"))?;
    let np = match modules.cast::<PyDict>()?.get_item(intern!(py, "numpy"))? {
        Some(np) if !np.is_none() => np,
        _ => return Ok(None), // not imported, or blocked with sys.modules["numpy"] = None
    };
    let get = |name: &str| -> PyResult<Py<PyType>> {
        Ok(np.getattr(name)?.cast_into::<PyType>()?.unbind())
    };
    let types = NumpyTypes {
        ndarray: get("ndarray")?,
        memmap: get("memmap")?,
        generic: get("generic")?,
    };
    Ok(Some(NUMPY.get_or_init(py, || types)))
}

/// What the walk needs to know about one numpy dtype.
struct DtypeInfo {
    /// Keeps the dtype alive, so its address cannot be reused by another dtype while cached.
    _dtype: Py<PyAny>,
    key: Vec<u8>,
    itemsize: usize,
    hasobject: bool,
}

/// Hashes object addresses for the walk's maps: a multiply and a rotation (addresses are
/// distinct and aligned, so no flooding defence is needed; SipHash cost more than the walk).
#[derive(Default, Clone, Copy)]
struct ByAddress;

impl std::hash::BuildHasher for ByAddress {
    type Hasher = AddressHasher;
    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// What [`Walker::meet`] found.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Meeting {
    /// Met before in this scope: a reference to it was written.
    Again,
    /// Met for the first time (and noted, when it may be met again).
    First,
    /// An immutable value: not noted, and its content is walked in a scope of its own.
    Immutable,
}

struct Walker<'py> {
    py: Python<'py>,
    numpy: Option<&'py NumpyTypes>,
    /// dtype address -> info; dtypes of builtin types are singletons, so this stays tiny.
    dtypes: Vec<(usize, DtypeInfo)>,
    /// Mutable containers and reduced objects currently being walked -> their position.
    on_stack: HashMap<usize, usize, ByAddress>,
    /// Mutable containers, arrays and reduced objects met so far in this scope -> the order
    /// they were first met in, with the object kept alive so its address cannot be reused:
    /// an object met again is written as a reference to its first meeting, so `[a, a]` and
    /// `[a, copy(a)]` differ (a function that mutates one and reads the other sees it).
    seen: HashMap<usize, (usize, Bound<'py, PyAny>), ByAddress>,
    /// Mutable objects met so far in this scope (the order the next one gets).
    met: usize,
    /// How many tuples the walk is inside now.
    in_tuple: usize,
    depth: usize,
    /// Where an error happened, innermost segment first (filled while unwinding).
    path: Vec<String>,
    /// Spare sub-encoders for dict items and set members, reused to avoid allocations.
    spare: Vec<Encoder>,
    /// class address -> digest of a class walked by value in this walk (the class is kept
    /// alive alongside, so its address cannot be reused during the walk).
    classes: HashMap<usize, (Py<PyAny>, [u8; 32])>,
    /// Where the walk's native stack began, and how many bytes below it the walk may use.
    stack_base: usize,
    stack_budget: usize,
    /// Classes walked by value now, outermost first.
    class_stack: Vec<usize>,
    /// The outermost level of `class_stack` referred to since the current class began.
    class_escape: usize,
    /// type address -> its registered content handler (None: walked by its reduction); the
    /// type objects are kept alive alongside so an address cannot be reused during the walk.
    handlers: HashMap<usize, (Py<PyAny>, Option<Py<PyAny>>)>,
}

impl<'py> Walker<'py> {
    fn walk(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        if self.depth >= MAX_DEPTH {
            return Err(PyRecursionError::new_err(format!(
                "object nesting is deeper than {MAX_DEPTH} levels"
            )));
        }
        if self.stack_base.saturating_sub(stack_position()) > self.stack_budget {
            // A level costs up to ~2 KiB of native stack (more through reductions and
            // closures): a thread with a small stack reaches its end before MAX_DEPTH.
            return Err(PyRecursionError::new_err(format!(
                "object nesting is deeper than this thread's stack allows ({} levels)",
                self.depth
            )));
        }
        self.depth += 1;
        let result = self.walk_inner(obj, enc);
        self.depth -= 1;
        result
    }

    fn walk_inner(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        // Which of these branches note what they meet is mirrored by `identity_matters`
        // (Memory's arguments passed twice): keep the two in step.
        let py = self.py;
        if let Ok(s) = obj.cast_exact::<PyString>() {
            enc.tag(tag::STR);
            match s.to_str() {
                Ok(text) => enc.bytes(text.as_bytes()),
                Err(_) => {
                    // Lone surrogates have no UTF-8 form; surrogatepass is identical to UTF-8
                    // for every other code point, so the encoding stays canonical.
                    let raw = s.call_method1(intern!(py, "encode"), ("utf-8", "surrogatepass"))?;
                    enc.bytes(raw.cast::<PyBytes>()?.as_bytes());
                }
            }
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyInt>() {
            match obj.extract::<i64>() {
                Ok(v) => {
                    enc.tag(tag::INT);
                    enc.u64(v as u64);
                }
                Err(_) => self.big_int(obj, enc)?,
            }
            return Ok(());
        }
        if let Ok(f) = obj.cast_exact::<PyFloat>() {
            enc.tag(tag::FLOAT);
            enc.u64(f.value().to_bits());
            return Ok(());
        }
        if let Ok(t) = obj.cast_exact::<PyTuple>() {
            enc.tag(tag::TUPLE);
            enc.len(t.len());
            // a tuple is not noted, so one met twice is walked twice: what it holds may be met
            // twice through this one reference (see `meet`)
            self.in_tuple += 1;
            let walked = t.iter().enumerate().try_for_each(|(i, item)| {
                self.walk(&item, enc)
                    .inspect_err(|_| self.path.push(format!("[{i}]")))
            });
            self.in_tuple -= 1;
            return walked;
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            return self.tracked(obj, true, enc, |w, enc| {
                enc.tag(tag::LIST);
                enc.len(l.len());
                // Index access, not an iterator: the list may be mutated by the objects'
                // reductions, and get_item re-checks the bounds every time.
                let mut i = 0;
                while i < l.len() {
                    let item = l.get_item(i)?;
                    w.walk(&item, enc)
                        .inspect_err(|_| w.path.push(format!("[{i}]")))?;
                    i += 1;
                }
                Ok(())
            });
        }
        if let Ok(d) = obj.cast_exact::<PyDict>() {
            return self.tracked(obj, true, enc, |w, enc| {
                enc.tag(tag::DICT);
                let pairs: Vec<_> = d.iter().collect();
                w.mapping_pairs(&pairs, enc)
            });
        }
        if obj.is_none() {
            enc.tag(tag::NONE);
            return Ok(());
        }
        if obj.is_exact_instance_of::<pyo3::types::PyBool>() {
            enc.tag(if obj.is_truthy()? {
                tag::TRUE
            } else {
                tag::FALSE
            });
            return Ok(());
        }
        if let Ok(b) = obj.cast_exact::<PyBytes>() {
            enc.tag(tag::BYTES);
            let data = b.as_bytes();
            if data.len() >= PARALLEL_THRESHOLD {
                // bytes are immutable and `b` keeps them alive: safe to read without the GIL
                py.detach(|| enc.bytes(data));
            } else {
                enc.bytes(data);
            }
            return Ok(());
        }
        if let Ok(s) = obj.cast_exact::<PySet>() {
            if self.met_again(obj, true, enc) {
                return Ok(());
            }
            enc.tag(tag::SET);
            let members: Vec<Bound<'py, PyAny>> = s.iter().collect();
            return self.unordered_members(&members, enc);
        }
        if let Ok(s) = obj.cast_exact::<PyFrozenSet>() {
            enc.tag(tag::FROZENSET);
            let members: Vec<Bound<'py, PyAny>> = s.iter().collect();
            return self.unordered_members(&members, enc);
        }
        if let Ok(b) = obj.cast_exact::<PyByteArray>() {
            if self.met_again(obj, true, enc) {
                return Ok(());
            }
            enc.tag(tag::BYTEARRAY);
            enc.bytes(&b.to_vec());
            return Ok(());
        }
        if let Ok(c) = obj.cast_exact::<PyComplex>() {
            enc.tag(tag::COMPLEX);
            enc.u64(c.real().to_bits());
            enc.u64(c.imag().to_bits());
            return Ok(());
        }
        if let Some(np) = self.numpy {
            let ty = obj.get_type();
            if ty.is(np.ndarray.bind(py)) || ty.is(np.memmap.bind(py)) {
                if self.met_again(obj, true, enc) {
                    return Ok(());
                }
                return self.array(obj, enc);
            }
            if obj.is_instance(np.generic.bind(py))? {
                return self.numpy_scalar(obj, enc);
            }
        }
        // Taking the address of the interpreter's static type object reads nothing.
        let function_type = &raw mut ffi::PyFunction_Type;
        if obj.get_type().as_ptr() == function_type.cast() {
            return self.function(obj, enc);
        }
        if let Ok(ty) = obj.cast::<PyType>() {
            let module = ty.module()?;
            let mut module = module.to_str()?;
            let qualname = ty.qualname()?;
            let qualname = qualname.to_str()?;
            if module == "__mp_main__" {
                module = "__main__"; // a spawned worker's name for the parent's script
            }
            if qualname.contains('<') || module == "__main__" {
                // Not found by name (a class made in a function, or a script's class that the
                // next run may define differently): what it does is content.
                return self.class_by_value(ty, module, qualname, true, enc);
            }
            if !found_by_name(py, ty.as_any(), module, qualname) {
                // Its name leads elsewhere (`type("Cfg", (), ns)` made by a factory, a class
                // redefined under one name): by value, or by name as before when its namespace
                // holds something that cannot be hashed.
                return self.class_by_value(ty, module, qualname, false, enc);
            }
            enc.tag(tag::GLOBAL);
            enc.bytes(module.as_bytes());
            enc.bytes(qualname.as_bytes());
            return Ok(());
        }
        let memoryview_type = &raw mut ffi::PyMemoryView_Type;
        if obj.get_type().as_ptr() == memoryview_type.cast() {
            enc.tag(tag::MEMORYVIEW);
            let format = obj.getattr(intern!(py, "format"))?;
            enc.bytes(format.cast::<PyString>()?.to_str()?.as_bytes());
            self.walk(&obj.getattr(intern!(py, "shape"))?, enc)?;
            let raw = obj.call_method0(intern!(py, "tobytes"))?;
            enc.bytes(raw.cast::<PyBytes>()?.as_bytes());
            return Ok(());
        }
        let module_type = &raw mut ffi::PyModule_Type;
        if obj.get_type().as_ptr() == module_type.cast() {
            // Not picklable, but a module is named by its name (a closure that captured
            // `np` keys by "numpy").
            enc.tag(tag::MODULE);
            let name = obj.cast::<PyModuleType>()?.name()?;
            enc.bytes(name.to_str()?.as_bytes());
            return Ok(());
        }
        if let Some(handler) = self.handler(obj)? {
            return self.tracked(obj, false, enc, |w, enc| w.handled(obj, &handler, enc));
        }
        self.tracked(obj, false, enc, |w, enc| w.reduction(obj, enc))
    }

    /// The content handler registered for the type of `obj` (`joblite.register_hash_handler`,
    /// or a built-in one), looked up once per type and walk.
    fn handler(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = self.py;
        let ty = obj.get_type();
        let key = ty.as_ptr() as usize;
        if let Some((_, found)) = self.handlers.get(&key) {
            return Ok(found.as_ref().map(|h| h.bind(py).clone()));
        }
        let lookup = HANDLER_FOR.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("joblite.hashing._registry")?
                .getattr("handler_for")?
                .unbind())
        })?;
        let found = lookup.bind(py).call1((&ty,))?;
        let found = if found.is_none() { None } else { Some(found) };
        self.handlers.insert(
            key,
            (
                ty.into_any().unbind(),
                found.as_ref().map(|h| h.clone().unbind()),
            ),
        );
        Ok(found)
    }

    /// An object with a content handler: its type by name, then whatever the handler returns
    /// (walked like any value). Errors of the handler reach the caller unchanged.
    fn handled(
        &mut self,
        obj: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
        enc: &mut Encoder,
    ) -> PyResult<()> {
        let ty = obj.get_type();
        enc.tag(tag::HANDLED);
        let module = ty.module()?;
        let qualname = ty.qualname()?;
        enc.bytes(module.to_str()?.as_bytes());
        enc.bytes(qualname.to_str()?.as_bytes());
        let module = module.to_str()?;
        let qualname = qualname.to_str()?;
        if qualname.contains('<') || module == "__main__" || module == "__mp_main__" {
            // a subclass defined in a function or a script (a DataFrame subclass with its own
            // methods): what the class does is content, as for any class not found by name
            let module = if module == "__mp_main__" {
                "__main__"
            } else {
                module
            };
            self.class_by_value(&ty, module, qualname, true, enc)?;
        }
        let content = handler.call1((obj,))?;
        // how a handler's content shares objects is how it was built, not what it holds
        self.own_scope(|w| w.walk(&content, enc))
    }

    /// Walks a mutable container or reduced object, writing a back-reference instead when it
    /// is already being walked (a cycle), so self-referential objects get a correct hash.
    fn tracked(
        &mut self,
        obj: &Bound<'py, PyAny>,
        known_mutable: bool,
        enc: &mut Encoder,
        body: impl FnOnce(&mut Self, &mut Encoder) -> PyResult<()>,
    ) -> PyResult<()> {
        let key = obj.as_ptr() as usize;
        if let Some(&position) = self.on_stack.get(&key) {
            enc.tag(tag::BACKREF);
            enc.len(position);
            return Ok(());
        }
        let meeting = self.meet(obj, known_mutable, enc);
        if meeting == Meeting::Again {
            return Ok(());
        }
        let position = self.on_stack.len();
        self.on_stack.insert(key, position);
        let result = if meeting == Meeting::Immutable {
            // what an immutable value's reduction shares (a structured dtype's cached fields
            // dict, met again in its copy's reduction or not) says nothing about the input
            self.own_scope(|w| body(w, enc))
        } else {
            body(self, enc)
        };
        self.on_stack.remove(&key);
        result
    }

    /// Writes a reference to the first meeting of `obj` when it was met before in this scope;
    /// otherwise notes it when its type is known to be mutable, or [`mutable`] says so.
    fn met_again(
        &mut self,
        obj: &Bound<'py, PyAny>,
        mutable_type: bool,
        enc: &mut Encoder,
    ) -> bool {
        self.meet(obj, mutable_type, enc) == Meeting::Again
    }

    fn meet(&mut self, obj: &Bound<'py, PyAny>, mutable_type: bool, enc: &mut Encoder) -> Meeting {
        let key = obj.as_ptr() as usize;
        if let Some((order, _)) = self.seen.get(&key) {
            enc.tag(tag::SHARED);
            enc.len(*order);
            return Meeting::Again;
        }
        if !mutable_type && !mutable(obj) {
            // an immutable value (a dtype, a datetime, a Decimal) met twice or once is the
            // same input: noting it would only make equal inputs miss
            return Meeting::Immutable;
        }
        // Every mutable object met counts, so the orders written do not depend on which
        // objects are referenced from elsewhere in the program.
        let order = self.met;
        self.met += 1;
        // SAFETY: `obj` is a live object (the Bound holds a strong reference) and the GIL is
        // held (`Bound<'py, _>`), so reading its reference count reads initialised memory.
        let references = unsafe { ffi::Py_REFCNT(obj.as_ptr()) };
        if references > 2 || self.in_tuple > 0 {
            // Only an object held elsewhere too can be met again: one held by nothing but
            // its container and the walk (a list's small lists) is not noted, and a list of
            // a million of them builds no map. Inside a tuple its one container may itself
            // be met (and walked) twice, so everything there is noted.
            self.seen.insert(key, (order, obj.clone()));
        }
        Meeting::First
    }

    /// Runs `body` in a scope of its own for shared objects: what it meets is neither
    /// referred to the objects met outside nor referred to from them. For walks whose order
    /// is not the object's (set members, dict keys) and for content that is not the user's
    /// objects (a handler's content, a class's namespace, whose digest is kept per class).
    fn own_scope<T>(&mut self, body: impl FnOnce(&mut Self) -> T) -> T {
        let outer = std::mem::take(&mut self.seen);
        let outer_met = std::mem::replace(&mut self.met, 0);
        let result = body(self);
        self.seen = outer;
        self.met = outer_met;
        result
    }

    /// The items of a mapping: a count, then per item in the order of the keys' digests
    /// (iteration order for keys of equal content) the key's digest and the value walked in
    /// place. Keys are hashed in a scope of their own (they are hashable, so their sharing
    /// says nothing); values share the mapping's scope, so an object met under two keys, or
    /// under a key and elsewhere, is written as one object, whatever the insertion order.
    fn mapping_pairs(
        &mut self,
        pairs: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
        enc: &mut Encoder,
    ) -> PyResult<()> {
        enc.len(pairs.len());
        // (digest, position): the position breaks ties in iteration order
        let mut keyed: Vec<((u128, u128), usize)> = Vec::with_capacity(pairs.len());
        for (i, (key, _)) in pairs.iter().enumerate() {
            let digest = self
                .sub_digest(key)
                .inspect_err(|_| self.path.push(Self::shown_key(key)))?;
            keyed.push((digest, i));
        }
        keyed.sort_unstable();
        for ((hi, lo), i) in &keyed {
            enc.raw(&hi.to_be_bytes());
            enc.raw(&lo.to_be_bytes());
            let (key, value) = &pairs[*i];
            self.walk(value, enc)
                .inspect_err(|_| self.path.push(Self::shown_key(key)))?;
        }
        Ok(())
    }

    /// The blake3 digest of `obj`'s encoding (no version tag), walked in a scope of its own,
    /// as two big-endian u128: integer order is byte order, and much faster to sort than
    /// memcmp on byte arrays.
    fn sub_digest(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<(u128, u128)> {
        let mut sub = self
            .spare
            .pop()
            .unwrap_or_else(|| Encoder::bare(Algorithm::Blake3));
        let walked = self.own_scope(|w| w.walk(obj, &mut sub));
        let d = sub.finish_reset(); // also clears what a failed walk left
        self.spare.push(sub);
        walked?;
        let (hi, lo) = d.split_at(16);
        Ok((
            u128::from_be_bytes(hi.try_into().unwrap_or_default()),
            u128::from_be_bytes(lo.try_into().unwrap_or_default()),
        ))
    }

    fn shown_key(key: &Bound<'py, PyAny>) -> String {
        let shown = key.repr().map(|r| r.to_string()).unwrap_or_default();
        let shown: String = shown.chars().take(40).collect();
        format!("[{shown}]")
    }

    /// Writes a count, then the sorted digests of each member (each in a scope of its own),
    /// so the result does not depend on iteration order (and never on Python's salted
    /// `hash()`).
    fn unordered_members(
        &mut self,
        members: &[Bound<'py, PyAny>],
        enc: &mut Encoder,
    ) -> PyResult<()> {
        enc.len(members.len());
        let mut digests: Vec<(u128, u128)> = Vec::with_capacity(members.len());
        for member in members {
            let digest = self
                .sub_digest(member)
                .inspect_err(|_| self.path.push(Self::shown_key(member)))?;
            digests.push(digest);
        }
        digests.sort_unstable();
        for (hi, lo) in &digests {
            enc.raw(&hi.to_be_bytes());
            enc.raw(&lo.to_be_bytes());
        }
        Ok(())
    }

    fn big_int(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        let bits: usize = obj.call_method0(intern!(py, "bit_length"))?.extract()?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "signed"), true)?;
        let raw = obj.call_method(
            intern!(py, "to_bytes"),
            (bits / 8 + 1, "little"),
            Some(&kwargs),
        )?;
        enc.tag(tag::BIG_INT);
        enc.bytes(raw.cast::<PyBytes>()?.as_bytes());
        Ok(())
    }

    /// Key bytes, itemsize and object-ness of a dtype, cached per dtype object.
    fn dtype_info(&mut self, dtype: &Bound<'py, PyAny>) -> PyResult<usize> {
        let addr = dtype.as_ptr() as usize;
        if let Some(i) = self.dtypes.iter().position(|(a, _)| *a == addr) {
            return Ok(i);
        }
        let py = self.py;
        // `descr` spells out byte order, structured fields, offsets (as padding) and units.
        let key = match dtype.getattr(intern!(py, "descr")) {
            Ok(descr) => descr.repr()?.to_string(),
            Err(_) => dtype.repr()?.to_string(),
        };
        let info = DtypeInfo {
            _dtype: dtype.clone().unbind(),
            key: key.into_bytes(),
            itemsize: dtype.getattr(intern!(py, "itemsize"))?.extract()?,
            hasobject: dtype.getattr(intern!(py, "hasobject"))?.is_truthy()?,
        };
        self.dtypes.push((addr, info));
        Ok(self.dtypes.len() - 1)
    }

    fn array(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        // SAFETY: `obj` is an instance of numpy.ndarray or numpy.memmap (checked by the caller),
        // whose C struct starts with the fields of `NumpyArrayFields` (numpy's public, stable
        // `PyArrayObject_fields` layout). We only read them, holding the GIL and a reference.
        let fields = unsafe { &*(obj.as_ptr() as *const NumpyArrayFields) };
        let nd = usize::try_from(fields.nd).unwrap_or(0);
        let (shape, strides): (Vec<usize>, Vec<isize>) = if nd == 0 {
            (Vec::new(), Vec::new())
        } else {
            // SAFETY: numpy guarantees `dimensions` and `strides` point to `nd` valid entries
            // for the lifetime of the array, which `obj` keeps alive.
            unsafe {
                (
                    std::slice::from_raw_parts(fields.dimensions, nd)
                        .iter()
                        .map(|&n| n as usize)
                        .collect(),
                    std::slice::from_raw_parts(fields.strides, nd).to_vec(),
                )
            }
        };
        // SAFETY: `descr` is the array's dtype, a valid object the array holds a reference to.
        let dtype = unsafe { Bound::from_borrowed_ptr(py, fields.descr) };
        let info_index = self.dtype_info(&dtype)?;
        let (itemsize, hasobject) = {
            let info = &self.dtypes[info_index].1;
            (info.itemsize, info.hasobject)
        };
        enc.tag(if hasobject {
            tag::OBJECT_ARRAY
        } else {
            tag::ARRAY
        });
        enc.bytes(&self.dtypes[info_index].1.key);
        enc.len(itemsize);
        enc.len(nd);
        for &n in &shape {
            enc.len(n);
        }
        if hasobject {
            let flat = obj.call_method0(intern!(py, "ravel"))?;
            let items = flat.call_method0(intern!(py, "tolist"))?;
            let items = items.cast::<PyList>()?;
            enc.len(items.len());
            for (i, item) in items.iter().enumerate() {
                self.walk(&item, enc)
                    .inspect_err(|_| self.path.push(format!("[{i}]")))?;
            }
            return Ok(());
        }
        let total = shape
            .iter()
            .try_fold(itemsize, |acc, &n| acc.checked_mul(n));
        let total = total.ok_or_else(|| PyValueError::new_err("array size overflows"))?;
        enc.len(total);
        let extent = crate::hash::strided_extent(&shape, &strides, itemsize)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let Some((lo, hi)) = extent else {
            return Ok(());
        };
        if fields.data.is_null() {
            return Err(PyValueError::new_err("array has no data buffer"));
        }
        let span = usize::try_from(hi - lo).map_err(|_| PyValueError::new_err("bad strides"))?;
        let first = isize::try_from(lo).map_err(|_| PyValueError::new_err("bad strides"))?;
        // SAFETY: numpy guarantees that every element addressed by (data, shape, strides) lies
        // in memory owned by the array (or its base), which `obj` keeps alive for this call;
        // [data + lo, data + hi) is exactly the hull of those elements, computed from the same
        // shape and strides. The bytes are only read. Another Python thread could write into
        // the array while we hash with the GIL released; that yields an unspecified digest (as
        // it would for numpy's own nogil loops) but never an out-of-bounds access.
        let data = unsafe { std::slice::from_raw_parts(fields.data.offset(first), span) };
        let offset = (-lo) as usize;
        let feed = |enc: &mut Encoder| feed_strided(enc, data, offset, &shape, &strides, itemsize);
        let fed = if total >= PARALLEL_THRESHOLD {
            py.detach(|| feed(enc))
        } else {
            feed(enc)
        };
        fed.map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn numpy_scalar(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        let dtype = obj.getattr(intern!(py, "dtype"))?;
        let index = self.dtype_info(&dtype)?;
        enc.tag(tag::NUMPY_SCALAR);
        enc.bytes(&self.dtypes[index].1.key);
        if self.dtypes[index].1.hasobject {
            // A structured scalar (np.void) with object fields: walk its fields.
            let items = obj.call_method0(intern!(py, "item"))?;
            return self.walk(&items, enc);
        }
        let raw = obj.call_method0(intern!(py, "tobytes"))?;
        enc.bytes(raw.cast::<PyBytes>()?.as_bytes());
        Ok(())
    }

    /// Functions importable by name (module-level functions of a real module) are identified
    /// by module and qualified name, like pickle. Every other function (a lambda, a function
    /// defined inside another one, a function of a script's `__main__`) is walked by value: its
    /// bytecode, names and constants, its defaults, the values its closure captured and the
    /// values of the globals it reads (modules left out), so two lambdas, two closures of one
    /// factory or two scripts' functions of one name never hash equal.
    fn function(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        let (module, qualname) = function_name(obj)?;
        let (module, qualname) = (module.to_str()?, qualname.to_str()?);
        enc.tag(tag::FUNCTION);
        enc.bytes(module.as_bytes());
        enc.bytes(qualname.as_bytes());
        if function_by_name(py, obj, module, qualname) {
            enc.len(0);
            return Ok(());
        }
        self.tracked(obj, false, enc, |w, enc| {
            enc.len(2);
            let code = obj.getattr(intern!(py, "__code__"))?;
            w.code(&code, enc)?;
            w.walk(&obj.getattr(intern!(py, "__defaults__"))?, enc)
                .inspect_err(|_| w.path.push(".__defaults__".into()))?;
            w.walk(&obj.getattr(intern!(py, "__kwdefaults__"))?, enc)
                .inspect_err(|_| w.path.push(".__kwdefaults__".into()))?;
            w.closure(obj, &code, enc)?;
            w.globals_read(obj, &code, enc)
        })
    }

    /// A class that cannot be found by name: its name, then the digest of its bases and
    /// namespace (`joblite.hashing._registry.class_content`), walked once per walk and in a
    /// context of its own (a fresh cycle stack), so the digest does not depend on where the
    /// class is met and a list of many instances walks their class once.
    fn class_by_value(
        &mut self,
        ty: &Bound<'py, PyType>,
        module: &str,
        qualname: &str,
        strict: bool,
        enc: &mut Encoder,
    ) -> PyResult<()> {
        let py = self.py;
        let key = ty.as_ptr() as usize;
        if let Some((_, digest)) = self.classes.get(&key) {
            enc.tag(CLASS_BY_VALUE);
            enc.bytes(module.as_bytes());
            enc.bytes(qualname.as_bytes());
            enc.raw(digest);
            return Ok(());
        }
        if let Some(level) = self.class_stack.iter().rposition(|&k| k == key) {
            enc.tag(CLASS_BY_VALUE);
            enc.bytes(module.as_bytes());
            enc.bytes(qualname.as_bytes());
            // met again while its own namespace is walked (an enum's members, a method that
            // names its class, a base class's registry of subclasses): a back-reference
            // counted from the innermost class, so it reads the same at any depth
            enc.tag(CLASS_BACKREF);
            enc.len(self.class_stack.len() - level);
            self.class_escape = self.class_escape.min(level);
            return Ok(());
        }
        let content = CLASS_CONTENT.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("joblite.hashing._registry")?
                .getattr("class_content")?
                .unbind())
        })?;
        let content = content.bind(py).call1((ty,))?;
        let mut sub = Encoder::bare(Algorithm::Blake3);
        let level = self.class_stack.len();
        let outer_stack = std::mem::take(&mut self.on_stack);
        let outer_escape = std::mem::replace(&mut self.class_escape, usize::MAX);
        self.class_stack.push(key);
        let walked = self.own_scope(|w| w.walk(&content, &mut sub));
        self.class_stack.pop();
        self.on_stack = outer_stack;
        let escape = std::mem::replace(&mut self.class_escape, outer_escape);
        self.class_escape = self.class_escape.min(escape);
        if let Err(err) = walked {
            let unhashable = UNHASHABLE.import(py, "joblite.exceptions", "UnhashableError")?;
            if err.is_instance(py, unhashable) {
                let inner: String = self.path.iter().rev().map(String::as_str).collect();
                self.path.clear();
                if strict {
                    // Never refuse what joblib hashes (it keys a class by its name): key it so,
                    // and say so, as for a cached closure that captured such a value.
                    let message = format!(
                        "{qualname} is defined in a function or a script, so joblite keys it by \
                         what it does, but its namespace holds a value that cannot be hashed (at \
                         {qualname}{inner}: {}); it is keyed by its name alone, as joblib does, \
                         so an edited class, or two classes of one factory, may share cached \
                         results. Teach joblite that type with joblite.register_hash_handler.",
                        err.value(py)
                            .getattr("reason")
                            .map(|r| r.to_string())
                            .unwrap_or_else(|_| err.value(py).to_string())
                    );
                    let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
                    let text =
                        std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
                    PyErr::warn(py, &category, &text, 1)?;
                }
                enc.tag(tag::GLOBAL);
                enc.bytes(module.as_bytes());
                enc.bytes(qualname.as_bytes());
                return Ok(());
            }
            self.path.push(format!(".<class {qualname}>"));
            return Err(err);
        }
        let digest = sub.finish_reset();
        enc.tag(CLASS_BY_VALUE);
        enc.bytes(module.as_bytes());
        enc.bytes(qualname.as_bytes());
        enc.raw(&digest);
        if escape >= level {
            // no reference to a class outside this one: the digest is the same wherever the
            // class is met, so it is kept for the rest of the walk
            self.classes
                .insert(key, (ty.clone().into_any().unbind(), digest));
        }
        Ok(())
    }

    /// The values captured by a function's closure, in the order of `co_freevars`.
    fn closure(
        &mut self,
        obj: &Bound<'py, PyAny>,
        code: &Bound<'py, PyAny>,
        enc: &mut Encoder,
    ) -> PyResult<()> {
        let py = self.py;
        let cells = obj.getattr(intern!(py, "__closure__"))?;
        if cells.is_none() {
            enc.tag(tag::ABSENT);
            return Ok(());
        }
        let cells = cells.cast::<PyTuple>()?;
        let names = code.getattr(intern!(py, "co_freevars"))?;
        let names = names.cast::<PyTuple>()?;
        enc.tag(tag::TUPLE);
        enc.len(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            match cell.getattr(intern!(py, "cell_contents")) {
                Ok(value) => self.walk(&value, enc).inspect_err(|_| {
                    let name = names
                        .get_item(i)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| i.to_string());
                    self.path.push(format!(".<captured {name}>"));
                })?,
                Err(_) => enc.tag(tag::ABSENT), // a cell not assigned yet
            }
        }
        Ok(())
    }

    /// The globals a function's code reads (nested code included), sorted by name; modules,
    /// names not defined (builtins) and the function itself are left out.
    fn globals_read(
        &mut self,
        obj: &Bound<'py, PyAny>,
        code: &Bound<'py, PyAny>,
        enc: &mut Encoder,
    ) -> PyResult<()> {
        let py = self.py;
        let mut names: Vec<String> = Vec::new();
        collect_names(code, &mut names)?;
        names.sort_unstable();
        names.dedup();
        let globals = obj.getattr(intern!(py, "__globals__"))?;
        let globals = globals.cast::<PyDict>()?;
        let module_type = &raw mut ffi::PyModule_Type;
        let mut read: Vec<(String, Bound<'py, PyAny>)> = Vec::new();
        for name in names {
            if let Some(value) = globals.get_item(&name)? {
                if value.is(obj) || value.get_type().as_ptr() == module_type.cast() {
                    continue;
                }
                read.push((name, value));
            }
        }
        enc.len(read.len());
        for (name, value) in &read {
            enc.bytes(name.as_bytes());
            self.walk(value, enc)
                .inspect_err(|_| self.path.push(format!(".<global {name}>")))?;
        }
        Ok(())
    }

    /// A code object: bytecode, the names it uses and its constants (nested code included).
    fn code(&mut self, code: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        let co_code = code.getattr(intern!(py, "co_code"))?;
        enc.bytes(co_code.cast::<PyBytes>()?.as_bytes());
        // The signature: `lambda *a: a` and `lambda a: a` share their bytecode, as do
        // `lambda a=1, b=2: a - b` and `lambda b=1, a=2: b - a` (called with keywords).
        let count =
            |name: &Bound<'py, PyString>| -> PyResult<usize> { code.getattr(name)?.extract() };
        let argcount = count(intern!(py, "co_argcount"))?;
        let posonly = count(intern!(py, "co_posonlyargcount"))?;
        let kwonly = count(intern!(py, "co_kwonlyargcount"))?;
        let flags: u64 = code.getattr(intern!(py, "co_flags"))?.extract()?;
        let flags = flags & CALL_FLAGS;
        enc.len(argcount);
        enc.len(posonly);
        enc.len(kwonly);
        enc.u64(flags);
        let nargs =
            argcount + kwonly + usize::from(flags & 0x04 != 0) + usize::from(flags & 0x08 != 0);
        let varnames = code.getattr(intern!(py, "co_varnames"))?;
        let varnames = varnames.cast::<PyTuple>()?;
        let nargs = nargs.min(varnames.len());
        enc.len(nargs);
        for name in varnames.iter().take(nargs) {
            enc.bytes(name.cast::<PyString>()?.to_str()?.as_bytes());
        }
        self.walk(&code.getattr(intern!(py, "co_names"))?, enc)?;
        let consts = code.getattr(intern!(py, "co_consts"))?;
        let consts = consts.cast::<PyTuple>()?;
        enc.len(consts.len());
        let code_type = code.get_type();
        for c in consts.iter() {
            if c.get_type().is(&code_type) {
                self.code(&c, enc)?;
            } else {
                self.walk(&c, enc)?;
            }
        }
        Ok(())
    }

    /// Anything else: walk what pickle would store for it (`copyreg.dispatch_table`, then
    /// `__reduce_ex__(5)`).
    fn reduction(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        let py = self.py;
        let dispatch = COPYREG_DISPATCH.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
            let table = py.import("copyreg")?.getattr("dispatch_table")?;
            Ok(table.cast_into::<PyDict>()?.unbind())
        })?;
        let reduced = match dispatch.bind(py).get_item(obj.get_type())? {
            Some(reducer) => reducer.call1((obj,)),
            None => obj.call_method1(intern!(py, "__reduce_ex__"), (5,)),
        };
        let reduced = reduced.map_err(|err| {
            if !is_cannot_pickle(py, &err) {
                return err; // KeyboardInterrupt, a bug in __reduce__: the caller's to see
            }
            let ty = obj
                .get_type()
                .fully_qualified_name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into());
            let reason = format!(
                "objects of type '{ty}' cannot be hashed: they cannot be pickled ({})",
                err.value(py)
            );
            unhashable(py, reason, Some(err))
        })?;
        if let Ok(name) = reduced.cast::<PyString>() {
            // A global reference, e.g. a builtin function or a module-level singleton.
            let module = obj
                .getattr(intern!(py, "__module__"))
                .and_then(|m| Ok(m.str()?.to_string()))
                .unwrap_or_default();
            let name = name.to_str()?;
            // a script is "__mp_main__" in a spawned worker: one name for both, and its
            // objects are not found by name from one run to the next (it may be edited)
            let script = module == "__main__" || module == "__mp_main__";
            let module = if script { "__main__" } else { module.as_str() };
            if script || !found_by_name(py, obj, module, name) {
                if let Ok(wrapped) = obj.getattr(intern!(py, "__wrapped__")) {
                    // a wrapper pickled by a name that does not lead to it (an lru_cache of a
                    // closure) or by a script's name: what it wraps is content, or two such
                    // wrappers share a key
                    enc.tag(WRAPPED);
                    enc.bytes(module.as_bytes());
                    enc.bytes(name.as_bytes());
                    return self
                        .walk(&wrapped, enc)
                        .inspect_err(|_| self.path.push(".__wrapped__".into()));
                }
            }
            enc.tag(tag::GLOBAL);
            enc.bytes(module.as_bytes());
            enc.bytes(name.as_bytes());
            return Ok(());
        }
        let parts = reduced.cast::<PyTuple>().map_err(|_| {
            let reason = format!(
                "__reduce_ex__ of '{}' returned neither a string nor a tuple",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            );
            unhashable(py, reason, None)
        })?;
        enc.tag(tag::REDUCE);
        enc.len(parts.len());
        const NAMES: [&str; 6] = [
            "<reduce callable>",
            "<reduce args>",
            "<state>",
            "<list items>",
            "<dict items>",
            "<state setter>",
        ];
        let set_list = Self::set_subclass_list(obj, parts)?;
        for (i, part) in parts.iter().enumerate() {
            let walked = if part.is_none() {
                enc.tag(tag::ABSENT);
                Ok(())
            } else if let (1, Some(list)) = (i, &set_list) {
                // a set subclass's members in hash-table order (salted by PYTHONHASHSEED,
                // and by insertion order): written as a set's, order-independent
                enc.tag(tag::TUPLE);
                enc.len(1);
                enc.tag(tag::FROZENSET);
                let members: Vec<Bound<'py, PyAny>> = list.iter().collect();
                self.unordered_members(&members, enc)
            } else if i == 3 {
                self.items(&part, true, enc)
            } else if i == 4 {
                let ordered = ORDERED_DICT.import(py, "collections", "OrderedDict")?;
                let unordered = obj.is_instance_of::<PyDict>() && !obj.is_instance(ordered)?;
                self.items(&part, !unordered, enc)
            } else {
                self.walk(&part, enc)
            };
            walked.inspect_err(|_| self.path.push(format!(".{}", NAMES[i.min(5)])))?;
        }
        Ok(())
    }

    /// The member list of a set or frozenset subclass reduced by the builtin reduction,
    /// `(type(obj), (list(obj),), state)`, in the builtin iteration order (hash-table order);
    /// None for any other reduction or an iteration order of the subclass's own, which is
    /// content.
    fn set_subclass_list(
        obj: &Bound<'py, PyAny>,
        parts: &Bound<'py, PyTuple>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let py = obj.py();
        let base = if obj.is_instance_of::<PySet>() {
            py.get_type::<PySet>()
        } else if obj.is_instance_of::<PyFrozenSet>() {
            py.get_type::<PyFrozenSet>()
        } else {
            return Ok(None);
        };
        let ty = obj.get_type();
        for name in [
            intern!(py, "__reduce__"),
            intern!(py, "__reduce_ex__"),
            intern!(py, "__iter__"),
        ] {
            if !ty.getattr(name)?.is(&base.getattr(name)?) {
                return Ok(None);
            }
        }
        if parts.len() < 2 || !parts.get_item(0)?.is(&ty) {
            return Ok(None);
        }
        let args = parts.get_item(1)?;
        let Ok(args) = args.cast_exact::<PyTuple>() else {
            return Ok(None);
        };
        if args.len() != 1 {
            return Ok(None);
        }
        Ok(args.get_item(0)?.cast_exact::<PyList>().ok().cloned())
    }

    /// The list-items or dict-items iterator of a reduction.
    fn items(
        &mut self,
        iter: &Bound<'py, PyAny>,
        ordered: bool,
        enc: &mut Encoder,
    ) -> PyResult<()> {
        let items: Vec<Bound<'py, PyAny>> = iter.try_iter()?.collect::<PyResult<_>>()?;
        if ordered {
            enc.tag(tag::ITEMS_ORDERED);
            enc.len(items.len());
            for item in &items {
                self.walk(item, enc)?;
            }
            Ok(())
        } else {
            enc.tag(tag::ITEMS_UNORDERED);
            let pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = items
                .iter()
                .map(|kv| kv.extract())
                .collect::<PyResult<_>>()?;
            self.mapping_pairs(&pairs, enc)
        }
    }
}

/// Whether the walk notes `obj` by identity when it is met again, so that which of its inputs
/// are one object changes the digest (`hash([a, a]) != hash([a, copy(a)])`): the walk's one
/// rule of what counts as shared (its branches, then [`mutable`]), asked through
/// `_core.identity_matters` by `Memory` for arguments passed twice. It mirrors the branches
/// of [`Walker::walk_inner`]: lists, dicts, sets, bytearrays and numpy arrays are noted;
/// strings, numbers, bytes, frozensets, numpy scalars, functions found by name, classes,
/// modules and memoryviews are not; a tuple is not noted itself, but one met twice meets its
/// items twice, so it counts when one of them does; anything else (a function walked by
/// value, an object walked through a handler or its reduction) counts when [`mutable`] says
/// so. tests/test_hash_sharing.py checks both levels agree for each kind of value.
fn identity_matters(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = obj.py();
    let numpy = numpy_types(py)?;
    // Tuples met through tuples (a DAG of tuples is visited once per tuple, not per path).
    let mut pending = vec![obj.clone()];
    let mut visited: HashMap<usize, (), ByAddress> = HashMap::default();
    while let Some(item) = pending.pop() {
        if let Ok(t) = item.cast_exact::<PyTuple>() {
            if visited.insert(t.as_ptr() as usize, ()).is_none() {
                if visited.len() > MAX_DEPTH * 64 {
                    return Ok(true); // more tuples than a walk would follow: assume shared
                }
                pending.extend(t.iter());
            }
            continue;
        }
        if noted_when_met_again(py, numpy, &item)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the walk notes `obj` itself (not a tuple's items): see [`identity_matters`].
fn noted_when_met_again(
    py: Python<'_>,
    numpy: Option<&NumpyTypes>,
    obj: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    if obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_none()
        || obj.is_exact_instance_of::<pyo3::types::PyBool>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyFrozenSet>()
        || obj.is_exact_instance_of::<PyComplex>()
    {
        return Ok(false);
    }
    if obj.is_exact_instance_of::<PyList>()
        || obj.is_exact_instance_of::<PyDict>()
        || obj.is_exact_instance_of::<PySet>()
        || obj.is_exact_instance_of::<PyByteArray>()
    {
        return Ok(true);
    }
    let ty = obj.get_type();
    if let Some(np) = numpy {
        if ty.is(np.ndarray.bind(py)) || ty.is(np.memmap.bind(py)) {
            return Ok(true);
        }
        if obj.is_instance(np.generic.bind(py))? {
            return Ok(false);
        }
    }
    // Taking the address of the interpreter's static type objects reads nothing.
    let function_type = &raw mut ffi::PyFunction_Type;
    let memoryview_type = &raw mut ffi::PyMemoryView_Type;
    let module_type = &raw mut ffi::PyModule_Type;
    let ty_ptr = ty.as_ptr();
    if ty_ptr == function_type.cast() {
        // a function walked by value (a lambda, a closure) is noted like any object
        let (module, qualname) = function_name(obj)?;
        if function_by_name(py, obj, module.to_str()?, qualname.to_str()?) {
            return Ok(false);
        }
        return Ok(mutable(obj));
    }
    if ty_ptr == memoryview_type.cast()
        || ty_ptr == module_type.cast()
        || obj.cast::<PyType>().is_ok()
    {
        return Ok(false);
    }
    Ok(mutable(obj))
}

/// Whether a function could change `obj` in place, for objects walked through a handler or
/// their reduction: lists, dicts, sets and bytearrays (and their subclasses), and any object
/// whose class does not hash by value: it keeps `object`'s identity hash (a user's class, a
/// `__slots__` class, a numpy `Generator`, a `deque`), sets `__hash__ = None`, or its own
/// `__hash__` refuses this object (a DataFrame, a namedtuple or frozen dataclass holding a
/// list). A class whose `__hash__` answers promises the value does not change: dtypes,
/// datetimes, Decimals, frozen dataclasses, namedtuples of numbers are left out.
///
/// The answer depends on the type alone except for classes with a `__hash__` of their own
/// (which must also answer for this object), so it is kept per type in [`TYPE_VERDICTS`]
/// where the type's lookup of `__hash__` is plain enough to be decided once (see
/// [`type_verdict`]).
fn mutable(obj: &Bound<'_, PyAny>) -> bool {
    if obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyDict>()
        || obj.is_instance_of::<PySet>()
        || obj.is_instance_of::<PyByteArray>()
    {
        return true;
    }
    match cached_verdict(obj) {
        Some(Verdict::Mutable) => true,
        Some(Verdict::HashDecides) => obj.hash().is_err(),
        None => mutable_by_lookup(obj),
    }
}

/// [`mutable`] asked of the object itself: the definition that [`type_verdict`] decides once
/// per type where it can.
fn mutable_by_lookup(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    match (
        obj.get_type().getattr(intern!(py, "__hash__")),
        object_hash(py),
    ) {
        // (a `__hash__` that refuses, as pandas' DataFrame's does, says mutable too)
        (Ok(own), Ok(default)) => own.is_none() || own.is(default) || obj.hash().is_err(),
        _ => true,
    }
}

fn object_hash(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    OBJECT_HASH
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import(intern!(py, "builtins"))?
                .getattr(intern!(py, "object"))?
                .getattr(intern!(py, "__hash__"))?
                .unbind())
        })
        .map(|h| h.bind(py))
}

/// [`mutable`] of every instance of one type, as far as the type decides it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Mutable,
    /// Mutable when its (value-based) `__hash__` refuses this object.
    HashDecides,
}

/// Slots of the per-thread verdict cache (direct-mapped by type address).
const VERDICT_SLOTS: usize = 64;

thread_local! {
    /// (type address, its version tag, verdict), per thread (the GIL serialises the threads
    /// that could share one). CPython gives a type a new version tag whenever it or a base is
    /// modified (`C.__hash__ = ...`, `C.__bases__ = ...`) and never hands a tag out twice, so
    /// an entry whose address and tag both match describes the type as it is now (the same
    /// guarantee CPython's own method cache rests on); a freed type's address reused by a new
    /// type comes with a new tag. No type is kept alive.
    static TYPE_VERDICTS: std::cell::RefCell<[(usize, u32, Verdict); VERDICT_SLOTS]> =
        const { std::cell::RefCell::new([(0, 0, Verdict::Mutable); VERDICT_SLOTS]) };
}

/// The version tag of a type, when it has a valid one.
fn version_tag(ty: &Bound<'_, PyType>) -> Option<u32> {
    let tp = ty.as_type_ptr();
    // SAFETY: `ty` is a live type object (the Bound holds a strong reference) and the GIL is
    // held, so its flags and version tag are initialised and not written concurrently.
    let (flags, tag) = unsafe { ((*tp).tp_flags, (*tp).tp_version_tag) };
    (flags & ffi::Py_TPFLAGS_VALID_VERSION_TAG != 0 && tag != 0).then_some(tag)
}

/// The verdict for the type of `obj` from the cache, computed and kept on a miss; `None` when
/// the type does not decide it alone (then every object is asked).
fn cached_verdict(obj: &Bound<'_, PyAny>) -> Option<Verdict> {
    let ty = obj.get_type();
    let address = ty.as_ptr() as usize;
    let slot = (address >> 6) % VERDICT_SLOTS;
    let tag = version_tag(&ty)?;
    let hit = TYPE_VERDICTS.with(|cache| {
        let entry = cache.borrow()[slot];
        (entry.0 == address && entry.1 == tag).then_some(entry.2)
    });
    if hit.is_some() {
        return hit;
    }
    let verdict = type_verdict(&ty)?;
    // Deciding ran lookups in the type's namespaces only: keep it when the type was not
    // modified meanwhile.
    if version_tag(&ty) == Some(tag) {
        TYPE_VERDICTS.with(|cache| cache.borrow_mut()[slot] = (address, tag, verdict));
    }
    Some(verdict)
}

/// The first value named `name` in the namespaces of `ty`'s method resolution order (what
/// looking the name up on the class finds when its metaclass is `type`), or `None`.
fn type_lookup<'py>(
    ty: &Bound<'py, PyType>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    let py = ty.py();
    let mro = ty.getattr(intern!(py, "__mro__")).ok()?;
    for base in mro.cast_into::<PyTuple>().ok()?.iter() {
        let namespace = base.getattr(intern!(py, "__dict__")).ok()?;
        if namespace.contains(name).ok()? {
            return namespace.get_item(name).ok();
        }
    }
    None
}

/// [`mutable_by_lookup`] decided from the type alone, where `cls.__hash__` cannot depend on
/// anything but the type's namespaces: the class is made by `type` itself (no metaclass that
/// could answer the lookup its own way), and the `__hash__` found is `None`, a slot wrapper or
/// a function (each looked up as itself). `None` otherwise.
fn type_verdict(ty: &Bound<'_, PyType>) -> Option<Verdict> {
    let py = ty.py();
    let type_type = &raw mut ffi::PyType_Type;
    // SAFETY: `ty` is a live type object and the GIL is held (see `version_tag`).
    if unsafe { ffi::Py_TYPE(ty.as_ptr()) } != type_type {
        return None;
    }
    let own = type_lookup(ty, intern!(py, "__hash__"))?;
    let function_type = &raw mut ffi::PyFunction_Type;
    let wrapper_type = &raw mut ffi::PyWrapperDescr_Type;
    let kind = own.get_type().as_ptr();
    if !(own.is_none() || kind == function_type.cast() || kind == wrapper_type.cast()) {
        return None; // a descriptor whose `__get__` might answer differently
    }
    let default = object_hash(py).ok()?;
    Some(if own.is_none() || own.is(default) {
        Verdict::Mutable
    } else {
        Verdict::HashDecides
    })
}

/// A function's module (`__mp_main__`, a spawned worker's name for the parent's script,
/// written `__main__`) and qualified name.
fn function_name<'py>(
    obj: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyString>)> {
    let py = obj.py();
    let mut module = obj.getattr(intern!(py, "__module__"))?.str()?;
    if module.to_str()? == "__mp_main__" {
        module = intern!(py, "__main__").clone();
    }
    let qualname = obj
        .getattr(intern!(py, "__qualname__"))?
        .cast_into::<PyString>()?;
    Ok((module, qualname))
}

/// Whether a function is walked by name (a module-level function of a real module) rather
/// than by value.
fn function_by_name(py: Python<'_>, obj: &Bound<'_, PyAny>, module: &str, qualname: &str) -> bool {
    !(qualname.contains('<') || module == "__main__") && found_by_name(py, obj, module, qualname)
}

/// Whether `obj` is what its module and qualified name lead to (as pickle finds a function
/// or class by reference); anything else (a function or class made by a factory under a fixed
/// name, a definition later replaced under its name, a module not in `sys.modules`) is
/// hashed by value.
fn found_by_name(py: Python<'_>, obj: &Bound<'_, PyAny>, module: &str, qualname: &str) -> bool {
    let find = || -> PyResult<bool> {
        let modules = py
            .import(intern!(py, "sys"))?
            .getattr(intern!(py, "modules"))?;
        let Some(mut found) = modules.cast::<PyDict>()?.get_item(module)? else {
            return Ok(false);
        };
        for part in qualname.split('.') {
            found = found.getattr(part)?;
        }
        Ok(found.is(obj))
    };
    find().unwrap_or(false)
}

/// An address in the current stack frame (stacks grow down on every supported platform).
#[inline(never)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Bytes of native stack a walk starting at `base` may use: what is left of this thread's
/// stack less a red zone for the Python code the walk calls (reductions, handlers), where the
/// stack's bounds are known; 1 MiB elsewhere.
fn stack_budget(base: usize) -> usize {
    #[cfg(target_os = "linux")]
    if let Some(lowest) = linux_stack_lowest() {
        let remaining = base.saturating_sub(lowest);
        return remaining - (remaining / 4).min(256 << 10);
    }
    let _ = base;
    1 << 20
}

#[cfg(target_os = "linux")]
thread_local! {
    /// The lowest address of this thread's stack, looked up once per thread: for the main
    /// thread glibc reads `/proc/self/maps` to answer, which costs far more than a hash.
    static STACK_LOWEST: std::cell::Cell<Option<Option<usize>>> = const { std::cell::Cell::new(None) };
}

/// The lowest address of the current thread's stack (cached per thread).
#[cfg(target_os = "linux")]
fn linux_stack_lowest() -> Option<usize> {
    STACK_LOWEST.with(|cell| {
        if let Some(known) = cell.get() {
            return known;
        }
        let found = query_stack_lowest();
        cell.set(Some(found));
        found
    })
}

#[cfg(target_os = "linux")]
fn query_stack_lowest() -> Option<usize> {
    // SAFETY: `attr` is a plain C struct that pthread_getattr_np initialises on success (and
    // that we destroy only then); `addr` and `size` are out-parameters of the right types.
    // pthread_self() is always a valid handle for the calling thread.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() {
            return None;
        }
        Some(addr as usize)
    }
}

/// Every name in `co_names` of a code object and of the code objects among its constants.
fn collect_names(code: &Bound<'_, PyAny>, out: &mut Vec<String>) -> PyResult<()> {
    let py = code.py();
    let names = code.getattr(intern!(py, "co_names"))?;
    for name in names.cast::<PyTuple>()?.iter() {
        out.push(name.cast::<PyString>()?.to_str()?.to_owned());
    }
    let code_type = code.get_type();
    for c in code
        .getattr(intern!(py, "co_consts"))?
        .cast::<PyTuple>()?
        .iter()
    {
        if c.get_type().is(&code_type) {
            collect_names(&c, out)?;
        }
    }
    Ok(())
}

/// Whether passing `obj` twice differs from passing an equal copy (see [`identity_matters`]).
#[pyfunction]
#[pyo3(name = "identity_matters")]
fn identity_matters_py(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    identity_matters(obj)
}

/// Content hash of `obj`; see `joblite.hash` for the documented behaviour.
#[pyfunction]
#[pyo3(signature = (obj, hash_name = "blake3", coerce_mmap = false))]
fn hash(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    hash_name: &str,
    coerce_mmap: bool,
) -> PyResult<String> {
    // memmaps are always hashed as the arrays they are (coerce_mmap is accepted for joblib
    // compatibility; joblib's default distinguished them, which made equal data miss).
    let _ = coerce_mmap;
    let algorithm = Algorithm::from_name(hash_name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "Valid options for 'hash_name' are [{}]. Got hash_name='{hash_name}' instead.",
            Algorithm::NAMES.map(|n| format!("'{n}'")).join(", ")
        ))
    })?;
    let stack_base = stack_position();
    let mut walker = Walker {
        py,
        numpy: numpy_types(py)?,
        dtypes: Vec::new(),
        on_stack: HashMap::default(),
        seen: HashMap::default(),
        met: 0,
        in_tuple: 0,
        depth: 0,
        path: Vec::new(),
        spare: Vec::new(),
        handlers: HashMap::new(),
        classes: HashMap::new(),
        stack_base,
        stack_budget: stack_budget(stack_base),
        class_stack: Vec::new(),
        class_escape: usize::MAX,
    };
    let mut enc = Encoder::new(algorithm);
    match walker.walk(obj, &mut enc) {
        Ok(()) => Ok(enc.finish_hex()),
        Err(err) => {
            if walker.path.is_empty() {
                return Err(err);
            }
            let path: String = walker.path.iter().rev().map(String::as_str).collect();
            // "Cannot hash this" gets the path inside `obj` (in front of any path a nested
            // hash of a handler put there); every other exception passes through unchanged.
            let cls = UNHASHABLE.import(py, "joblite.exceptions", "UnhashableError")?;
            if err.is_instance(py, cls) {
                let moved = err.value(py).call_method1("_under", (path,))?;
                let moved = PyErr::from_value(moved);
                moved.set_cause(py, err.cause(py));
                return Err(moved);
            }
            if err.is_instance_of::<PyRecursionError>(py) {
                let message = format!("at obj{path}: {}", err.value(py));
                return Err(PyRecursionError::new_err(message));
            }
            Err(err)
        }
    }
}

/// A blake3 digest of a stream of buffers, for the content handlers of `joblite.hashing`: the
/// digest depends only on the concatenated bytes, never on how they were split between
/// calls (so a column hashes the same whatever its chunking).
#[pyclass(module = "joblite._core")]
struct StreamHasher {
    enc: Option<Encoder>,
    length: u64,
}

#[pymethods]
impl StreamHasher {
    #[new]
    fn new() -> Self {
        Self {
            enc: Some(Encoder::bare(Algorithm::Blake3)),
            length: 0,
        }
    }

    /// Appends the bytes of a C-contiguous buffer (bytes, memoryview, numpy array, Arrow
    /// buffer); large ones are hashed on several threads with the GIL released.
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let view = export_raw(data)?;
        let bytes = raw_bytes_of(&view)?;
        let enc = self
            .enc
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("digest() was already taken"))?;
        if bytes.len() >= PARALLEL_THRESHOLD {
            // The export keeps the memory alive and in place until `view` is dropped.
            py.detach(|| enc.raw(bytes));
        } else {
            enc.raw(bytes);
        }
        self.length += bytes.len() as u64;
        Ok(())
    }

    /// The number of bytes appended so far.
    #[getter]
    fn length(&self) -> u64 {
        self.length
    }

    /// The 32-byte digest of everything appended (prefixed by its length); ends the stream.
    fn digest<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut enc = self
            .enc
            .take()
            .ok_or_else(|| PyValueError::new_err("digest() was already taken"))?;
        enc.u64(self.length);
        Ok(PyBytes::new(py, &enc.finish()))
    }
}

/// The buffers of one Arrow string/binary array as handed over from Python: a validity
/// bitmap (or None), the offsets or views buffer, then the data buffer(s) (None: empty).
struct StringBuffers {
    validity: Option<PyUntypedBuffer>,
    main: PyUntypedBuffer,
    data: Vec<Option<PyUntypedBuffer>>,
}

fn optional_export(obj: &Bound<'_, PyAny>) -> PyResult<Option<PyUntypedBuffer>> {
    if obj.is_none() {
        Ok(None)
    } else {
        export_raw(obj).map(Some)
    }
}

/// The bytes of an optional export (None: no buffer, empty).
fn optional_bytes(buf: Option<&PyUntypedBuffer>) -> PyResult<Option<&[u8]>> {
    buf.map(raw_bytes_of).transpose()
}

impl StringBuffers {
    fn get(buffers: &[Bound<'_, PyAny>]) -> PyResult<Self> {
        let [validity, main, data @ ..] = buffers else {
            return Err(PyValueError::new_err(
                "an Arrow string array needs a validity and an offsets/views buffer",
            ));
        };
        Ok(Self {
            validity: optional_export(validity)?,
            main: export_raw(main)?,
            data: data.iter().map(optional_export).collect::<PyResult<_>>()?,
        })
    }

    fn strings(&self, kind: &str, offset: usize, len: usize) -> PyResult<Strings<'_>> {
        let main = raw_bytes_of(&self.main)?;
        let mut data = self
            .data
            .iter()
            .map(|buf| Ok(optional_bytes(buf.as_ref())?.unwrap_or_default()))
            .collect::<PyResult<Vec<&[u8]>>>()?;
        let layout = match kind {
            "offsets32" | "offsets64" => {
                let (offsets, data) = (main, data.first().copied().unwrap_or_default());
                if kind == "offsets32" {
                    Layout::Offsets32 { offsets, data }
                } else {
                    Layout::Offsets64 { offsets, data }
                }
            }
            "views" => Layout::Views {
                views: main,
                buffers: std::mem::take(&mut data),
            },
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown string layout {kind:?}"
                )))
            }
        };
        let validity = optional_bytes(self.validity.as_ref())?;
        Strings::new(layout, validity, offset, len).map_err(malformed)
    }
}

fn malformed(err: Malformed) -> PyErr {
    PyValueError::new_err(format!("malformed Arrow array: {err}"))
}

/// The encoder of a `StreamHasher` that is still open.
fn open_encoder<'a>(hasher: &'a mut PyRefMut<'_, StreamHasher>) -> PyResult<&'a mut StreamHasher> {
    if hasher.enc.is_none() {
        return Err(PyValueError::new_err("digest() was already taken"));
    }
    Ok(&mut *hasher)
}

/// Runs `f` on sinks over the encoders of four stream hashers with the GIL released, then
/// adds what each received to its length.
fn with_sinks<const N: usize>(
    py: Python<'_>,
    hashers: [&Bound<'_, StreamHasher>; N],
    f: impl FnOnce(&mut [Sink<'_>; N]) -> Result<(), Malformed> + Send,
) -> PyResult<()> {
    let mut refs: Vec<PyRefMut<'_, StreamHasher>> = hashers
        .iter()
        .map(|h| h.try_borrow_mut())
        .collect::<Result<_, _>>()?;
    let mut opened: Vec<&mut StreamHasher> =
        refs.iter_mut().map(open_encoder).collect::<PyResult<_>>()?;
    let encoders: Vec<&mut Encoder> = opened
        .iter_mut()
        .map(|h| h.enc.as_mut().expect("checked open"))
        .collect();
    let (result, written) = py.detach(move || {
        let sinks: Vec<Sink<'_>> = encoders.into_iter().map(Sink::new).collect();
        let Ok(mut sinks) = <[Sink<'_>; N]>::try_from(sinks) else {
            unreachable!("one sink per hasher")
        };
        let result = f(&mut sinks);
        let written = sinks.map(Sink::finish);
        (result, written)
    });
    for (h, n) in opened.iter_mut().zip(written) {
        h.length += n;
    }
    result.map_err(malformed)
}

/// Feeds the streams of one Arrow string/binary array (`kind`: "offsets32", "offsets64" or
/// "views"; `buffers` as pyarrow's `Array.buffers()`) to `nulls`, `lengths` and `data`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn arrow_feed_strings(
    py: Python<'_>,
    kind: &str,
    buffers: Vec<Bound<'_, PyAny>>,
    offset: usize,
    length: usize,
    row_base: u64,
    nulls: &Bound<'_, StreamHasher>,
    lengths: &Bound<'_, StreamHasher>,
    data: &Bound<'_, StreamHasher>,
) -> PyResult<()> {
    let views = StringBuffers::get(&buffers)?;
    let strings = views.strings(kind, offset, length)?;
    with_sinks(py, [nulls, lengths, data], |[n, l, d]| {
        crate::hash::arrow::feed_strings(&strings, row_base, n, l, d)
    })
}

/// The ids of one dictionary column's distinct string/binary values, chunk after chunk.
#[pyclass(module = "joblite._core")]
struct ArrowDictionaryIds {
    inner: DictionaryIds,
}

#[pymethods]
impl ArrowDictionaryIds {
    #[new]
    fn new() -> Self {
        Self {
            inner: DictionaryIds::new(),
        }
    }

    /// Feeds one chunk: its indices (`index_width` bytes, signed or not; `index_buffers` as
    /// pyarrow's `indices.buffers()`) and its dictionary (as `arrow_feed_strings` takes it).
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        py: Python<'_>,
        index_width: usize,
        index_signed: bool,
        index_buffers: Vec<Bound<'_, PyAny>>,
        offset: usize,
        length: usize,
        kind: &str,
        value_buffers: Vec<Bound<'_, PyAny>>,
        value_offset: usize,
        value_length: usize,
        row_base: u64,
        nulls: &Bound<'_, StreamHasher>,
        ids: &Bound<'_, StreamHasher>,
        lengths: &Bound<'_, StreamHasher>,
        data: &Bound<'_, StreamHasher>,
    ) -> PyResult<()> {
        let [validity, buf] = &index_buffers[..] else {
            return Err(PyValueError::new_err(
                "dictionary indices need a validity and a values buffer",
            ));
        };
        let (validity, buf) = (optional_export(validity)?, export_raw(buf)?);
        let indices = Indices::new(
            raw_bytes_of(&buf)?,
            index_width,
            index_signed,
            optional_bytes(validity.as_ref())?,
            offset,
            length,
        )
        .map_err(malformed)?;
        let values = StringBuffers::get(&value_buffers)?;
        let dictionary = values.strings(kind, value_offset, value_length)?;
        let inner = &mut self.inner;
        with_sinks(py, [nulls, ids, lengths, data], |[n, i, l, d]| {
            inner.feed(&indices, &dictionary, row_base, n, i, l, d)
        })
    }
}

/// `(first, step)` when the C-contiguous buffer `values` of native `int64`s is an arithmetic
/// progression (wrapping), else None: the canonical content of an `int64` pandas Index
/// (docs/hash.md). Large buffers are checked with the GIL released.
#[pyfunction]
fn int64_progression(py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<Option<(i64, i64)>> {
    let view = export_raw(values)?;
    if view.item_size() != 8 {
        return Err(PyValueError::new_err(
            "int64_progression needs 8-byte items",
        ));
    }
    let bytes = raw_bytes_of(&view)?;
    if bytes.len() >= PARALLEL_THRESHOLD {
        Ok(py.detach(|| crate::hash::int64_progression(bytes)))
    } else {
        Ok(crate::hash::int64_progression(bytes))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hash, m)?)?;
    m.add_function(wrap_pyfunction!(int64_progression, m)?)?;
    m.add_function(wrap_pyfunction!(identity_matters_py, m)?)?;
    m.add_class::<StreamHasher>()?;
    m.add_class::<ArrowDictionaryIds>()?;
    m.add_function(wrap_pyfunction!(arrow_feed_strings, m)?)?;
    m.add(
        "HASH_ENCODING_VERSION",
        String::from_utf8_lossy(crate::hash::ENCODING_VERSION).trim_end_matches('\0'),
    )?;
    Ok(())
}
