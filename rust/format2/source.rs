//! Where a dump's bytes come from: the one [`Source`] trait that the reader (header search,
//! index, chunks) reads through, whatever holds the bytes: a file read with `pread`
//! ([`FileSource`]), or memory (`[u8]`: a memory map, a `bytes` object, what a socket
//! delivered). A source in memory lends its bytes without a copy ([`Source::as_slice`]);
//! any other is read on demand, into allocations that fail rather than abort.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Bytes a dump is read from, by absolute offset; shared by the decoding threads.
pub trait Source: Sync {
    /// Bytes the source holds (where the data ends).
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; [`Error::Truncated`] when the source ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// All the bytes, when they are in memory already (None: they must be read).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// The bytes at `offset..offset + len` when they are in memory already.
    fn slice(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.as_slice()?.get(start..start.checked_add(len)?)
    }

    /// The bytes at `offset..offset + len` as a new vector with room for `spare` more (a
    /// decoder may append to it). `len` must already be checked against what the source
    /// holds: the vector is allocated before it is filled, fallibly.
    fn read_vec(&self, offset: u64, len: usize, spare: usize) -> Result<Vec<u8>> {
        if offset.saturating_add(len as u64) > self.len() {
            return Err(Error::Truncated(format!(
                "{len} bytes at offset {offset} lie past the end ({} bytes)",
                self.len()
            )));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(len.saturating_add(spare))
            .map_err(|_| Error::LimitExceeded {
                what: "a stored chunk",
                declared: (len as u64).saturating_add(spare as u64),
                limit: None,
            })?;
        match self.slice(offset, len) {
            Some(s) => v.extend_from_slice(s), // one copy, no zero-fill first
            None => {
                v.resize(len, 0);
                self.read_at(offset, &mut v)?;
            }
        }
        Ok(v)
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let s = Source::slice(self, offset, buf.len()).ok_or_else(|| {
            Error::Truncated(format!(
                "{} bytes at offset {offset} lie past the end ({} bytes)",
                buf.len(),
                <[u8]>::len(self)
            ))
        })?;
        buf.copy_from_slice(s);
        Ok(())
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(self)
    }
}

/// A regular file read with `pread`; its length is taken when it is opened.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading, refusing anything but a regular file
    /// ([`Error::NotRegularFile`]) without blocking: a FIFO with no writer would make a
    /// plain open wait forever, so the file is opened non-blocking and checked on the open
    /// descriptor (the path cannot be swapped in between).
    pub fn open(path: &Path) -> Result<FileSource> {
        let file = open_nonblocking(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(Error::NotRegularFile(kind_of(&meta.file_type())));
        }
        // O_NONBLOCK has no effect on reads of a regular file
        Ok(FileSource {
            len: meta.len(),
            file,
        })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(target_os = "linux")]
fn open_nonblocking(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?)
}

#[cfg(not(target_os = "linux"))]
fn open_nonblocking(path: &Path) -> Result<File> {
    // no libc here: the type is checked before opening too (a FIFO put in its place in
    // between would still block; the Python layer opens non-blocking before calling us)
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegularFile(kind_of(&meta.file_type())));
    }
    Ok(File::open(path)?)
}

/// What a non-regular file is, in words.
fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(Error::from_read)
    }
}

/// The first bytes of a dump that starts at `start` of a source, fetched on demand and
/// never past `end`: what the header search reads. A source in memory is lent as is.
pub struct Window<'a> {
    src: &'a dyn Source,
    start: u64,
    end: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    /// The window onto `src[start..end]` (`end` clamped to the source's length).
    pub fn new(src: &'a dyn Source, start: u64, end: u64) -> Window<'a> {
        let end = end.min(src.len()).max(start);
        Window {
            src,
            start,
            end,
            buf: Vec::new(),
        }
    }

    /// Bytes from `start` to `end`.
    pub fn avail(&self) -> u64 {
        self.end - self.start
    }

    /// The dump's first `len` bytes (fewer at the end of the data).
    pub fn prefix(&mut self, len: usize) -> Result<&[u8]> {
        let want = (len as u64).min(self.avail()) as usize;
        if let Some(s) = self.src.slice(self.start, want) {
            return Ok(s);
        }
        if want > self.buf.len() {
            let old = self.buf.len();
            // want <= the source's length (its bytes justify it); fallible all the same
            self.buf
                .try_reserve_exact(want - old)
                .map_err(|_| Error::LimitExceeded {
                    what: "a header",
                    declared: want as u64,
                    limit: None,
                })?;
            self.buf.resize(want, 0);
            self.src
                .read_at(self.start + old as u64, &mut self.buf[old..])?;
        }
        Ok(&self.buf[..want])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_file_sources_read_the_same() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let dir = std::env::temp_dir().join(format!("jl-source-{}", std::process::id()));
        std::fs::write(&dir, &data).unwrap();
        let file = FileSource::open(&dir).unwrap();
        let mem: &[u8] = &data;
        for src in [&file as &dyn Source, &mem as &dyn Source] {
            assert_eq!(src.len(), 10_000);
            assert_eq!(src.read_vec(100, 50, 2).unwrap(), &data[100..150]);
            assert!(matches!(
                src.read_vec(9_990, 50, 0),
                Err(Error::Truncated(_))
            ));
            let mut buf = [0u8; 20];
            assert!(matches!(
                src.read_at(9_990, &mut buf),
                Err(Error::Truncated(_))
            ));
            let mut w = Window::new(src, 9_000, u64::MAX);
            assert_eq!(w.prefix(5).unwrap(), &data[9_000..9_005]);
            assert_eq!(w.prefix(5_000).unwrap(), &data[9_000..]);
        }
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn non_regular_files_are_refused_without_blocking() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            FileSource::open(&dir),
            Err(Error::NotRegularFile("a directory"))
        ));
        let fifo = dir.join(format!("jl-fifo-{}", std::process::id()));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
            // no writer: a blocking open would wait forever
            let r = FileSource::open(&fifo);
            std::fs::remove_file(&fifo).unwrap();
            assert!(matches!(r, Err(Error::NotRegularFile(k)) if k.contains("FIFO")));
        }
    }
}
