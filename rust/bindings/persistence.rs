//! Python binding of the container format (`rust/container/`) and codecs (`rust/codec.rs`):
//! takes numpy memory through the buffer protocol without copying, runs every byte loop with
//! the GIL released, and maps errors through `errors.rs`.

use std::io::BufWriter;
use std::path::PathBuf;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_pyerr;
use crate::codec;
use crate::container::{self, Codec, FileSource, ReadJob, SegmentData, Table};
use crate::error::Error;
use crate::pages;

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
    // while the slice (which borrows `buf`) exists. The callers create each destination
    // buffer themselves (fresh numpy arrays) and hand every one to a single job, so no other
    // Rust reference to that memory exists while this one is alive.
    Ok(unsafe { ptr.as_mut() })
}

fn codec_from_id(py: Python<'_>, id: u8) -> PyResult<Codec> {
    Codec::from_id(id).ok_or_else(|| {
        to_pyerr(
            py,
            None,
            Error::InvalidArgument(format!("unknown codec id {id}")),
        )
    })
}

/// write_container(path, segments, chunk_size, fsync, lz4_chunk_size, codec_name)
/// --
///
/// Writes a container. `segments` is a list of `(buffer, codec_id, shuffle, chunks)` with
/// segment 0 the pickle stream; `chunks` is None or the already compressed chunks (zlib, bz2,
/// lzma, or the external codec `codec_name` names, id 5). Writes to `path` (created or truncated, then flushed and optionally fsynced) and
/// returns None, or returns the bytes when `path` is None.
#[pyfunction]
#[pyo3(signature = (
    path, segments, chunk_size = codec::DEFAULT_CHUNK_SIZE, fsync = true,
    lz4_chunk_size = codec::DEFAULT_LZ4_CHUNK_SIZE, codec_name = None
))]
#[allow(clippy::type_complexity)]
fn write_container(
    py: Python<'_>,
    path: Option<PathBuf>,
    segments: Vec<(Bound<'_, PyAny>, u8, u32, Option<Vec<Bound<'_, PyAny>>>)>,
    chunk_size: usize,
    fsync: bool,
    lz4_chunk_size: usize,
    codec_name: Option<String>,
) -> PyResult<Option<Py<PyBytes>>> {
    let name = codec_name.as_deref();
    let mut held = Vec::with_capacity(segments.len());
    for (obj, codec_id, shuffle, chunks) in &segments {
        let buf = PyBuffer::<u8>::get(obj)?;
        let pre = match chunks {
            Some(list) => Some(
                list.iter()
                    .map(PyBuffer::<u8>::get)
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            None => None,
        };
        held.push((buf, codec_from_id(py, *codec_id)?, *shuffle, pre));
    }
    let mut specs = Vec::with_capacity(held.len());
    for (buf, codec, shuffle, pre) in &held {
        let data = read_view(buf)?;
        specs.push(match pre {
            None => SegmentData::Raw {
                data,
                codec: *codec,
                shuffle: *shuffle,
            },
            Some(chunks) => SegmentData::Precompressed {
                data,
                codec: *codec,
                chunks: chunks.iter().map(read_view).collect::<PyResult<Vec<_>>>()?,
            },
        });
    }
    match path {
        Some(path) => {
            let res = py.detach(|| -> Result<(), Error> {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?;
                let mut w = BufWriter::with_capacity(1 << 16, file);
                container::write_container_named(&mut w, &specs, chunk_size, lz4_chunk_size, name)?;
                let file = w.into_inner().map_err(|e| e.into_error())?;
                if fsync {
                    file.sync_all()?;
                }
                Ok(())
            });
            res.map_err(|e| to_pyerr(py, Some(&path), e))?;
            Ok(None)
        }
        None => {
            let out = py
                .detach(|| {
                    // room for the largest possible output: a regrowth would copy (and
                    // page-fault) all of it again
                    let room = container::max_output_len(&specs, chunk_size, lz4_chunk_size);
                    let mut out = pages::huge_vec(room);
                    container::write_container_named(
                        &mut out,
                        &specs,
                        chunk_size,
                        lz4_chunk_size,
                        name,
                    )
                    .map(|_| out)
                })
                .map_err(|e| to_pyerr(py, None, e))?;
            Ok(Some(bytes_from(py, &out)?.unbind()))
        }
    }
}

/// A new `bytes` holding `data`: its pages advised as huge before they are first touched,
/// and the copy made with the GIL released (a large `PyBytes::new` costs more in 4 KiB page
/// faults than in copying).
fn bytes_from<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if data.len() < pages::HUGE_PAGE_MIN {
        return Ok(PyBytes::new(py, data));
    }
    let len = isize::try_from(data.len()).map_err(|_| {
        to_pyerr(
            py,
            None,
            Error::InvalidArgument("container larger than isize::MAX bytes".into()),
        )
    })?;
    // SAFETY: with a null source, PyBytes_FromStringAndSize returns a new reference to a
    // fresh bytes object of `len` uninitialised bytes, or null with a Python exception set;
    // `from_owned_ptr_or_err` takes ownership of the former and turns the latter into a PyErr.
    let bytes = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len),
        )?
    };
    // SAFETY: `bytes` is a bytes object (made just above), so PyBytes_AsString returns its
    // non-null buffer of `len` bytes, valid while `bytes` is alive.
    let dst = unsafe { pyo3::ffi::PyBytes_AsString(bytes.as_ptr()) }.cast::<u8>();
    pages::advise_huge_pages(dst, data.len());
    let addr = dst as usize;
    py.detach(|| {
        // SAFETY: `addr` is the buffer of the bytes object made above, `data.len()` bytes
        // long. Nothing else references that object yet (it is returned only after this
        // copy), `bytes` keeps it alive across the call, and bytes objects never move their
        // buffer, so this is the only access to that memory while the slice exists; `data` is
        // a separate allocation, so the two do not overlap.
        let out = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, data.len()) };
        out.copy_from_slice(data);
    });
    // SAFETY: the object is a bytes object (PyBytes_FromStringAndSize made it), now fully
    // initialised by the copy above.
    Ok(unsafe { bytes.cast_into_unchecked::<PyBytes>() })
}

