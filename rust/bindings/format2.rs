//! Python binding of format 2 (`rust/format2`): the writer (layout included) and the
//! reader, all byte loops with the GIL released; damaged files raise
//! `joblite.CorruptFileError` naming the user's file.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString, PyTuple};

use super::buffers::{bytes_of, bytes_of_mut, export, new_bytes_filled};
use crate::format2::head_stream;
use crate::format2::index;
use crate::format2::layout;
use crate::format2::read::{self, Opened, Plan, Source};
use crate::format2::source::FileSource;
use crate::format2::write;
use crate::format2::{Codec, Error};

/// Errors go through the one mapping of `errors.rs` (errno and the user's path kept).
fn to_pyerr(py: Python<'_>, path: Option<&PathBuf>, err: Error) -> PyErr {
    super::errors::to_pyerr(py, path.map(|p| p.as_path()), err)
}

/// A part of the pickle stream, held for the call: a buffer export, or a `str` standing for
/// its UTF-8 bytes (CPython's own UTF-8 of the string: for an ASCII string, its characters
/// themselves, never copied).
enum StreamPart<'py> {
    Buffer(PyBuffer<u8>),
    Str(Bound<'py, PyString>),
}

impl<'py> StreamPart<'py> {
    fn hold(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<PyString>() {
            Ok(s) => Ok(StreamPart::Str(s.clone())),
            Err(_) => Ok(StreamPart::Buffer(export(obj)?)),
        }
    }

    fn bytes(&self) -> PyResult<&[u8]> {
        match self {
            StreamPart::Buffer(buf) => bytes_of(buf),
            StreamPart::Str(s) => Ok(s.to_str()?.as_bytes()),
        }
    }
}

/// f2_dump(path, stream, buffers, codec, level, dump_start, fsync)
/// --
///
/// Writes the dump of a pickle stream: `stream` is the list of parts the pickler wrote
/// (protocol 5, PROTO included; a `str` part stands for its UTF-8 bytes, as the pickler
/// writes them after a BINUNICODE header), `buffers` its out-of-band buffers as contiguous
/// bytes (a `PickleBuffer`'s `raw()`), in the order of its NEXT_BUFFER opcodes. The layout (records,
/// padding, chunks, index) is computed here (`rust/format2/layout.rs`) for a dump starting
/// at byte `dump_start` of its file. Writes into the (existing, empty) file `path` and
/// returns None, or returns the bytes when `path` is None. The GIL is released throughout.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn f2_dump(
    py: Python<'_>,
    path: Option<PathBuf>,
    stream: Vec<Bound<'_, PyAny>>,
    buffers: Vec<Bound<'_, PyAny>>,
    codec: u8,
    level: i32,
    dump_start: u64,
    fsync: bool,
) -> PyResult<Option<Py<PyBytes>>> {
    let codec = Codec::from_id(codec)
        .ok_or_else(|| PyValueError::new_err(format!("unknown format-2 codec id {codec}")))?;
    let held = stream
        .iter()
        .map(StreamPart::hold)
        .collect::<PyResult<Vec<_>>>()?;
    let parts = held
        .iter()
        .map(StreamPart::bytes)
        .collect::<PyResult<Vec<_>>>()?;
    let held_bufs = buffers.iter().map(export).collect::<PyResult<Vec<_>>>()?;
    let bufs = held_bufs
        .iter()
        .map(bytes_of)
        .collect::<PyResult<Vec<_>>>()?;
    let plan = || layout::plan(&parts, &bufs, codec, dump_start);
    match path {
        Some(p) => {
            py.detach(|| -> Result<(), Error> {
                let layout = plan()?;
                let file = std::fs::OpenOptions::new().write(true).open(&p)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                write::write(&mut w, codec, level, &layout)?;
                w.flush()?;
                let file = w.into_inner().map_err(|e| Error::Io(e.into_error()))?;
                if fsync {
                    file.sync_all()?;
                }
                Ok(())
            })
            .map_err(|e| to_pyerr(py, Some(&p), e))?;
            Ok(None)
        }
        None => {
            let out = py
                .detach(|| -> Result<Vec<u8>, Error> {
                    let layout = plan()?;
                    let mut cur = Cursor::new(Vec::new());
                    write::write(&mut cur, codec, level, &layout)?;
                    Ok(cur.into_inner())
                })
                .map_err(|e| to_pyerr(py, None, e))?;
            Ok(Some(PyBytes::new(py, &out).unbind()))
        }
    }
}

/// The pickle stream and the bytes of the buffers that own no chunks.
type StreamParts<'py> = (Bound<'py, PyBytes>, Vec<Option<Bound<'py, PyByteArray>>>);

