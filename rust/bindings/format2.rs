//! Python binding of format 2 (`rust/format2`): the pickle-stream scan, the writer and the
//! reader, all byte loops with the GIL released; damaged files raise
//! `joblite.CorruptFileError` naming the user's file.

use std::fs::File;
use std::io::{Cursor, Write};
use std::path::PathBuf;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use crate::format2::head::{self, Prefix};
use crate::format2::index::{self, Buffer, Index};
use crate::format2::pickle_scan::{self, Piece};
use crate::format2::read::{Plan, Source};
use crate::format2::write::{self, Layout};
use crate::format2::{Codec, Error};

/// Errors go through the one mapping of `errors.rs` (errno and the user's path kept).
fn to_pyerr(py: Python<'_>, path: Option<&PathBuf>, err: Error) -> PyErr {
    super::errors::to_pyerr(py, path.map(|p| p.as_path()), err)
}

fn view(buf: &PyBuffer<u8>) -> PyResult<&[u8]> {
    let ptr = buf
        .as_slice_ptr()
        .filter(|_| buf.is_c_contiguous())
        .ok_or_else(|| PyBufferError::new_err("buffer is not contiguous"))?;
    // SAFETY: `buf` holds a buffer export of a C-contiguous buffer, which keeps the memory
    // alive and in place until `buf` is dropped; the slice borrows `buf`. A concurrent
    // Python writer can only make the bytes read mixed (u8 has no invalid values).
    Ok(unsafe { ptr.as_ref() })
}

#[allow(clippy::mut_from_ref)]
fn view_mut(buf: &PyBuffer<u8>) -> PyResult<&mut [u8]> {
    if buf.readonly() {
        return Err(PyBufferError::new_err("destination buffer is read-only"));
    }
    let mut ptr = buf
        .as_slice_ptr()
        .filter(|_| buf.is_c_contiguous())
        .ok_or_else(|| PyBufferError::new_err("destination buffer is not contiguous"))?;
    // SAFETY: as in `view`; callers pass fresh numpy arrays, each to one job, so no other
    // Rust reference to this memory exists while the slice lives.
    Ok(unsafe { ptr.as_mut() })
}

/// f2_scan(stream)
/// --
///
/// The pieces of a protocol-5 pickle stream for format 2: `(start, end)` ranges to keep and
/// None where an out-of-band buffer goes (FRAME, PROTO and READONLY_BUFFER dropped).
#[pyfunction]
fn f2_scan(py: Python<'_>, stream: &Bound<'_, PyAny>) -> PyResult<Vec<Option<(usize, usize)>>> {
    let buf = PyBuffer::<u8>::get(stream)?;
    let data = view(&buf)?;
    let pieces = py
        .detach(|| pickle_scan::scan(data))
        .map_err(|e| to_pyerr(py, None, e))?;
    Ok(pieces
        .into_iter()
        .map(|p| match p {
            Piece::Keep(_, a, b) => Some((a, b)),
            _ => None,
        })
        .collect())
}

/// f2_scan_parts(parts, min_in_band)
/// --
///
/// The pieces of the protocol-5 pickle stream that is the concatenation of `parts`, as
/// `(tag, a, b, c)`: tag 0 keeps bytes `b..c` of part `a`; 1 is an out-of-band buffer;
/// 2 starts an in-band record of kind `a` (0 bytes, 1 bytearray, 2 str) and `b` bytes,
/// whose bytes are the tag-3 pieces that follow (bytes `b..c` of part `a`).
#[pyfunction]
fn f2_scan_parts(
    py: Python<'_>,
    parts: Vec<Bound<'_, PyAny>>,
    min_in_band: u64,
) -> PyResult<Vec<(u8, u64, u64, u64)>> {
    let held = parts
        .iter()
        .map(PyBuffer::<u8>::get)
        .collect::<PyResult<Vec<_>>>()?;
    let views = held.iter().map(view).collect::<PyResult<Vec<_>>>()?;
    let pieces = py
        .detach(|| pickle_scan::scan_parts(&views, min_in_band))
        .map_err(|e| to_pyerr(py, None, e))?;
    let n = |x: usize| x as u64;
    Ok(pieces
        .into_iter()
        .map(|p| match p {
            Piece::Keep(i, a, b) => (0, n(i), n(a), n(b)),
            Piece::Buffer => (1, 0, 0, 0),
            Piece::InBand(kind, len) => (2, u64::from(kind), len, 0),
            Piece::Payload(i, a, b) => (3, n(i), n(a), n(b)),
        })
        .collect())
}

