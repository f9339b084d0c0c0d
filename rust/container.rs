//! The joblite container file format: segments, chunk tables, checksums, reading and writing.
//!
//! Layout (all integers little-endian; `docs/format.md` is the full specification):
//!
//! ```text
//! header (64 B) | segment 0 (pickle stream) | pad | segment 1 | pad | ... | table | trailer (56 B)
//! ```
//!
//! Every segment starts at a multiple of [`ALIGN`] so an uncompressed one can be memory-mapped
//! in place. The table lists each segment's codec, offsets and the blake3 digest of every raw
//! chunk; the trailer points at the table and carries the digest of header and table, so a
//! writer can stream segments without knowing their sizes up front.
//!
//! The reader never trusts a declared size: every offset and length is checked against the
//! file's real size (and, for compressed chunks, against the codec's maximum expansion) before
//! anything is allocated.

use std::io::{self, Write};

use rayon::prelude::*;
use thiserror::Error;

use crate::codec::{self, CodecError, Digest, DIGEST_LEN, MAX_CHUNK_SIZE};

/// First 8 bytes of every container.
pub const MAGIC: [u8; 8] = *b"\x93JOBLITE";
/// Last 8 bytes of every container.
pub const END_MAGIC: [u8; 8] = *b"JBLTEND\x00";
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 1;
/// Header bytes 16..64 name the external codec, if any: one length byte, then UTF-8.
const CODEC_NAME_OFFSET: usize = 16;
/// Longest external codec name the header holds.
pub const MAX_CODEC_NAME_LEN: usize = HEADER_LEN as usize - CODEC_NAME_OFFSET - 1;
pub const HEADER_LEN: u64 = 64;
pub const TRAILER_LEN: u64 = 56;
/// Segment alignment (bytes): enough for any numpy dtype and for AVX-512 loads.
pub const ALIGN: u64 = 64;
/// Header flag: the file was opened as a writable memory map, so the digests of its
/// uncompressed buffer segments may no longer match (they are not verified any more).
pub const FLAG_MAPPED_WRITABLE: u32 = 1;
const FLAGS_OFFSET: usize = 12;
const ENTRY_FIXED_LEN: usize = 40;
/// Most table bytes one chunk takes (stored length and digest).
const MAX_CHUNK_ENTRY_LEN: usize = 8 + DIGEST_LEN;
/// lz4 chunks in flight while writing (compressed on the pool, written in order): bounds memory.
const WRITE_WINDOW_CHUNKS: usize = 8;
/// Below this size a buffer is hashed on the writing thread (a thread costs more).
const PARALLEL_HASH_MIN: usize = 4 << 20;

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// The pickle stream (always segment 0).
    Pickle = 0,
    /// One out-of-band pickle buffer (a numpy array's memory).
    Buffer = 1,
}

/// How a segment's chunks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Lz4 = 1,
    Zlib = 2,
    Bz2 = 3,
    Lzma = 4,
    /// A codec registered from Python (`joblite.register_compressor`): chunks are compressed
    /// and decoded there; the header names it.
    External = 5,
}

impl Codec {
    pub fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Lz4,
            2 => Codec::Zlib,
            3 => Codec::Bz2,
            4 => Codec::Lzma,
            5 => Codec::External,
            _ => return None,
        })
    }

    /// Largest raw/stored ratio a chunk of this codec can have (bounds declared sizes).
    fn max_expansion(self) -> u64 {
        match self {
            Codec::None => 1,
            Codec::Lz4 => 256,
            Codec::Zlib => 1040,
            Codec::Bz2 | Codec::Lzma => 1 << 16,
            // unknown: raw sizes stay bounded by the chunk size
            Codec::External => u64::MAX,
        }
    }
}

/// Everything that can go wrong reading or writing a container.
#[derive(Debug, Error)]
pub enum ContainerError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not a valid container; the message says what is wrong.
    #[error("{0}")]
    Corrupt(String),
}

fn corrupt<T>(msg: impl Into<String>) -> Result<T, ContainerError> {
    Err(ContainerError::Corrupt(msg.into()))
}

/// One chunk of a segment as listed in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the stored chunk from the start of the file.
    pub offset: u64,
    /// Bytes on disk (equal to `raw_len` when stored uncompressed).
    pub stored_len: u64,
    /// Bytes once decoded.
    pub raw_len: u64,
    /// blake3 of the raw bytes.
    pub digest: Digest,
}

/// One segment as listed in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: SegmentKind,
    pub codec: Codec,
    /// Byte-shuffle element size, 0 when the segment is not shuffled.
    pub shuffle: u32,
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    pub chunk_size: u32,
    pub chunks: Vec<ChunkEntry>,
}

/// The parsed segment table of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub version: (u16, u16),
    pub flags: u32,
    /// The name of the external codec the segments of codec [`Codec::External`] use.
    pub codec_name: Option<String>,
    pub segments: Vec<Segment>,
}

/// Random-access bytes a container is read from: a file or a slice in memory.
pub trait Source: Sync {
    fn size(&self) -> u64;
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Source for &[u8] {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the data",
    )
}