/// What holds the bytes: an open file, or a Python buffer (viewed again for each call,
/// under the GIL, so that the view never outlives the export).
enum Backing {
    File(FileSource),
    Bytes(PyBuffer<u8>),
}

/// An open format-2 dump: its validated index and read plan.
#[pyclass(module = "joblite._core", frozen)]
struct F2Reader {
    backing: Backing,
    path: Option<PathBuf>,
    plan: Plan,
    start: u64,
    dump_len: u64,
    index_offset: Option<u64>,
}

impl F2Reader {
    fn with_source<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn Source) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let res = match &self.backing {
            Backing::File(file) => py.detach(|| f(file)),
            Backing::Bytes(buf) => {
                let data = bytes_of(buf)?;
                py.detach(|| f(&data))
            }
        };
        res.map_err(|e| to_pyerr(py, self.path.as_ref(), e))
    }
}

#[pymethods]
impl F2Reader {
    /// Opens the dump starting at `offset` of a regular file; None when it is not format 2.
    #[staticmethod]
    #[pyo3(signature = (path, offset = 0))]
    fn open(py: Python<'_>, path: PathBuf, offset: u64) -> PyResult<Option<F2Reader>> {
        // a FIFO, device or directory is refused without blocking (rust/format2/source.rs)
        let res = py.detach(|| -> Result<_, Error> {
            let file = FileSource::open(&path)?;
            Ok(read::open(&file, offset)?.map(|o| (file, o)))
        });
        let Some((
            file,
            Opened {
                plan,
                dump_len,
                index_offset,
            },
        )) = res.map_err(|e| to_pyerr(py, Some(&path), e))?
        else {
            return Ok(None);
        };
        Ok(Some(F2Reader {
            backing: Backing::File(file),
            path: Some(path),
            plan,
            start: offset,
            dump_len,
            index_offset,
        }))
    }

    /// Opens a dump held in memory (from its first byte); None when it is not format 2.
    #[staticmethod]
    #[pyo3(signature = (data, name = None))]
    fn from_buffer(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        name: Option<PathBuf>,
    ) -> PyResult<Option<F2Reader>> {
        let buf = export(data)?;
        let bytes = bytes_of(&buf)?;
        let res = py
            .detach(|| read::open(&bytes, 0))
            .map_err(|e| to_pyerr(py, name.as_ref(), e))?;
        let Some(Opened {
            plan,
            dump_len,
            index_offset,
        }) = res
        else {
            return Ok(None);
        };
        Ok(Some(F2Reader {
            backing: Backing::Bytes(buf),
            path: name,
            plan,
            start: 0,
            dump_len,
            index_offset,
        }))
    }