enum Backing {
    File(FileSource),
    Bytes(PyBuffer<u8>),
}

/// An open container: its validated table, and the file or bytes it is read from.
#[pyclass(module = "joblite._core", frozen)]
struct ContainerReader {
    backing: Backing,
    path: Option<PathBuf>,
    table: Table,
}

impl ContainerReader {
    fn with_source<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn container::Source) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let res = match &self.backing {
            Backing::File(src) => py.detach(|| f(src)),
            Backing::Bytes(buf) => {
                let data = read_view(buf)?;
                py.detach(|| f(&data))
            }
        };
        res.map_err(|e| to_pyerr(py, self.path.as_deref(), e))
    }

    fn segment(&self, py: Python<'_>, index: usize) -> PyResult<&container::Segment> {
        self.table.segments.get(index).ok_or_else(|| {
            to_pyerr(
                py,
                None,
                Error::InvalidArgument(format!("no segment {index}")),
            )
        })
    }
}

#[pymethods]
impl ContainerReader {
    /// Opens and validates a container file (header, trailer, table checksum).
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<ContainerReader> {
        let res = py.detach(|| -> Result<_, Error> {
            let src = FileSource::open(&path)?;
            let table = container::read_table(&src)?;
            Ok((src, table))
        });
        let (src, table) = res.map_err(|e| to_pyerr(py, Some(&path), e))?;
        Ok(ContainerReader {
            backing: Backing::File(src),
            path: Some(path),
            table,
        })
    }