/// f2_write(path, parts, bounds, buffers, codec, level, h_len, fsync)
/// --
///
/// Writes one dump: into the (existing, empty) file `path` and returns None, or returns the
/// bytes when `path` is None. See `rust/format2/write.rs` for the arguments.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn f2_write(
    py: Python<'_>,
    path: Option<PathBuf>,
    parts: Vec<Bound<'_, PyAny>>,
    bounds: Vec<u64>,
    buffers: Vec<(u64, u64, u64)>,
    codec: u8,
    level: i32,
    h_len: usize,
    fsync: bool,
) -> PyResult<Option<Py<PyBytes>>> {
    let codec = Codec::from_id(codec).ok_or_else(|| PyValueError::new_err("bad codec"))?;
    let held = parts
        .iter()
        .map(PyBuffer::<u8>::get)
        .collect::<PyResult<Vec<_>>>()?;
    let views = held.iter().map(view).collect::<PyResult<Vec<_>>>()?;
    let layout = Layout {
        parts: views,
        bounds,
        buffers: buffers
            .into_iter()
            .map(|(record_off, data_off, data_len)| Buffer {
                record_off,
                data_off,
                data_len,
            })
            .collect(),
        h_len,
    };
    match path {
        Some(p) => {
            py.detach(|| -> Result<(), Error> {
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
                    let mut cur = Cursor::new(Vec::new());
                    write::write(&mut cur, codec, level, &layout)?;
                    Ok(cur.into_inner())
                })
                .map_err(|e| to_pyerr(py, None, e))?;
            Ok(Some(PyBytes::new(py, &out).unbind()))
        }
    }
}

/// The first bytes of a dump, fetched on demand.
struct Head<'a> {
    src: &'a dyn Source,
    start: u64,
    end: u64,
    buf: Vec<u8>,
}

impl Prefix for Head<'_> {
    fn prefix(&mut self, len: usize) -> Result<&[u8], Error> {
        let avail = (self.end - self.start) as usize;
        let want = len.min(avail);
        if want > self.buf.len() {
            let old = self.buf.len();
            self.buf.resize(want, 0);
            self.src
                .read_at(self.start + old as u64, &mut self.buf[old..])
                .map_err(Error::from_read)?;
        }
        Ok(&self.buf[..want])
    }
}

/// The pickle stream and the bytes of the buffers that own no chunks.
type StreamParts<'py> = (Bound<'py, PyBytes>, Vec<Option<Bound<'py, PyByteArray>>>);

