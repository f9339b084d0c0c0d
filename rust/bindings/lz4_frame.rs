//! Python binding of `rust/lz4_frame.rs`: reading joblib's `compress="lz4"` files.

use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffers::{bytes_of_mut, export};
use super::errors::to_pyerr;
use crate::lz4_frame;

/// Compressed bytes read from a Python binary file object as the decoder needs them (a
/// piece of at most [`PIECE`] bytes per call). An exception of the file object is kept in
/// `failed` and raised as it is once the decoder returns.
struct PyFileSource {
    fh: Py<PyAny>,
    failed: Arc<Mutex<Option<PyErr>>>,
}

/// Bytes asked of the file object per read (the decoder's reads go through a buffer).
const PIECE: usize = 1 << 16;

impl Read for PyFileSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(PIECE);
        let got = Python::attach(|py| -> PyResult<usize> {
            let piece = self.fh.bind(py).call_method1("read", (want,))?;
            let bytes = piece.cast::<PyBytes>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "read() should return bytes, got {}",
                    piece
                        .get_type()
                        .name()
                        .map_or("?".into(), |n| n.to_string())
                ))
            })?;
            let data = bytes.as_bytes();
            if data.len() > want {
                return Err(PyTypeError::new_err(format!(
                    "read({want}) returned {} bytes",
                    data.len()
                )));
            }
            buf[..data.len()].copy_from_slice(data);
            Ok(data.len())
        });
        got.map_err(|e| {
            let text = e.to_string();
            if let Ok(mut slot) = self.failed.lock() {
                slot.get_or_insert(e);
            }
            std::io::Error::other(text)
        })
    }
}

/// Decodes an lz4 frame stream (joblib's `compress="lz4"` files) piece by piece from a
/// binary file object, so a reader can stop at the end of the pickle: the file is read as
/// it is decoded (64 KiB at a time, plus one block of at most 4 MiB), never whole.
#[pyclass(module = "joblite._core")]
struct Lz4FrameReader {
    inner: lz4_frame::FrameReader<BufReader<PyFileSource>>,
    failed: Arc<Mutex<Option<PyErr>>>,
}

#[pymethods]
impl Lz4FrameReader {
    /// A reader of the binary file object `fileobj` (its `read(n)` returns bytes), from
    /// its current position.
    #[new]
    fn new(fileobj: Py<PyAny>) -> Lz4FrameReader {
        let failed = Arc::new(Mutex::new(None));
        let source = PyFileSource {
            fh: fileobj,
            failed: Arc::clone(&failed),
        };
        Lz4FrameReader {
            inner: lz4_frame::FrameReader::new(BufReader::with_capacity(PIECE, source)),
            failed,
        }
    }

    /// Decodes up to `len(buf)` bytes into the writable buffer `buf`; returns how many (0 at
    /// the end of the stream). Concatenated frames are read one after the other; bytes after
    /// the last frame that do not start another valid frame end the stream (like the bytes
    /// after a pickle's STOP, they are never interpreted). An exception of the file object
    /// is raised as it is.
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<usize> {
        let out = export(buf)?;
        let dst = bytes_of_mut(&out)?;
        let inner = &mut self.inner;
        // the GIL is released while decoding; each read of the file object takes it back
        let result = py.detach(|| inner.read(dst));
        if let Some(err) = self.failed.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(err);
        }
        result.map_err(|e| to_pyerr(py, None, e))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lz4FrameReader>()?;
    Ok(())
}
