//! `_core.hash`: the object walk of `joblite.hash`.
//!
//! Builtin types and numpy arrays have fast paths that write a type tag, a length prefix and
//! the value's bytes into an [`Encoder`]; anything else is walked through its pickle reduction.
//! The byte-level encoding (and the multi-threaded hashing of large buffers) lives in
//! `crate::hash`; this module only looks at Python objects. The encoding is specified in
//! `docs/hash.md`.

use std::collections::HashMap;
use std::os::raw::c_int;

use pyo3::exceptions::{PyRecursionError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyByteArray, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};

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
static ORDERED_DICT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

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

/// A dict item (key, value) or a set member (key, None).
type Pair<'py> = (Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

struct Walker<'py> {
    py: Python<'py>,
    numpy: Option<&'py NumpyTypes>,
    /// dtype address -> info; dtypes of builtin types are singletons, so this stays tiny.
    dtypes: Vec<(usize, DtypeInfo)>,
    /// Mutable containers and reduced objects currently being walked -> their position.
    on_stack: HashMap<usize, usize>,
    depth: usize,
    /// Where an error happened, innermost segment first (filled while unwinding).
    path: Vec<String>,
    /// Spare sub-encoders for dict items and set members, reused to avoid allocations.
    spare: Vec<Encoder>,
}

