//! The layout of a container: constants, the segment table's types, and the parsing and
//! encoding of header, table and trailer (every declared size checked against the file).

use crate::codec::{self, Digest, DIGEST_LEN, MAX_CHUNK_SIZE};
use crate::error::{corrupt, invalid, Error, Result};

use super::sources::Source;

/// First 8 bytes of every container.
pub const MAGIC: [u8; 8] = *b"\x93JOBLITE";
/// Last 8 bytes of every container.
pub const END_MAGIC: [u8; 8] = *b"JBLTEND\x00";
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 1;
/// Header bytes 16..64 name the external codec, if any: one length byte, then UTF-8.
pub(super) const CODEC_NAME_OFFSET: usize = 16;
/// Longest external codec name the header holds.
pub const MAX_CODEC_NAME_LEN: usize = HEADER_LEN as usize - CODEC_NAME_OFFSET - 1;
pub const HEADER_LEN: u64 = 64;
pub const TRAILER_LEN: u64 = 56;
/// Segment alignment (bytes): enough for any numpy dtype and for AVX-512 loads.
pub const ALIGN: u64 = 64;
/// [`Table::flags`] bit: the file was opened as a writable memory map, so the digests of its
/// uncompressed buffer segments may no longer match (they are not verified any more). In the
/// header this is not a bit but the whole flags word set to [`mapped_writable_mark`], a value
/// derived from the table digest: no bit flip (no damage short of a forgery) can turn data
/// verification off.
pub const FLAG_MAPPED_WRITABLE: u32 = 1;
/// [`Table::flags`] bit: the header holds joblite 0.1.0's mark (flags word 1), which a single
/// bit flip can make. Such files stay fully verified; a checksum failure in them may mean
/// they were written through a writable map (the reader says so).
pub const FLAG_LEGACY_MAPPED: u32 = 2;
/// The flags word joblite 0.1.0 wrote to mark a writable map.
const LEGACY_MARK: u32 = 1;
pub(super) const FLAGS_OFFSET: usize = 12;
pub(super) const ENTRY_FIXED_LEN: usize = 40;
/// Most table bytes one chunk takes (stored length and digest).
pub(super) const MAX_CHUNK_ENTRY_LEN: usize = 8 + DIGEST_LEN;

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
    pub(super) fn max_expansion(self) -> u64 {
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
    /// [`FLAG_MAPPED_WRITABLE`] and/or [`FLAG_LEGACY_MAPPED`] (decoded from the header).
    pub flags: u32,
    /// The name of the external codec the segments of codec [`Codec::External`] use.
    pub codec_name: Option<String>,
    pub segments: Vec<Segment>,
    /// The digest of header and table (from the trailer, verified).
    pub digest: Digest,
}

pub(super) struct Cursor<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    pub(super) fn digest(&mut self) -> Result<Digest> {
        let mut d = [0u8; DIGEST_LEN];
        d.copy_from_slice(self.take(DIGEST_LEN)?);
        Ok(d)
    }
}

pub(super) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub(super) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
pub(super) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The digest stored in the trailer: blake3 over the header (with the flags word zeroed, since
/// marking a file mapped-writable must not invalidate it) followed by the table bytes.
pub(super) fn table_digest(header: &[u8], table: &[u8]) -> Digest {
    let mut h = header.to_vec();
    h[FLAGS_OFFSET..FLAGS_OFFSET + 4].fill(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&h);
    hasher.update(table);
    *hasher.finalize().as_bytes()
}

/// The flags word that marks a file mapped writable: 32 bits of blake3 over a context string
/// and the file's table digest, so only a writer that read the (verified) table can make it,
/// and damage to a flags word of 0 (or to the mark) gives an invalid header instead.
pub fn mapped_writable_mark(table_digest: &Digest) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(b"joblite 1.x mapped-writable mark");
    h.update(table_digest);
    let b = h.finalize();
    let v = le_u32(&b.as_bytes()[..4]);
    // never 0 (unmarked) or the legacy value
    if v <= LEGACY_MARK {
        v | 0x8000_0000
    } else {
        v
    }
}

/// Decodes the header's flags word into [`Table::flags`] bits.
fn decode_flags(word: u32, table_digest: &Digest) -> Result<u32> {
    if word == 0 {
        Ok(0)
    } else if word == LEGACY_MARK {
        Ok(FLAG_LEGACY_MAPPED)
    } else if word == mapped_writable_mark(table_digest) {
        Ok(FLAG_MAPPED_WRITABLE)
    } else {
        corrupt(format!("invalid header flags {word:#010x}"))
    }
}

/// Whether `head` (the first bytes of a file) starts like a joblite container.
pub fn has_magic(head: &[u8]) -> bool {
    head.len() >= MAGIC.len() && head[..MAGIC.len()] == MAGIC
}

/// Reads and validates header, trailer and table. Allocates only what the file really holds.
pub fn read_table<S: Source + ?Sized>(src: &S) -> Result<Table> {
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
        return Err(Error::Truncated(format!(
            "truncated: {size} bytes, shorter than the header"
        )));
    }
    src.read_exact_at(0, &mut header)?;
    if !has_magic(&header) {
        return corrupt("not a joblite file (wrong magic bytes)");
    }
    let major = le_u16(&header[8..]);
    let minor = le_u16(&header[10..]);
    if major != VERSION_MAJOR {
        return Err(Error::Unsupported(format!(
            "unsupported format version {major}.{minor} (this joblite reads {VERSION_MAJOR}.x)"
        )));
    }
    let flags_word = le_u32(&header[FLAGS_OFFSET..]);
    let codec_name = parse_codec_name(&header)?;
    if size < HEADER_LEN + TRAILER_LEN {
        return Err(Error::Truncated(format!(
            "truncated: {size} bytes, no room for the trailer"
        )));
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
        return Err(Error::Checksum(
            "header or segment table failed its checksum".into(),
        ));
    }
    let flags = decode_flags(flags_word, &want)?;
    let segments = parse_segments(&table, table_offset)?;
    if codec_name.is_none() && segments.iter().any(|s| s.codec == Codec::External) {
        return corrupt("a segment uses an external codec, but the header names none");
    }
    Ok(Table {
        version: (major, minor),
        flags,
        digest: want,
        codec_name,
        segments,
    })
}

/// The external codec name of a header (bytes 16..64: length byte, UTF-8 name, zeros).
pub(super) fn parse_codec_name(header: &[u8]) -> Result<Option<String>> {
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

pub(super) fn encode_codec_name(header: &mut [u8], name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_CODEC_NAME_LEN {
        return invalid(format!(
            "codec name {name:?} must be 1 to {MAX_CODEC_NAME_LEN} bytes of UTF-8"
        ));
    }
    header[CODEC_NAME_OFFSET] = bytes.len() as u8;
    header[CODEC_NAME_OFFSET + 1..CODEC_NAME_OFFSET + 1 + bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Parses the table bytes; `data_end` is where segment data must end (the table's offset).
pub fn parse_segments(table: &[u8], data_end: u64) -> Result<Vec<Segment>> {
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

fn parse_segment(cur: &mut Cursor<'_>, i: u64, prev_end: u64, data_end: u64) -> Result<Segment> {
    let bad = |what: String| Error::Corrupt(format!("segment {i}: {what}"));
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

pub(super) fn encode_segment(out: &mut Vec<u8>, s: &Segment) {
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