    /// The codec's name.
    #[getter]
    fn codec(&self) -> &'static str {
        self.plan.index.codec.name()
    }

    /// Index flags (bit 0: mapped writable, uncompressed buffers no longer verified).
    #[getter]
    fn flags(&self) -> u8 {
        self.plan.index.flags
    }

    /// Bytes this dump takes, from its first byte.
    #[getter]
    fn dump_len(&self) -> u64 {
        self.dump_len
    }

    /// Absolute offset of the index in an uncompressed file (None when compressed).
    #[getter]
    fn index_offset(&self) -> Option<u64> {
        self.index_offset
    }

    /// Per buffer: `(nbytes, owns_chunks, file_offset)`; file_offset is where its bytes are
    /// in an uncompressed file (None otherwise).
    fn buffers(&self) -> Vec<(u64, bool, Option<u64>)> {
        (0..self.plan.index.buffers.len())
            .map(|k| {
                (
                    self.plan.index.buffers[k].data_len,
                    self.plan.owned[k].is_some(),
                    self.plan.data_offset(k),
                )
            })
            .collect()
    }

    /// Where each buffer's NEXT_BUFFER opcode is in the stream that `stream` returns.
    fn buffer_positions(&self) -> Vec<u64> {
        let idx = &self.plan.index;
        let mut from = idx.chunks.first().map_or(0, |c| c.raw_off);
        let mut at = 2u64; // PROTO 5
        let mut out = Vec::with_capacity(idx.buffers.len());
        for b in &idx.buffers {
            // validated: buffers in order inside the stream, record_off < data_off
            at = at.saturating_add(b.record_off.saturating_sub(from));
            out.push(at);
            at = at.saturating_add(1);
            from = b.data_off.saturating_add(b.data_len);
        }
        out
    }

    /// `(pickle_stream, small)`: the stream joblite's unpickler reads (NEXT_BUFFER for each
    /// buffer) and, per buffer, a bytearray of its bytes when it owns no chunks (else None).
    fn stream<'py>(&self, py: Python<'py>, verify: bool) -> PyResult<StreamParts<'py>> {
        let (stream, small) = self.with_source(py, |src| self.plan.stream(src, verify))?;
        let small = small
            .into_iter()
            .map(|s| s.map(|v| PyByteArray::new(py, &v)))
            .collect();
        // the stream's one copy, straight into its bytes object
        let bytes = new_bytes_filled(py, stream.len(), |dst| {
            // SAFETY: `dst` is the fresh bytes object's storage of exactly `stream.len()`
            // bytes, written by nobody else meanwhile (`new_bytes_filled`); `copy_to`
            // fills all of it with raw-pointer writes.
            unsafe { stream.copy_to(dst as *mut u8) }
        })?;
        Ok((bytes, small))
    }

    /// Buffer `k` (it owns chunks) decoded into a new `bytes` object, not zero-filled first:
    /// an in-band object's one fresh buffer (docs/format.md).
    fn read_bytes<'py>(
        &self,
        py: Python<'py>,
        k: usize,
        verify: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = self
            .plan
            .index
            .buffers
            .get(k)
            .ok_or_else(|| PyValueError::new_err("no such buffer"))?
            .data_len;
        // the size is the index's (validated against the file's chunks, as for an array's
        // `np.empty`): untouched pages cost nothing until the chunks decode into them, and
        // an index that declares more than its chunks hold fails before any is written
        let n = isize::try_from(n).map_err(|_| pyo3::exceptions::PyMemoryError::new_err(n))?;
        // SAFETY: a null source asks CPython for `n` bytes of uninitialised storage; the
        // result is a new reference, or null with an exception set (turned into the error).
        let bytes = unsafe {
            let obj =
                pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as pyo3::ffi::Py_ssize_t);
            Bound::from_owned_ptr_or_err(py, obj)?
        };
        // SAFETY: the bytes object is fresh and unseen by other code; `PyBytes_AsString`
        // gives its `n`-byte storage. `read_buffers` fills all of it (it checks that the
        // owned chunks' sizes add up to exactly `n`) or fails, and then the object is
        // dropped unseen. The address travels as an integer because raw pointers are not
        // `Send`; `bytes` keeps the storage alive meanwhile.
        let dst = unsafe { pyo3::ffi::PyBytes_AsString(bytes.as_ptr()) } as usize;
        crate::pages::advise_huge_pages(dst as *mut u8, n as usize);
        self.with_source(py, move |src| {
            // SAFETY: see above: `n` bytes of fresh storage that nothing else refers to.
            let slice = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, n as usize) };
            self.plan.read_buffers(src, vec![(k, slice)], verify)
        })?;
        Ok(bytes.cast_into::<PyBytes>()?)
    }

    /// Decodes buffers `(k, dst)` that own chunks into their (exactly sized) destinations.
    fn read_buffers(
        &self,
        py: Python<'_>,
        jobs: Vec<(usize, Bound<'_, PyAny>)>,
        verify: bool,
    ) -> PyResult<()> {
        let held = jobs
            .iter()
            .map(|(k, obj)| Ok((*k, export(obj)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let mut views = Vec::with_capacity(held.len());
        for (k, buf) in &held {
            views.push((*k, bytes_of_mut(buf)?));
        }
        self.with_source(py, move |src| self.plan.read_buffers(src, views, verify))
    }

    /// Checks buffer `k`'s bytes (e.g. a memory map) against its checksums.
    fn verify_buffer(&self, py: Python<'_>, k: usize, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = export(data)?;
        let bytes = bytes_of(&buf)?;
        py.detach(|| self.plan.verify_buffer(k, bytes))
            .map_err(|e| to_pyerr(py, self.path.as_ref(), e))
    }

    /// Sets the mapped-writable flag in the index of an uncompressed file, in place.
    fn mark_mapped_writable(&self, py: Python<'_>) -> PyResult<()> {
        let (Some(path), Some(at)) = (&self.path, self.index_offset) else {
            return Ok(());
        };
        let len = index::needed_len(0, 0); // at least the fixed part
        let res = py.detach(|| -> Result<(), Error> {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?;
            let mut n = [0u8; 8];
            file.read_exact_at(&mut n, at - 8)?;
            let n = u64::from_le_bytes(n);
            // the file may have changed since it was opened: its length field is believed
            // only within the file (a huge one must not size an allocation)
            if n > file.metadata()?.len() {
                return Err(crate::format2::corrupt("index length exceeds the file"));
            }
            let n = n as usize;
            if n < len {
                return Err(crate::format2::corrupt("index too short"));
            }
            let mut idx = crate::error::try_zeroed(n, "an index")?;
            file.read_exact_at(&mut idx, at)?;
            idx[13] |= index::FLAG_MAPPED_WRITABLE;
            let sum = crate::format2::checksum(&idx[..n - 8]);
            idx[n - 8..].copy_from_slice(&sum.to_le_bytes());
            file.write_all_at(&idx[13..14], at + 13)?;
            file.write_all_at(&idx[n - 8..], at + (n - 8) as u64)?;
            Ok(())
        });
        res.map_err(|e| to_pyerr(py, self.path.as_ref(), e))
    }

    /// Where this dump starts in its file.
    #[getter]
    fn start(&self) -> u64 {
        self.start
    }
}

/// xxh3_64(data)
/// --
///
/// XXH3-64 of a buffer (the chunk checksum of format 2).
#[pyfunction]
fn xxh3_64(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
    let buf = export(data)?;
    let bytes = bytes_of(&buf)?;
    Ok(py.detach(|| crate::format2::checksum(bytes)))
}

/// f2_stream_len(data, name=None)
/// --
///
/// Bytes the uncompressed dump that `data` (the bytes read so far from a stream) starts
/// with takes: the header unit's length once the index's fixed part is read, the dump's once
/// the header unit is (verified first); None when `data` does not start one. A declared
/// size past what the index's tables allow raises `CorruptFileError` naming `name`.
#[pyfunction]
#[pyo3(signature = (data, name = None))]
fn f2_stream_len(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    name: Option<PathBuf>,
) -> PyResult<Option<u64>> {
    let buf = export(data)?;
    let bytes = bytes_of(&buf)?;
    py.detach(|| read::stream_len(bytes))
        .map_err(|e| to_pyerr(py, name.as_ref(), e))
}

/// F2HeadStream.start(first, name=None)
/// --
///
/// Where a bz2 / xz dump read from a stream ends (their header unit is compressed: it is
/// decoded as its bytes arrive). `start` gives None when `first` (the dump's first bytes)
/// opens no bz2 / xz stream; then `feed` each new part of the stream, in order: it returns
/// how many bytes (from the dump's first byte) to have read before the next `feed`, never
/// past the end of a valid dump, and once the header stream ended and its index verified,
/// the dump's length (then `dump_len` is set); None when this is no format-2 dump. A
/// declared size past its bound raises `CorruptFileError` naming `name`.
#[pyclass(module = "joblite._core")]
struct F2HeadStream {
    inner: head_stream::HeadStream,
    name: Option<PathBuf>,
    dump_len: Option<u64>,
}

#[pymethods]
impl F2HeadStream {
    #[staticmethod]
    #[pyo3(signature = (first, name = None))]
    fn start(
        py: Python<'_>,
        first: &Bound<'_, PyAny>,
        name: Option<PathBuf>,
    ) -> PyResult<Option<F2HeadStream>> {
        let buf = export(first)?;
        let inner = head_stream::HeadStream::new(bytes_of(&buf)?)
            .map_err(|e| to_pyerr(py, name.as_ref(), e))?;
        Ok(inner.map(|inner| F2HeadStream {
            inner,
            name,
            dump_len: None,
        }))
    }

    fn feed(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let buf = export(data)?;
        let bytes = bytes_of(&buf)?;
        let inner = &mut self.inner;
        let step = py
            .detach(|| inner.feed(bytes))
            .map_err(|e| to_pyerr(py, self.name.as_ref(), e))?;
        Ok(match step {
            head_stream::Step::Read(n) => Some(n),
            head_stream::Step::Done(n) => {
                self.dump_len = Some(n);
                Some(n)
            }
            head_stream::Step::NotADump => None,
        })
    }

    /// The dump's length once its index is verified, else None.
    #[getter]
    fn dump_len(&self) -> Option<u64> {
        self.dump_len
    }
}

/// Index bytes needed for this many chunks and buffers (what a file's index holds; tests
/// forge indexes with it).
#[pyfunction]
fn f2_index_len(n_chunks: usize, n_buffers: usize) -> usize {
    index::needed_len(n_chunks, n_buffers)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(f2_dump, m)?)?;
    m.add_function(wrap_pyfunction!(f2_index_len, m)?)?;
    m.add_function(wrap_pyfunction!(f2_stream_len, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_64, m)?)?;
    m.add_class::<F2Reader>()?;
    m.add_class::<F2HeadStream>()?;
    m.add("F2_IN_BAND_MIN", layout::IN_BAND_MIN)?;
    let bytes = |l: &[&[u8]]| -> Vec<Py<PyBytes>> {
        l.iter().map(|b| PyBytes::new(m.py(), b).unbind()).collect()
    };
    m.add(
        "F2_IN_BAND_PREFIX",
        PyTuple::new(m.py(), bytes(&layout::IN_BAND_PREFIX))?,
    )?;
    m.add(
        "F2_IN_BAND_SUFFIX",
        PyTuple::new(m.py(), bytes(&layout::IN_BAND_SUFFIX))?,
    )?;
    Ok(())
}
