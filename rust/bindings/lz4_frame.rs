//! Python binding of `rust/lz4_frame.rs`: reading joblib's `compress="lz4"` files.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_pyerr;
use crate::lz4_frame;

/// A read-only view of a contiguous Python buffer, usable with the GIL released.
fn read_view(buf: &PyBuffer<u8>) -> PyResult<&[u8]> {
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err("buffer is not contiguous"));
    }
    let ptr = buf
        .as_slice_ptr()
        .ok_or_else(|| PyBufferError::new_err("buffer is not contiguous"))?;
    // SAFETY: `buf` holds a buffer export (PyObject_GetBuffer) of a C-contiguous buffer of
    // `len_bytes` u8 items, which keeps the memory alive and in place until `buf` is dropped;
    // the returned slice borrows `buf`, so it cannot outlive the export. Python code could
    // still write to the memory from another thread while the GIL is released; that is the
    // same contract as `bytes(memoryview)` racing a writer (the bytes read may be mixed), and
    // u8 has no invalid bit patterns.
    Ok(unsafe { ptr.as_ref() })
}

/// A writable view of a contiguous Python buffer, usable with the GIL released.
#[allow(clippy::mut_from_ref)]
fn write_view(buf: &PyBuffer<u8>) -> PyResult<&mut [u8]> {
    if buf.readonly() {
        return Err(PyBufferError::new_err("destination buffer is read-only"));
    }
    let mut ptr = buf
        .as_slice_ptr()
        .ok_or_else(|| PyBufferError::new_err("destination buffer is not contiguous"))?;
    // SAFETY: as in `read_view`, the export keeps the writable, C-contiguous memory alive
    // while the slice (which borrows `buf`) exists. The only caller (`readinto`) writes into
    // a buffer that the Python reader made for this one call, so no other Rust reference to
    // that memory exists while this one is alive.
    Ok(unsafe { ptr.as_mut() })
}

/// Decompresses a whole lz4 frame stream (joblib's `compress="lz4"` files).
#[pyfunction]
fn lz4_frame_decompress(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    let buf = PyBuffer::<u8>::get(data)?;
    let view = read_view(&buf)?;
    let out = py
        .detach(|| lz4_frame::decompress(view))
        .map_err(|e| to_pyerr(py, None, e))?;
    Ok(PyBytes::new(py, &out).unbind())
}

/// Decodes an lz4 frame stream (joblib's `compress="lz4"` files) piece by piece, so a reader
/// can stop at the end of the pickle instead of decoding everything first.
#[pyclass(module = "joblite._core")]
struct Lz4FrameReader {
    inner: lz4_frame::FrameReader,
}

#[pymethods]
impl Lz4FrameReader {
    /// A reader over the compressed bytes `data` (copied: the stream outlives the call).
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Lz4FrameReader> {
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = read_view(&buf)?.to_vec();
        Ok(Lz4FrameReader {
            inner: lz4_frame::FrameReader::new(bytes),
        })
    }

    /// Decodes up to `len(buf)` bytes into the writable buffer `buf`; returns how many (0 at
    /// the end of the stream). Concatenated frames are read one after the other; bytes after
    /// the last frame that do not start another valid frame end the stream (like the bytes
    /// after a pickle's STOP, they are never interpreted).
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<usize> {
        let out = PyBuffer::<u8>::get(buf)?;
        let dst = write_view(&out)?;
        let inner = &mut self.inner;
        py.detach(|| inner.read(dst))
            .map_err(|e| to_pyerr(py, None, e))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lz4_frame_decompress, m)?)?;
    m.add_class::<Lz4FrameReader>()?;
    Ok(())
}