impl<'py> Walker<'py> {
    fn walk(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
        if self.depth >= MAX_DEPTH {
            return Err(PyRecursionError::new_err(format!(
                "object nesting is deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth += 1;
        let result = self.walk_inner(obj, enc);
        self.depth -= 1;
        result
    }

    fn walk_inner(&mut self, obj: &Bound<'py, PyAny>, enc: &mut Encoder) -> PyResult<()> {
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
            for (i, item) in t.iter().enumerate() {
                self.walk(&item, enc)
                    .inspect_err(|_| self.path.push(format!("[{i}]")))?;
            }
            return Ok(());
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            return self.tracked(obj, enc, |w, enc| {
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
            return self.tracked(obj, enc, |w, enc| {
                enc.tag(tag::DICT);
                let pairs: Vec<Pair<'py>> = d.iter().map(|(k, v)| (k, Some(v))).collect();
                w.unordered_pairs(&pairs, enc)
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
            enc.tag(tag::SET);
            let members: Vec<Pair<'py>> = s.iter().map(|k| (k, None)).collect();
            return self.unordered_pairs(&members, enc);
        }
        if let Ok(s) = obj.cast_exact::<PyFrozenSet>() {
            enc.tag(tag::FROZENSET);
            let members: Vec<Pair<'py>> = s.iter().map(|k| (k, None)).collect();
            return self.unordered_pairs(&members, enc);
        }
        if let Ok(b) = obj.cast_exact::<PyByteArray>() {
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
            enc.tag(tag::GLOBAL);
            enc.bytes(ty.module()?.to_str()?.as_bytes());
            enc.bytes(ty.qualname()?.to_str()?.as_bytes());
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
        self.tracked(obj, enc, |w, enc| w.reduction(obj, enc))
    }

    /// Walks a mutable container or reduced object, writing a back-reference instead when it
    /// is already being walked (a cycle), so self-referential objects get a correct hash.
    fn tracked(
        &mut self,
        obj: &Bound<'py, PyAny>,
        enc: &mut Encoder,
        body: impl FnOnce(&mut Self, &mut Encoder) -> PyResult<()>,
    ) -> PyResult<()> {
        let key = obj.as_ptr() as usize;
        if let Some(&position) = self.on_stack.get(&key) {
            enc.tag(tag::BACKREF);
            enc.len(position);
            return Ok(());
        }
        let position = self.on_stack.len();
        self.on_stack.insert(key, position);
        let result = body(self, enc);
        self.on_stack.remove(&key);
        result
    }

    /// Writes a count, then the sorted digests of each (key, value) pair or member, so the
    /// result does not depend on iteration order (and never on Python's salted `hash()`).
    fn unordered_pairs(&mut self, pairs: &[Pair<'py>], enc: &mut Encoder) -> PyResult<()> {
        enc.len(pairs.len());
        // Digests as pairs of big-endian u128: integer order is byte order, and much faster
        // to sort than memcmp on byte arrays.
        let mut digests: Vec<(u128, u128)> = Vec::with_capacity(pairs.len());
        let mut sub = self
            .spare
            .pop()
            .unwrap_or_else(|| Encoder::bare(Algorithm::Blake3));
        for (key, value) in pairs {
            let walked = self.walk(key, &mut sub).and_then(|()| match value {
                Some(v) => self.walk(v, &mut sub),
                None => Ok(()),
            });
            if let Err(err) = walked {
                let shown = key.repr().map(|r| r.to_string()).unwrap_or_default();
                let shown: String = shown.chars().take(40).collect();
                self.path.push(format!("[{shown}]"));
                return Err(err);
            }
            let d = sub.finish_reset();
            let (hi, lo) = d.split_at(16);
            digests.push((
                u128::from_be_bytes(hi.try_into().unwrap_or_default()),
                u128::from_be_bytes(lo.try_into().unwrap_or_default()),
            ));
        }
        self.spare.push(sub);
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
        let module = obj.getattr(intern!(py, "__module__"))?;
        let module = module.str()?;
        let mut module = module.to_str()?;
        if module == "__mp_main__" {
            module = "__main__"; // a spawned worker's name for the parent's script
        }
        let qualname = obj.getattr(intern!(py, "__qualname__"))?;
        let qualname = qualname.cast::<PyString>()?.to_str()?;
        enc.tag(tag::FUNCTION);
        enc.bytes(module.as_bytes());
        enc.bytes(qualname.as_bytes());
        if !(qualname.contains('<') || module == "__main__") {
            enc.len(0);
            return Ok(());
        }
        self.tracked(obj, enc, |w, enc| {
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
            let ty = obj
                .get_type()
                .fully_qualified_name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into());
            let wrapped = PyTypeError::new_err(format!(
                "objects of type '{ty}' cannot be hashed: they cannot be pickled ({err})"
            ));
            wrapped.set_cause(py, Some(err));
            wrapped
        })?;
        if let Ok(name) = reduced.cast::<PyString>() {
            // A global reference, e.g. a builtin function or a module-level singleton.
            let module = obj
                .getattr(intern!(py, "__module__"))
                .and_then(|m| Ok(m.str()?.to_string()))
                .unwrap_or_default();
            enc.tag(tag::GLOBAL);
            enc.bytes(module.as_bytes());
            enc.bytes(name.to_str()?.as_bytes());
            return Ok(());
        }
        let parts = reduced.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "__reduce_ex__ of '{}' returned neither a string nor a tuple",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
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
        for (i, part) in parts.iter().enumerate() {
            let walked = if part.is_none() {
                enc.tag(tag::ABSENT);
                Ok(())
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
            let pairs: Vec<Pair<'py>> = items
                .iter()
                .map(|kv| {
                    let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = kv.extract()?;
                    Ok((k, Some(v)))
                })
                .collect::<PyResult<_>>()?;
            self.unordered_pairs(&pairs, enc)
        }
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
    let mut walker = Walker {
        py,
        numpy: numpy_types(py)?,
        dtypes: Vec::new(),
        on_stack: HashMap::new(),
        depth: 0,
        path: Vec::new(),
        spare: Vec::new(),
    };
    let mut enc = Encoder::new(algorithm);
    match walker.walk(obj, &mut enc) {
        Ok(()) => Ok(enc.finish_hex()),
        Err(err) => {
            if walker.path.is_empty() {
                return Err(err);
            }
            let path: String = walker.path.iter().rev().map(String::as_str).collect();
            let message = format!("joblite.hash: at obj{path}: {}", err.value(py));
            let wrapped = if err.is_instance_of::<PyRecursionError>(py) {
                PyRecursionError::new_err(message)
            } else if err.is_instance_of::<PyValueError>(py) {
                PyValueError::new_err(message)
            } else {
                PyTypeError::new_err(message)
            };
            wrapped.set_cause(py, err.cause(py));
            Err(wrapped)
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hash, m)?)?;
    m.add(
        "HASH_ENCODING_VERSION",
        String::from_utf8_lossy(crate::hash::ENCODING_VERSION).trim_end_matches('\0'),
    )?;
    Ok(())
}