enum Backing {
    File(File),
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

fn open_plan(
    src: &dyn Source,
    start: u64,
    end: u64,
) -> Result<Option<(Plan, u64, Option<u64>)>, Error> {
    let mut h = Head {
        src,
        start,
        end,
        buf: Vec::new(),
    };
    let avail = end - start;
    let Some(found) = head::find(&mut h, avail)? else {
        return Ok(None);
    };
    let idx = match Index::decode(&found.index, found.codec, found.base, avail) {
        Err(Error::NotThisFormat(_)) => return Ok(None), // another codec's decompressed output
        other => other?,
    };
    let dump_len = found.base + idx.stored_len + idx.codec.trailer_len();
    let index_offset = (idx.codec == Codec::None).then_some(start + head::H_PREFIX_LEN as u64);
    let plan = Plan::new(idx, start + found.base);
    plan.check_trailer(src, &head::raw_header(&found.index))?;
    Ok(Some((plan, dump_len, index_offset)))
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
                let data = view(buf)?;
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
        let res = py.detach(|| -> Result<_, Error> {
            let file = File::open(&path)?;
            let end = file.metadata()?.len();
            if offset >= end {
                return Ok(None);
            }
            Ok(open_plan(&file, offset, end)?.map(|p| (file, p)))
        });
        let Some((file, (plan, dump_len, index_offset))) =
            res.map_err(|e| to_pyerr(py, Some(&path), e))?
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
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = view(&buf)?;
        let res = py
            .detach(|| open_plan(&bytes, 0, bytes.len() as u64))
            .map_err(|e| to_pyerr(py, name.as_ref(), e))?;
        let Some((plan, dump_len, index_offset)) = res else {
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
        let n = stream.len();
        // the stream's one copy, straight into a bytes object that is not zero-filled first
        // (a 64 MB in-band object cost three more passes over memory before)
        // SAFETY: a null source asks CPython for `n` bytes of uninitialised storage; the
        // result is a new reference, or null with an exception set (turned into the error).
        let bytes = unsafe {
            let obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
            Bound::from_owned_ptr_or_err(py, obj)?
        };
        // SAFETY: the bytes object is fresh and unseen by other code; `PyBytes_AsString`
        // gives its `n`-byte storage, which `copy_to` fills completely (raw-pointer writes
        // only) before the object is returned. The address travels as an integer because
        // raw pointers are not `Send`; the object is kept alive by `bytes` meanwhile.
        let dst = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) } as usize;
        crate::pages::advise_huge_pages(dst as *mut u8, n);
        py.detach(|| {
            // SAFETY: `dst` is the fresh bytes object's storage of exactly `stream.len()`
            // bytes (see above), written by nobody else while the GIL is released.
            unsafe { stream.copy_to(dst as *mut u8) }
        });
        Ok((bytes.cast_into::<PyBytes>()?, small))
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
            let obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
            Bound::from_owned_ptr_or_err(py, obj)?
        };
        // SAFETY: the bytes object is fresh and unseen by other code; `PyBytes_AsString`
        // gives its `n`-byte storage. `read_buffers` fills all of it (it checks that the
        // owned chunks' sizes add up to exactly `n`) or fails, and then the object is
        // dropped unseen. The address travels as an integer because raw pointers are not
        // `Send`; `bytes` keeps the storage alive meanwhile.
        let dst = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) } as usize;
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
            .map(|(k, obj)| Ok((*k, PyBuffer::<u8>::get(obj)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let mut views = Vec::with_capacity(held.len());
        for (k, buf) in &held {
            views.push((*k, view_mut(buf)?));
        }
        self.with_source(py, move |src| self.plan.read_buffers(src, views, verify))
    }

    /// Checks buffer `k`'s bytes (e.g. a memory map) against its checksums.
    fn verify_buffer(&self, py: Python<'_>, k: usize, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = view(&buf)?;
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
            let mut idx = vec![0u8; n];
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
    let buf = PyBuffer::<u8>::get(data)?;
    let bytes = view(&buf)?;
    Ok(py.detach(|| crate::format2::checksum(bytes)))
}

/// Index bytes needed for this many chunks and buffers.
#[pyfunction]
fn f2_index_len(n_chunks: usize, n_buffers: usize) -> usize {
    index::needed_len(n_chunks, n_buffers)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(f2_scan, m)?)?;
    m.add_function(wrap_pyfunction!(f2_scan_parts, m)?)?;
    m.add_function(wrap_pyfunction!(f2_write, m)?)?;
    m.add_function(wrap_pyfunction!(f2_index_len, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_64, m)?)?;
    m.add_class::<F2Reader>()?;
    m.add("F2_H_OVERHEAD", head::H_OVERHEAD)?;
    Ok(())
}
