//! Python buffers as Rust slices: the one place where a buffer export (a `bytes`, a
//! `bytearray`, a numpy array, a memory map) becomes a `&[u8]` / `&mut [u8]` that the core
//! reads or writes with the GIL released, and where a new `bytes` object is filled by Rust.
//! The SAFETY argument for all of them is written here once.

use pyo3::buffer::{PyBuffer, PyUntypedBuffer};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A buffer export of `obj` (PyObject_GetBuffer), held until dropped; view it with
/// [`bytes_of`] or [`bytes_of_mut`].
pub fn export(obj: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    PyBuffer::<u8>::get(obj)
}

/// A buffer export of `obj` whatever its item format (a numpy `int64` array, an Arrow
/// buffer), held until dropped; view its bytes with [`raw_bytes_of`].
pub fn export_raw(obj: &Bound<'_, PyAny>) -> PyResult<PyUntypedBuffer> {
    PyUntypedBuffer::get(obj)
}

/// The C-contiguous bytes of the export `buf`, usable with the GIL released.
pub fn bytes_of(buf: &PyBuffer<u8>) -> PyResult<&[u8]> {
    raw_bytes_of(buf)
}

/// The C-contiguous bytes of the export `buf` of any item format, usable with the GIL
/// released.
pub fn raw_bytes_of(buf: &PyUntypedBuffer) -> PyResult<&[u8]> {
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err("buffer is not contiguous"));
    }
    let (ptr, len) = (buf.buf_ptr() as *const u8, buf.len_bytes());
    if len == 0 || ptr.is_null() {
        return Ok(&[]);
    }
    // SAFETY: (this argument covers `bytes_of` and `bytes_of_mut` too) `buf` holds a buffer
    // export (PyObject_GetBuffer) of a C-contiguous buffer of `len_bytes` bytes at `buf_ptr`
    // (non-null, checked above), and an export keeps the memory alive and in place until it
    // is released (when `buf` is dropped; a `bytearray` cannot be resized and a memory map
    // cannot be closed while exported). The returned slice borrows `buf`, so it cannot
    // outlive the export. Python code in another
    // thread may still write to the memory while the GIL is released: that is the contract
    // of `bytes(memoryview)` racing a writer (the bytes read may be mixed), u8 has no
    // invalid bit patterns, and no decision of the core that memory safety depends on is
    // taken from bytes read twice (offsets are bounds-checked where they are used).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The writable C-contiguous bytes of the export `buf`, usable with the GIL released.
///
/// Callers hand each destination to one job only (the Python side makes a fresh array per
/// destination), so no other Rust reference to this memory exists while the slice lives.
#[allow(clippy::mut_from_ref)]
pub fn bytes_of_mut(buf: &PyBuffer<u8>) -> PyResult<&mut [u8]> {
    if buf.readonly() {
        return Err(PyBufferError::new_err("destination buffer is read-only"));
    }
    let mut ptr = buf
        .as_slice_ptr()
        .filter(|_| buf.is_c_contiguous())
        .ok_or_else(|| PyBufferError::new_err("destination buffer is not contiguous"))?;
    // SAFETY: as in `bytes_of`, for a writable export; uniqueness as documented above.
    Ok(unsafe { ptr.as_mut() })
}

/// A new `bytes` object of `n` bytes, filled by `fill` with the GIL released, without
/// zero-filling it first (a 64 MB object cost three more passes over memory before). Its
/// pages are advised as huge first (`rust/pages.rs`).
///
/// `fill` gets the object's storage as an address (raw pointers are not `Send`) and must
/// write all `n` bytes through raw-pointer writes only (the memory is uninitialised).
pub fn new_bytes_filled<'py>(
    py: Python<'py>,
    n: usize,
    fill: impl FnOnce(usize) + Send,
) -> PyResult<Bound<'py, PyBytes>> {
    let len = ffi::Py_ssize_t::try_from(n)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("bytes object too large"))?;
    // SAFETY: a null source asks CPython for `n` bytes of uninitialised storage; the result
    // is a new reference, or null with an exception set (turned into the error).
    let bytes = unsafe {
        let obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
        Bound::from_owned_ptr_or_err(py, obj)?
    };
    // SAFETY: the bytes object is fresh and unseen by other code; `PyBytes_AsString` gives
    // its `n`-byte storage, which stays in place while `bytes` keeps the object alive, and
    // `fill` (see above) writes it completely before the object is returned.
    let dst = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) } as usize;
    crate::pages::advise_huge_pages(dst as *mut u8, n);
    py.detach(|| fill(dst));
    Ok(bytes.cast_into::<PyBytes>()?)
}