/// A file read with positioned reads (several threads at once, no shared cursor).
pub struct FileSource {
    file: std::fs::File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<FileSource, ContainerError> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return corrupt("is a directory, not a joblite file");
        }
        Ok(FileSource {
            file,
            size: meta.len(),
        })
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
    #[cfg(windows)]
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            let n = self.file.seek_read(buf, offset)?;
            if n == 0 {
                return Err(eof());
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ContainerError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => corrupt("segment table ends early"),
        }
    }
    fn u8(&mut self) -> Result<u8, ContainerError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ContainerError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, ContainerError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn digest(&mut self) -> Result<Digest, ContainerError> {
        let mut d = [0u8; DIGEST_LEN];
        d.copy_from_slice(self.take(DIGEST_LEN)?);
        Ok(d)
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The digest stored in the trailer: blake3 over the header (with the writable-map flag
/// masked, since setting it must not invalidate the file) followed by the table bytes.
fn table_digest(header: &[u8], table: &[u8]) -> Digest {
    let mut h = header.to_vec();
    let flags = le_u32(&h[FLAGS_OFFSET..]) & !FLAG_MAPPED_WRITABLE;
    h[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&flags.to_le_bytes());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&h);
    hasher.update(table);
    *hasher.finalize().as_bytes()
}

/// Whether `head` (the first bytes of a file) starts like a joblite container.
pub fn has_magic(head: &[u8]) -> bool {
    head.len() >= MAGIC.len() && head[..MAGIC.len()] == MAGIC
}

/// Reads and validates header, trailer and table. Allocates only what the file really holds.
pub fn read_table<S: Source + ?Sized>(src: &S) -> Result<Table, ContainerError> {
    let size = src.size();
    if size == 0 {
        return corrupt("file is empty");
    }
    let mut header = [0u8; HEADER_LEN as usize];
    if size < HEADER_LEN {
        let mut head = vec![0u8; size as usize];
        src.read_exact_at(0, &mut head)?;
        if !has_magic(&head) {
            return corrupt("not a joblite file (wrong magic bytes)");
        }
        return corrupt(format!("truncated: {size} bytes, shorter than the header"));
    }
    src.read_exact_at(0, &mut header)?;
    if !has_magic(&header) {
        return corrupt("not a joblite file (wrong magic bytes)");
    }
    let major = le_u16(&header[8..]);
    let minor = le_u16(&header[10..]);
    if major != VERSION_MAJOR {
        return corrupt(format!(
            "unsupported format version {major}.{minor} (this joblite reads {VERSION_MAJOR}.x)"
        ));
    }
    let flags = le_u32(&header[FLAGS_OFFSET..]);
    if flags & !FLAG_MAPPED_WRITABLE != 0 {
        return corrupt(format!("unknown header flags {flags:#x}"));
    }
    let codec_name = parse_codec_name(&header)?;
    if size < HEADER_LEN + TRAILER_LEN {
        return corrupt(format!("truncated: {size} bytes, no room for the trailer"));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    src.read_exact_at(size - TRAILER_LEN, &mut trailer)?;
    if trailer[48..] != END_MAGIC {
        return corrupt("truncated or damaged: end marker missing");
    }
    let table_offset = le_u64(&trailer[0..]);
    let table_len = le_u64(&trailer[8..]);
    let table_end = table_offset.checked_add(table_len);
    if table_offset < HEADER_LEN || table_end != Some(size - TRAILER_LEN) {
        return corrupt(format!(
            "trailer points to a table at {table_offset}+{table_len} outside the {size}-byte file"
        ));
    }
    // table_len < size, so this allocation is bounded by the file itself
    let mut table = vec![0u8; table_len as usize];
    src.read_exact_at(table_offset, &mut table)?;
    let mut want = [0u8; DIGEST_LEN];
    want.copy_from_slice(&trailer[16..48]);
    if table_digest(&header, &table) != want {
        return corrupt("header or segment table failed its checksum");
    }
    let segments = parse_segments(&table, table_offset)?;
    if codec_name.is_none() && segments.iter().any(|s| s.codec == Codec::External) {
        return corrupt("a segment uses an external codec, but the header names none");
    }
    Ok(Table {
        version: (major, minor),
        flags,
        codec_name,
        segments,
    })
}

/// The external codec name of a header (bytes 16..64: length byte, UTF-8 name, zeros).
fn parse_codec_name(header: &[u8]) -> Result<Option<String>, ContainerError> {
    let rest = &header[CODEC_NAME_OFFSET..];
    let n = rest[0] as usize;
    if n > MAX_CODEC_NAME_LEN || rest[1 + n..].iter().any(|&b| b != 0) {
        return corrupt("reserved header bytes are not zero");
    }
    if n == 0 {
        return Ok(None);
    }
    match std::str::from_utf8(&rest[1..1 + n]) {
        Ok(name) => Ok(Some(name.to_string())),
        Err(_) => corrupt("the header's codec name is not UTF-8"),
    }
}

fn encode_codec_name(header: &mut [u8], name: &str) -> Result<(), ContainerError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_CODEC_NAME_LEN {
        return corrupt(format!(
            "codec name {name:?} must be 1 to {MAX_CODEC_NAME_LEN} bytes of UTF-8"
        ));
    }
    header[CODEC_NAME_OFFSET] = bytes.len() as u8;
    header[CODEC_NAME_OFFSET + 1..CODEC_NAME_OFFSET + 1 + bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Parses the table bytes; `data_end` is where segment data must end (the table's offset).
pub fn parse_segments(table: &[u8], data_end: u64) -> Result<Vec<Segment>, ContainerError> {
    let mut cur = Cursor {
        data: table,
        pos: 0,
    };
    let n = cur.u64()?;
    if n == 0 || n > (table.len() / ENTRY_FIXED_LEN) as u64 {
        return corrupt(format!("segment table declares {n} segments"));
    }
    let mut segments = Vec::with_capacity(n as usize);
    let mut prev_end = HEADER_LEN;
    for i in 0..n {
        let seg = parse_segment(&mut cur, i, prev_end, data_end)?;
        prev_end = seg.offset + seg.stored_len;
        segments.push(seg);
    }
    if cur.pos != table.len() {
        return corrupt("segment table has trailing bytes");
    }
    Ok(segments)
}

fn parse_segment(
    cur: &mut Cursor<'_>,
    i: u64,
    prev_end: u64,
    data_end: u64,
) -> Result<Segment, ContainerError> {
    let bad = |what: String| ContainerError::Corrupt(format!("segment {i}: {what}"));
    let kind = match (cur.u8()?, i) {
        (0, 0) => SegmentKind::Pickle,
        (1, i) if i > 0 => SegmentKind::Buffer,
        (k, _) => return Err(bad(format!("unexpected kind {k}"))),
    };
    let codec_id = cur.u8()?;
    let codec = Codec::from_id(codec_id).ok_or_else(|| bad(format!("unknown codec {codec_id}")))?;
    let filter = cur.u8()?;
    let reserved = cur.u8()?;
    let elem = cur.u32()?;
    let offset = cur.u64()?;
    let stored_len = cur.u64()?;
    let raw_len = cur.u64()?;
    let chunk_size = cur.u32()?;
    let reserved2 = cur.u32()?;
    if reserved != 0 || reserved2 != 0 {
        return Err(bad("reserved bytes are not zero".into()));
    }
    let shuffle = match filter {
        0 if elem == 0 => 0,
        1 if codec != Codec::None && (2..=64).contains(&elem) => elem,
        _ => {
            return Err(bad(format!(
                "invalid filter {filter} (element size {elem})"
            )))
        }
    };
    let end = offset.checked_add(stored_len);
    if offset % ALIGN != 0 || offset < prev_end || !end.is_some_and(|e| e <= data_end) {
        return Err(bad(format!(
            "data at {offset}+{stored_len} is misaligned, overlapping or past the end of the data"
        )));
    }
    if chunk_size == 0 || chunk_size as usize > MAX_CHUNK_SIZE {
        return Err(bad(format!("invalid chunk size {chunk_size}")));
    }
    let n_chunks = codec::chunk_count(raw_len, chunk_size as u64);
    // Each chunk costs at least one stored byte and one table digest, so a declared raw
    // size the file cannot back is rejected here, before anything is allocated.
    let entry_len = if codec == Codec::None { 32 } else { 40 };
    if n_chunks > stored_len || n_chunks > ((cur.data.len() - cur.pos) / entry_len) as u64 {
        return Err(bad(format!(
            "declares {raw_len} raw bytes in {n_chunks} chunks, more than the file holds"
        )));
    }
    let mut chunks = Vec::with_capacity(n_chunks as usize);
    let mut pos = offset;
    for c in 0..n_chunks {
        let raw = if c + 1 == n_chunks {
            raw_len - c * chunk_size as u64
        } else {
            chunk_size as u64
        };
        let stored = if codec == Codec::None {
            raw
        } else {
            cur.u64()?
        };
        if stored == 0
            || stored > raw
            || raw
                > stored
                    .saturating_mul(codec.max_expansion())
                    .saturating_add(64)
        {
            return Err(bad(format!(
                "chunk {c}: {stored} stored bytes cannot hold {raw} raw bytes"
            )));
        }
        let digest = cur.digest()?;
        chunks.push(ChunkEntry {
            offset: pos,
            stored_len: stored,
            raw_len: raw,
            digest,
        });
        pos += stored;
    }
    if pos - offset != stored_len {
        return Err(bad(format!(
            "chunk sizes add up to {} bytes, the segment declares {stored_len}",
            pos - offset
        )));
    }
    Ok(Segment {
        kind,
        codec,
        shuffle,
        offset,
        stored_len,
        raw_len,
        chunk_size,
        chunks,
    })
}

/// One segment to read: its table entry and where its raw bytes go.
pub struct ReadJob<'a> {
    pub segment: &'a Segment,
    pub dst: &'a mut [u8],
}

/// Reads (and decodes) the given lz4 or uncompressed segments into their destinations,
/// all chunks of all segments in parallel; with `verify`, checks every chunk's digest.
pub fn read_segments<S: Source + ?Sized>(
    src: &S,
    jobs: Vec<ReadJob<'_>>,
    verify: bool,
) -> Result<(), ContainerError> {
    let mut work: Vec<(&Segment, usize, &mut [u8])> = Vec::new();
    for job in jobs {
        let seg = job.segment;
        if job.dst.len() as u64 != seg.raw_len {
            return corrupt(format!(
                "destination of {} bytes for a {}-byte segment",
                job.dst.len(),
                seg.raw_len
            ));
        }
        if !matches!(seg.codec, Codec::None | Codec::Lz4) {
            return corrupt(format!("codec {:?} is decoded in Python", seg.codec));
        }
        let mut rest = job.dst;
        for (i, c) in seg.chunks.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(c.raw_len as usize);
            work.push((seg, i, head));
            rest = tail;
        }
    }
    crate::threads::install(|| {
        work.into_par_iter()
            .try_for_each(|(seg, i, dst)| read_chunk(src, seg, i, dst, verify))
    })
}

fn read_chunk<S: Source + ?Sized>(
    src: &S,
    seg: &Segment,
    i: usize,
    dst: &mut [u8],
    verify: bool,
) -> Result<(), ContainerError> {
    let c = &seg.chunks[i];
    let mismatch = || {
        corrupt(format!(
            "data failed its checksum (chunk {i} at byte {} of a {}-byte segment)",
            i as u64 * seg.chunk_size as u64,
            seg.raw_len
        ))
    };
    if seg.codec == Codec::None || c.stored_len == c.raw_len {
        src.read_exact_at(c.offset, dst)?;
        if verify && codec::digest(dst) != c.digest {
            return mismatch();
        }
    } else {
        // digests cover the stored bytes: checked before the decoder ever sees them.
        // The stored bytes go to a buffer taken out of this thread's scratch space (the
        // decoder may use that space again for unshuffling).
        let mut stored = codec::with_scratch(|_, b| std::mem::take(b));
        stored.resize(c.stored_len as usize, 0);
        let res = (|| {
            src.read_exact_at(c.offset, &mut stored)?;
            if verify && codec::digest(&stored) != c.digest {
                return mismatch();
            }
            codec::lz4_decompress_chunk(&stored, dst, seg.shuffle as usize)
                .map_err(|e: CodecError| ContainerError::Corrupt(format!("chunk {i}: {e}")))
        })();
        codec::with_scratch(|_, b| *b = stored);
        res?;
    }
    Ok(())
}

/// Reads the stored bytes of chunk `i` of a segment (for decoders outside Rust), checking
/// its digest when `verify` is set.
pub fn read_stored_chunk<S: Source + ?Sized>(
    src: &S,
    seg: &Segment,
    i: usize,
    verify: bool,
) -> Result<Vec<u8>, ContainerError> {
    let c = seg
        .chunks
        .get(i)
        .ok_or_else(|| ContainerError::Corrupt(format!("no chunk {i}")))?;
    let mut stored = vec![0u8; c.stored_len as usize];
    src.read_exact_at(c.offset, &mut stored)?;
    if verify && codec::digest(&stored) != c.digest {
        return corrupt(format!("data failed its checksum (chunk {i})"));
    }
    Ok(stored)
}

/// Checks every chunk digest of an uncompressed segment whose bytes are `data` (a memory
/// map, when asked to verify one). Returns a description of the first mismatch.
pub fn verify_segment(seg: &Segment, data: &[u8]) -> Result<(), ContainerError> {
    if seg.codec != Codec::None {
        return corrupt("only uncompressed segments are verified from their raw bytes");
    }
    if data.len() as u64 != seg.raw_len {
        return corrupt("segment has the wrong size");
    }
    let cs = seg.chunk_size as usize;
    let bad = crate::threads::install(|| {
        data.par_chunks(cs)
            .zip(seg.chunks.par_iter())
            .position_any(|(d, c)| codec::digest(d) != c.digest)
    });
    match bad {
        None => Ok(()),
        Some(i) => corrupt(format!("data failed its checksum (chunk {i})")),
    }
}

/// How one segment is to be written.
pub enum SegmentData<'a> {
    /// Raw bytes, stored as they are or compressed here with lz4; `shuffle` is the element
    /// size a byte-shuffle may use (0: never), applied only where a sample shows it helps.
    Raw {
        data: &'a [u8],
        codec: Codec,
        shuffle: u32,
    },
    /// Raw bytes whose chunks the caller already compressed (zlib, bz2, lzma); a chunk that
    /// did not get smaller is stored raw.
    Precompressed {
        data: &'a [u8],
        codec: Codec,
        chunks: Vec<&'a [u8]>,
    },
}

/// An upper bound of the bytes [`write_container`] writes for `segments` (every chunk is stored
/// at most raw-sized), to size an output buffer once.
pub fn max_output_len(
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
) -> usize {
    let smallest_chunk = chunk_size.min(lz4_chunk_size).max(1);
    let segs: usize = segments
        .iter()
        .map(|s| {
            let n = match s {
                SegmentData::Raw { data, .. } | SegmentData::Precompressed { data, .. } => {
                    data.len()
                }
            };
            n + ALIGN as usize + ENTRY_FIXED_LEN + n.div_ceil(smallest_chunk) * MAX_CHUNK_ENTRY_LEN
        })
        .sum();
    HEADER_LEN as usize + segs + 8 + TRAILER_LEN as usize
}

/// Writes a container to `w`: header, then the segments (segment 0 must be the pickle
/// stream), then table and trailer. Returns the number of bytes written.
/// `chunk_size` applies to uncompressed and zlib/bz2/lzma segments, `lz4_chunk_size` to
/// lz4 ones (larger, because each lz4 chunk starts without history; see codec.rs).
pub fn write_container<W: Write>(
    w: &mut W,
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
) -> Result<u64, ContainerError> {
    write_container_named(w, segments, chunk_size, lz4_chunk_size, None)
}

/// [`write_container`], naming in the header the external codec that the
/// [`Codec::External`] segments (compressed by the caller) use.
pub fn write_container_named<W: Write>(
    w: &mut W,
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
    codec_name: Option<&str>,
) -> Result<u64, ContainerError> {
    let uses_external = segments.iter().any(|s| {
        matches!(
            s,
            SegmentData::Precompressed {
                codec: Codec::External,
                ..
            }
        )
    });
    if uses_external && codec_name.is_none() {
        return corrupt("external-codec segments need the codec's name");
    }
    for c in [chunk_size, lz4_chunk_size] {
        if c == 0 || c > MAX_CHUNK_SIZE {
            return corrupt(format!("invalid chunk size {c}"));
        }
    }
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    // files without an external codec stay readable by 1.0 readers
    let minor = if codec_name.is_some() {
        VERSION_MINOR
    } else {
        0
    };
    header[10..12].copy_from_slice(&minor.to_le_bytes());
    if let Some(name) = codec_name {
        encode_codec_name(&mut header, name)?;
    }
    w.write_all(&header)?;
    let mut pos = HEADER_LEN;
    let mut table = Vec::new();
    table.extend_from_slice(&(segments.len() as u64).to_le_bytes());
    for (i, seg) in segments.iter().enumerate() {
        let pad = (ALIGN - pos % ALIGN) % ALIGN;
        w.write_all(&[0u8; ALIGN as usize][..pad as usize])?;
        pos += pad;
        let kind = if i == 0 {
            SegmentKind::Pickle
        } else {
            SegmentKind::Buffer
        };
        let size = match seg {
            SegmentData::Raw {
                codec: Codec::Lz4, ..
            } => lz4_chunk_size,
            _ => chunk_size,
        };
        let entry = write_segment(w, seg, kind, pos, size)?;
        pos += entry.stored_len;
        encode_segment(&mut table, &entry);
    }
    let digest = table_digest(&header, &table);
    w.write_all(&table)?;
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(&pos.to_le_bytes());
    trailer.extend_from_slice(&(table.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&digest);
    trailer.extend_from_slice(&END_MAGIC);
    w.write_all(&trailer)?;
    w.flush()?;
    Ok(pos + table.len() as u64 + TRAILER_LEN)
}

fn write_segment<W: Write>(
    w: &mut W,
    seg: &SegmentData<'_>,
    kind: SegmentKind,
    offset: u64,
    chunk_size: usize,
) -> Result<Segment, ContainerError> {
    let mut chunks = Vec::new();
    let mut shuffle_used = 0u32;
    let (data, codec, shuffle) = match seg {
        SegmentData::Raw { data, codec, .. } | SegmentData::Precompressed { data, codec, .. } => (
            *data,
            *codec,
            if let SegmentData::Raw { shuffle, .. } = seg {
                *shuffle
            } else {
                0
            },
        ),
    };
    let raw_chunks: Vec<&[u8]> = data.chunks(chunk_size).collect();
    let mut pos = offset;
    let mut push = |chunks: &mut Vec<ChunkEntry>, stored: u64, raw: u64, digest: Digest| {
        chunks.push(ChunkEntry {
            offset: pos,
            stored_len: stored,
            raw_len: raw,
            digest,
        });
        pos += stored;
    };
    match (seg, codec) {
        (SegmentData::Raw { .. }, Codec::None) => {
            let digests = if data.len() < PARALLEL_HASH_MIN {
                w.write_all(data)?;
                data.chunks(chunk_size).map(codec::digest).collect()
            } else {
                // hash on the other cores while this thread copies the buffer to the file
                let (digests, written) = std::thread::scope(|s| {
                    let hasher = s.spawn(|| codec::chunk_digests(data, chunk_size));
                    let written = w.write_all(data);
                    (hasher.join(), written)
                });
                written?;
                digests.map_err(|_| io::Error::other("hashing thread panicked"))?
            };
            for (c, d) in raw_chunks.iter().zip(digests) {
                push(&mut chunks, c.len() as u64, c.len() as u64, d);
            }
        }
        (SegmentData::Raw { .. }, Codec::Lz4) => {
            let shuffle = codec::choose_shuffle(data, chunk_size, shuffle as usize) as u32;
            shuffle_used = shuffle;
            // the pool compresses (and digests) the next chunks while this thread writes the
            // finished ones in order; a bounded window keeps memory at a few chunks
            crate::threads::map_ordered(
                &raw_chunks,
                WRITE_WINDOW_CHUNKS,
                |raw| codec::lz4_compress_chunk(raw, shuffle as usize),
                |i, c| -> Result<(), ContainerError> {
                    w.write_all(&c.stored)?;
                    push(
                        &mut chunks,
                        c.stored.len() as u64,
                        raw_chunks[i].len() as u64,
                        c.digest,
                    );
                    Ok(())
                },
            )?;
        }
        (
            SegmentData::Precompressed { chunks: pre, .. },
            Codec::Zlib | Codec::Bz2 | Codec::Lzma | Codec::External,
        ) => {
            if pre.len() != raw_chunks.len() {
                return corrupt(format!(
                    "{} compressed chunks given for {} raw chunks",
                    pre.len(),
                    raw_chunks.len()
                ));
            }
            let stored: Vec<&[u8]> = pre
                .iter()
                .zip(&raw_chunks)
                .map(|(p, raw)| {
                    if p.is_empty() || p.len() >= raw.len() {
                        *raw
                    } else {
                        *p
                    }
                })
                .collect();
            let digests: Vec<Digest> =
                crate::threads::install(|| stored.par_iter().map(|c| codec::digest(c)).collect());
            for ((c, raw), d) in stored.iter().zip(&raw_chunks).zip(digests) {
                w.write_all(c)?;
                push(&mut chunks, c.len() as u64, raw.len() as u64, d);
            }
        }
        _ => return corrupt(format!("codec {codec:?} cannot be written this way")),
    }
    Ok(Segment {
        kind,
        codec,
        shuffle: shuffle_used,
        offset,
        stored_len: pos - offset,
        raw_len: data.len() as u64,
        chunk_size: chunk_size as u32,
        chunks,
    })
}

fn encode_segment(out: &mut Vec<u8>, s: &Segment) {
    out.push(s.kind as u8);
    out.push(s.codec as u8);
    out.push(u8::from(s.shuffle > 1));
    out.push(0);
    out.extend_from_slice(&s.shuffle.to_le_bytes());
    out.extend_from_slice(&s.offset.to_le_bytes());
    out.extend_from_slice(&s.stored_len.to_le_bytes());
    out.extend_from_slice(&s.raw_len.to_le_bytes());
    out.extend_from_slice(&s.chunk_size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for c in &s.chunks {
        if s.codec != Codec::None {
            out.extend_from_slice(&c.stored_len.to_le_bytes());
        }
        out.extend_from_slice(&c.digest);
    }
}

/// Sets [`FLAG_MAPPED_WRITABLE`] in a container's header (one 4-byte positioned write), so
/// later loads stop verifying uncompressed data that a writable memory map may change.
pub fn mark_mapped_writable(path: &std::path::Path) -> Result<(), ContainerError> {
    let src = FileSource::open(path)?;
    let table = read_table(&src)?;
    if table.flags & FLAG_MAPPED_WRITABLE != 0 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let flags = (table.flags | FLAG_MAPPED_WRITABLE).to_le_bytes();
    #[cfg(unix)]
    std::os::unix::fs::FileExt::write_all_at(&file, &flags, FLAGS_OFFSET as u64)?;
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        if file.seek_write(&flags, FLAGS_OFFSET as u64)? != flags.len() {
            return Err(io::Error::other("short write").into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(n: usize) -> Vec<u8> {
        let mut x: u64 = 88172645463325252;
        (0..n)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = ((x % 20000) as f64 - 10000.0) / 1000.0;
                v.to_le_bytes()
            })
            .collect()
    }

    fn build(codec: Codec, shuffle: u32, chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let pickle = b"pickle stream".to_vec();
        let a = floats(4_000);
        let b = vec![7u8; 3];
        let empty: Vec<u8> = Vec::new();
        let segs = vec![
            SegmentData::Raw {
                data: &pickle,
                codec,
                shuffle: 0,
            },
            SegmentData::Raw {
                data: &a,
                codec,
                shuffle,
            },
            SegmentData::Raw {
                data: &b,
                codec,
                shuffle: 0,
            },
            SegmentData::Raw {
                data: &empty,
                codec,
                shuffle: 0,
            },
        ];
        let mut out = Vec::new();
        let n = write_container(&mut out, &segs, chunk, chunk).unwrap();
        assert_eq!(n as usize, out.len());
        (out, vec![pickle, a, b, empty])
    }

    fn read_all(file: &[u8], verify: bool) -> Result<Vec<Vec<u8>>, ContainerError> {
        let table = read_table(file)?;
        let mut bufs: Vec<Vec<u8>> = table
            .segments
            .iter()
            .map(|s| vec![0u8; s.raw_len as usize])
            .collect();
        let jobs = table
            .segments
            .iter()
            .zip(bufs.iter_mut())
            .map(|(segment, dst)| ReadJob {
                segment,
                dst: dst.as_mut_slice(),
            })
            .collect();
        read_segments(file, jobs, verify)?;
        Ok(bufs)
    }

    #[test]
    fn roundtrip_every_codec_path() {
        for (codec, shuffle) in [(Codec::None, 0), (Codec::Lz4, 0), (Codec::Lz4, 8)] {
            let (file, want) = build(codec, shuffle, 4096);
            let table = read_table(file.as_slice()).unwrap();
            for s in &table.segments {
                assert_eq!(s.offset % ALIGN, 0);
            }
            assert_eq!(read_all(&file, true).unwrap(), want);
        }
    }

    #[test]
    fn no_single_byte_flip_gives_wrong_data() {
        let (file, want) = build(Codec::Lz4, 8, 16384);
        let table_offset = le_u64(&file[file.len() - TRAILER_LEN as usize..]) as usize;
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            let structure = i < HEADER_LEN as usize || i >= table_offset;
            match read_all(&bad, true) {
                Err(ContainerError::Corrupt(_)) => {}
                // data flips lz4 decodes to the same bytes (or padding) are harmless
                Ok(got) => {
                    assert!(
                        !structure,
                        "flip at {i} in header/table/trailer not detected"
                    );
                    assert_eq!(got, want, "flip at {i} gave wrong data");
                }
                Err(e) => panic!("flip at {i}: unexpected error {e}"),
            }
        }
    }

    #[test]
    fn external_codec_name_roundtrips_and_is_checked() {
        let raw = vec![7u8; 10_000];
        let pickle = b"pickle stream".to_vec();
        // "compressed" by the caller: any bytes shorter than the raw chunk
        let pre: Vec<&[u8]> = vec![&raw[..100]; 3];
        let segs = [
            SegmentData::Raw {
                data: &pickle,
                codec: Codec::None,
                shuffle: 0,
            },
            SegmentData::Precompressed {
                data: &raw,
                codec: Codec::External,
                chunks: pre,
            },
        ];
        let mut out = Vec::new();
        assert!(matches!(
            write_container(&mut out, &segs, 4096, 4096),
            Err(ContainerError::Corrupt(_))
        ));
        let mut file = Vec::new();
        write_container_named(&mut file, &segs, 4096, 4096, Some("zstd-ish")).unwrap();
        let table = read_table(file.as_slice()).unwrap();
        assert_eq!(table.codec_name.as_deref(), Some("zstd-ish"));
        assert_eq!(table.version, (VERSION_MAJOR, 1));
        assert_eq!(table.segments[1].codec, Codec::External);
        assert_eq!(table.segments[1].chunks[0].stored_len, 100);
        let stored = read_stored_chunk(file.as_slice(), &table.segments[1], 2, true).unwrap();
        assert_eq!(stored, raw[..100].to_vec());
        // files without one keep version 1.0 and no name
        let (plain, _) = build(Codec::Lz4, 0, 4096);
        let t = read_table(plain.as_slice()).unwrap();
        assert_eq!((t.version, t.codec_name), ((VERSION_MAJOR, 0), None));
        // a name that is too long is refused before anything is written
        let long = "x".repeat(MAX_CODEC_NAME_LEN + 1);
        let mut out = Vec::new();
        assert!(write_container_named(&mut out, &segs, 4096, 4096, Some(&long)).is_err());
        assert!(out.is_empty());
        // a header whose name length runs past the reserved bytes is corrupt
        let mut bad = file.clone();
        bad[CODEC_NAME_OFFSET] = (MAX_CODEC_NAME_LEN + 1) as u8;
        assert!(matches!(
            read_table(bad.as_slice()),
            Err(ContainerError::Corrupt(_))
        ));
    }

    #[test]
    fn max_output_len_bounds_every_output() {
        let noise: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let zeros = vec![0u8; 30_000];
        for codec in [Codec::None, Codec::Lz4] {
            for chunk in [64usize, 4096, 1 << 20] {
                let segs = [
                    SegmentData::Raw {
                        data: &zeros[..100],
                        codec,
                        shuffle: 0,
                    },
                    SegmentData::Raw {
                        data: &noise,
                        codec,
                        shuffle: 0,
                    },
                    SegmentData::Raw {
                        data: &[],
                        codec,
                        shuffle: 0,
                    },
                    SegmentData::Raw {
                        data: &zeros,
                        codec,
                        shuffle: 4,
                    },
                ];
                let mut out = Vec::new();
                write_container(&mut out, &segs, chunk, chunk).unwrap();
                assert!(
                    out.len() <= max_output_len(&segs, chunk, chunk),
                    "{codec:?} {chunk}"
                );
            }
        }
    }

    #[test]
    fn truncation_is_detected_at_every_length() {
        let (file, _) = build(Codec::None, 0, 4096);
        for n in 0..file.len() {
            assert!(matches!(
                read_all(&file[..n], true),
                Err(ContainerError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn precompressed_chunks_are_written_and_verified() {
        let pickle = b"p".to_vec();
        let data = vec![1u8; 10_000];
        let fake = vec![0xAAu8; 10];
        let chunks: Vec<&[u8]> = vec![&fake, &fake, &[]];
        let segs = vec![
            SegmentData::Raw {
                data: &pickle,
                codec: Codec::None,
                shuffle: 0,
            },
            SegmentData::Precompressed {
                data: &data,
                codec: Codec::Zlib,
                chunks,
            },
        ];
        let mut out = Vec::new();
        write_container(&mut out, &segs, 4096, 4096).unwrap();
        let table = read_table(out.as_slice()).unwrap();
        let seg = &table.segments[1];
        assert_eq!(seg.chunks[0].stored_len, 10);
        assert_eq!(seg.chunks[2].stored_len, seg.chunks[2].raw_len); // empty -> raw
        assert_eq!(
            read_stored_chunk(out.as_slice(), seg, 0, true).unwrap(),
            fake
        );
        assert_eq!(
            read_stored_chunk(out.as_slice(), seg, 2, true).unwrap(),
            &data[8192..]
        );
        let mut bad = out.clone();
        bad[seg.chunks[1].offset as usize] ^= 1;
        assert!(read_stored_chunk(bad.as_slice(), seg, 1, true).is_err());
        assert!(read_stored_chunk(bad.as_slice(), seg, 1, false).is_ok());
    }

    #[test]
    fn huge_declared_length_is_rejected_without_allocating() {
        let (mut file, _) = build(Codec::None, 0, 4096);
        // rewrite the first buffer's raw/stored length to 2^60 and fix the table digest
        let size = file.len();
        let t_off = le_u64(&file[size - 56..]) as usize;
        let t_len = le_u64(&file[size - 48..]) as usize;
        let entry1 = t_off + 8 + ENTRY_FIXED_LEN + 32; // after the pickle entry and its digest
        file[entry1 + 16..entry1 + 24].copy_from_slice(&(1u64 << 60).to_le_bytes());
        file[entry1 + 24..entry1 + 32].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let d = table_digest(&file[..64], &file[t_off..t_off + t_len]);
        file[size - 40..size - 8].copy_from_slice(&d);
        let err = read_table(file.as_slice()).unwrap_err().to_string();
        assert!(err.contains("segment 1"), "{err}");
    }
}

/// Property-based fuzzing of the parser: arbitrary bytes and mutated valid containers must
/// give an error or the exact original data, never a panic, a hang or a huge allocation.
/// CI runs the default number of cases; `PROPTEST_CASES=100000 cargo test --release fuzz`
/// fuzzes longer.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn container(segs: &[(Vec<u8>, u8, u32)], chunk: usize) -> Vec<u8> {
        let specs: Vec<SegmentData<'_>> = segs
            .iter()
            .map(|(data, codec, shuffle)| SegmentData::Raw {
                data,
                codec: if *codec == 0 { Codec::None } else { Codec::Lz4 },
                shuffle: *shuffle,
            })
            .collect();
        let mut out = Vec::new();
        write_container(&mut out, &specs, chunk, chunk).expect("writing to a Vec cannot fail");
        out
    }

    fn read_all(file: &[u8]) -> Result<Vec<Vec<u8>>, ContainerError> {
        let table = read_table(file)?;
        let mut bufs: Vec<Vec<u8>> = table
            .segments
            .iter()
            .map(|s| vec![0u8; s.raw_len as usize])
            .collect();
        let jobs = table
            .segments
            .iter()
            .zip(bufs.iter_mut())
            .map(|(segment, dst)| ReadJob {
                segment,
                dst: dst.as_mut_slice(),
            })
            .collect();
        read_segments(file, jobs, true)?;
        Ok(bufs)
    }

    fn segment() -> impl Strategy<Value = (Vec<u8>, u8, u32)> {
        (
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..600),
                proptest::collection::vec(0u8..3, 0..3000),
            ],
            0u8..2,
            prop_oneof![Just(0u32), Just(2), Just(4), Just(8)],
        )
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Truncate(usize),
        Insert(usize, u8),
        OverwriteU64(usize, u64),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
            (any::<usize>(), any::<u64>()).prop_map(|(i, x)| Mutation::OverwriteU64(i, x)),
        ]
    }

    fn apply(file: &mut Vec<u8>, m: &Mutation) {
        let n = file.len();
        match *m {
            Mutation::Flip(i, x) => file[i % n] ^= x,
            Mutation::Truncate(i) => file.truncate(i % n),
            Mutation::Insert(i, x) => file.insert(i % n, x),
            Mutation::OverwriteU64(i, x) => {
                let at = (i % n).min(n.saturating_sub(8));
                let end = (at + 8).min(n);
                file[at..end].copy_from_slice(&x.to_le_bytes()[..end - at]);
            }
        }
    }

    /// 400 cases in CI; `PROPTEST_CASES` raises it for a longer local run.
    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400);
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = read_all(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = read_all(&with_magic);
        }

        #[test]
        fn roundtrip(segs in proptest::collection::vec(segment(), 1..5), chunk in 1usize..2000) {
            let file = container(&segs, chunk);
            let got = read_all(&file).expect("a fresh container reads back");
            let want: Vec<Vec<u8>> = segs.into_iter().map(|s| s.0).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn mutated_containers_error_or_read_exactly(
            segs in proptest::collection::vec(segment(), 1..4),
            chunk in 64usize..1500,
            muts in proptest::collection::vec(mutation(), 1..4),
        ) {
            let mut file = container(&segs, chunk);
            for m in &muts {
                if file.is_empty() {
                    break;
                }
                apply(&mut file, m);
            }
            if let Ok(got) = read_all(&file) {
                let want: Vec<Vec<u8>> = segs.into_iter().map(|s| s.0).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
