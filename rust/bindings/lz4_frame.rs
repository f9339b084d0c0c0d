//! Python binding of `rust/lz4_frame.rs`: reading joblib's `compress="lz4"` files.

use pyo3::prelude::*;

use super::buffers::{bytes_of_mut, export, HeldView};
use super::errors::to_pyerr;
use crate::lz4_frame;

/// Decodes an lz4 frame stream (joblib's `compress="lz4"` files) piece by piece, so a reader
/// can stop at the end of the pickle instead of decoding everything first.
#[pyclass(module = "joblite._core")]
struct Lz4FrameReader {
    inner: lz4_frame::FrameReader<HeldView>,
}

#[pymethods]
impl Lz4FrameReader {
    /// A reader over the compressed bytes `data`, read in place (not copied: the reader
    /// holds a buffer export of `data` while it lives).
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Lz4FrameReader> {
        Ok(Lz4FrameReader {
            inner: lz4_frame::FrameReader::new(HeldView::new(data)?),
        })
    }

    /// Decodes up to `len(buf)` bytes into the writable buffer `buf`; returns how many (0 at
    /// the end of the stream). Concatenated frames are read one after the other; bytes after
    /// the last frame that do not start another valid frame end the stream (like the bytes
    /// after a pickle's STOP, they are never interpreted).
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<usize> {
        let out = export(buf)?;
        let dst = bytes_of_mut(&out)?;
        let inner = &mut self.inner;
        py.detach(|| inner.read(dst))
            .map_err(|e| to_pyerr(py, None, e))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lz4FrameReader>()?;
    Ok(())
}