    /// Validates a container held in memory (any buffer: bytes, memoryview, mmap).
    #[staticmethod]
    fn from_buffer(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<ContainerReader> {
        let buf = PyBuffer::<u8>::get(data)?;
        let view = read_view(&buf)?;
        let table = py
            .detach(|| container::read_table(view))
            .map_err(|e| to_pyerr(py, None, e))?;
        Ok(ContainerReader {
            backing: Backing::Bytes(buf),
            path: None,
            table,
        })
    }

    /// Flags: bit 0, marked as opened as a writable map (uncompressed data no longer verified);
    /// bit 1, joblite 0.1.0's mark (verified anyway; a checksum failure may be from such writes).
    #[getter]
    fn flags(&self) -> u32 {
        self.table.flags
    }

    /// The name of the external (registered) codec the file's id-5 segments use, or None.
    #[getter]
    fn codec_name(&self) -> Option<String> {
        self.table.codec_name.clone()
    }

    /// One `(codec_id, shuffle, offset, stored_len, raw_len)` per segment, pickle stream first.
    fn segments(&self) -> Vec<(u8, u32, u64, u64, u64)> {
        self.table
            .segments
            .iter()
            .map(|s| (s.codec as u8, s.shuffle, s.offset, s.stored_len, s.raw_len))
            .collect()
    }

    /// `(offset, stored_len, raw_len)` of every chunk of a segment.
    fn chunks(&self, py: Python<'_>, index: usize) -> PyResult<Vec<(u64, u64, u64)>> {
        Ok(self
            .segment(py, index)?
            .chunks
            .iter()
            .map(|c| (c.offset, c.stored_len, c.raw_len))
            .collect())
    }

    /// Reads and decodes lz4/uncompressed segments into writable buffers, all chunks in
    /// parallel with the GIL released; `verify` checks each chunk's blake3 digest.
    fn read_into(
        &self,
        py: Python<'_>,
        targets: Vec<(usize, Bound<'_, PyAny>)>,
        verify: bool,
    ) -> PyResult<()> {
        let mut held = Vec::with_capacity(targets.len());
        for (index, obj) in &targets {
            held.push((self.segment(py, *index)?, PyBuffer::<u8>::get(obj)?));
        }
        let mut jobs = Vec::with_capacity(held.len());
        for (segment, buf) in &held {
            jobs.push(ReadJob {
                segment,
                dst: write_view(buf)?,
            });
        }
        self.with_source(py, move |src| container::read_segments(src, jobs, verify))
    }

    /// Checks the digests of the stored chunks of the given segments, decoding nothing and
    /// allocating no outputs (GIL released, all cores).
    fn verify_stored(&self, py: Python<'_>, indices: Vec<usize>) -> PyResult<()> {
        let segs = indices
            .iter()
            .map(|&i| self.segment(py, i))
            .collect::<PyResult<Vec<_>>>()?;
        self.with_source(py, move |src| container::verify_stored_segments(src, &segs))
    }

    /// Reads the stored (still compressed) bytes of chunk `chunk` of segment `index`,
    /// checking its digest when `verify` is set.
    fn read_stored(
        &self,
        py: Python<'_>,
        index: usize,
        chunk: usize,
        verify: bool,
    ) -> PyResult<Py<PyBytes>> {
        let seg = self.segment(py, index)?;
        let out = self.with_source(py, |src| {
            container::read_stored_chunk(src, seg, chunk, verify)
        })?;
        Ok(PyBytes::new(py, &out).unbind())
    }

    /// Checks an uncompressed segment's bytes (e.g. a memory map) against its digests.
    fn verify(&self, py: Python<'_>, index: usize, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let seg = self.segment(py, index)?;
        let buf = PyBuffer::<u8>::get(data)?;
        let view = read_view(&buf)?;
        py.detach(|| container::verify_segment(seg, view))
            .map_err(|e| to_pyerr(py, self.path.as_deref(), e))
    }
}

/// Sets the header flag saying a writable memory map may change uncompressed data.
#[pyfunction]
fn mark_mapped_writable(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| container::mark_mapped_writable(&path))
        .map_err(|e| to_pyerr(py, Some(&path), e))
}

/// Decompresses a whole lz4 frame stream (joblib's `compress="lz4"` files).
#[pyfunction]
fn lz4_frame_decompress(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    let buf = PyBuffer::<u8>::get(data)?;
    let view = read_view(&buf)?;
    let out = py
        .detach(|| codec::lz4_frame_decompress(view))
        .map_err(|e| to_pyerr(py, None, e.into()))?;
    Ok(PyBytes::new(py, &out).unbind())
}

/// Decodes an lz4 frame stream (joblib's `compress="lz4"` files) piece by piece, so a reader
/// can stop at the end of the pickle instead of decoding everything first.
#[pyclass(module = "joblite._core")]
struct Lz4FrameReader {
    decoder: FrameDecoder,
    /// Frames fully decoded so far.
    frames: usize,
}

#[pymethods]
impl Lz4FrameReader {
    /// A reader over the compressed bytes `data` (copied: the stream outlives the call).
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Lz4FrameReader> {
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = read_view(&buf)?.to_vec();
        Ok(Lz4FrameReader {
            decoder: FrameDecoder::new(std::io::Cursor::new(bytes)),
            frames: 0,
        })
    }

    /// Decodes up to `len(buf)` bytes into the writable buffer `buf`; returns how many (0 at
    /// the end of the stream). Concatenated frames are read one after the other; bytes after
    /// the last frame that do not start another valid frame end the stream (like the bytes
    /// after a pickle's STOP, they are never interpreted).
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<usize> {
        let out = PyBuffer::<u8>::get(buf)?;
        let dst = write_view(&out)?;
        let decoder = &mut self.decoder;
        let frames = &mut self.frames;
        py.detach(|| read_frames(decoder, frames, dst))
            .map_err(|e| {
                to_pyerr(
                    py,
                    None,
                    Error::Corrupt(format!("lz4 data is corrupt: {e}")),
                )
            })
    }
}

type FrameDecoder = lz4_flex::frame::FrameDecoder<std::io::Cursor<Vec<u8>>>;

fn read_frames(
    decoder: &mut FrameDecoder,
    frames: &mut usize,
    dst: &mut [u8],
) -> std::io::Result<usize> {
    use std::io::Read;
    if dst.is_empty() {
        return Ok(0);
    }
    loop {
        match decoder.read(dst) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            // a damaged first frame is an error; junk after complete frames ends the stream
            Err(e) if *frames == 0 => return Err(e),
            Err(_) => return Ok(0),
        }
        *frames += 1;
        let cursor = decoder.get_ref();
        let pos = cursor.position();
        if pos >= cursor.get_ref().len() as u64 {
            return Ok(0);
        }
        let placeholder = FrameDecoder::new(std::io::Cursor::new(Vec::new()));
        let mut rest = std::mem::replace(decoder, placeholder).into_inner();
        rest.set_position(pos);
        *decoder = FrameDecoder::new(rest);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(write_container, m)?)?;
    m.add_function(wrap_pyfunction!(mark_mapped_writable, m)?)?;
    m.add_function(wrap_pyfunction!(lz4_frame_decompress, m)?)?;
    m.add_class::<ContainerReader>()?;
    m.add_class::<Lz4FrameReader>()?;
    m.add("CONTAINER_MAGIC", PyBytes::new(m.py(), &container::MAGIC))?;
    m.add("DEFAULT_CHUNK_SIZE", codec::DEFAULT_CHUNK_SIZE)?;
    m.add("MAX_CODEC_NAME_LEN", container::MAX_CODEC_NAME_LEN)?;
    Ok(())
}
