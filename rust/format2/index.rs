//! The index a format-2 dump carries in its header unit (docs/format.md, "Index").

use super::{checksum, corrupt, Codec, Error};

pub const MAGIC: [u8; 8] = *b"JOBLITE\x02";
pub const MAJOR: u16 = 2;
pub const FIXED_LEN: usize = 64;
pub const CHUNK_ENTRY: usize = 40;
pub const BUFFER_ENTRY: usize = 24;
/// Flag bit 0: opened as a writable memory map; uncompressed buffers' checksums may be stale.
pub const FLAG_MAPPED_WRITABLE: u8 = 1;
/// Largest raw chunk a reader accepts.
pub const MAX_CHUNK: u64 = 64 << 20;
/// Most zero padding an index may carry after its tables (writers pad to align the data:
/// tens of bytes), so that its fixed part bounds its length before the rest is read.
pub const MAX_PADDING: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub stored_off: u64,
    pub stored_len: u64,
    pub raw_off: u64,
    pub raw_len: u64,
    pub xxh3: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub record_off: u64,
    pub data_off: u64,
    pub data_len: u64,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub codec: Codec,
    pub flags: u8,
    pub raw_len: u64,
    pub stored_len: u64,
    pub base: u64,
    /// zlib: the adler32 of the raw stream; gzip: its crc32 | isize << 32 (what the
    /// trailer must hold); 0 otherwise
    pub trailer: u64,
    pub chunks: Vec<Chunk>,
    pub buffers: Vec<Buffer>,
}

/// Index bytes needed for this many chunks and buffers (without padding).
pub fn needed_len(n_chunks: usize, n_buffers: usize) -> usize {
    FIXED_LEN + CHUNK_ENTRY * n_chunks + BUFFER_ENTRY * n_buffers + 8
}

/// The index length that the fixed part `fixed` (its first [`FIXED_LEN`] bytes, not yet
/// verified) allows: at least its tables, at most [`MAX_PADDING`] more. Lets a reader of a
/// stream bound an index's declared length before reading (and verifying) it.
pub fn length_range(fixed: &[u8]) -> Result<(u64, u64), Error> {
    if fixed.len() < FIXED_LEN || fixed[..8] != MAGIC {
        return Err(corrupt("not a joblite format-2 index"));
    }
    let need = tables_len(u64_at(fixed, 16), u64_at(fixed, 24))
        .and_then(|t| t.checked_add((FIXED_LEN + 8) as u64))
        .ok_or_else(|| corrupt("index tables overflow"))?;
    Ok((need, need.saturating_add(MAX_PADDING)))
}

/// The length of `H` (the index and the bytes around it) for an index declared `n` bytes
/// long, checked against what the fixed part `fixed` (not yet verified) allows: for a reader
/// of a stream, before it reads (or decodes) that many bytes.
pub fn header_len(n: u64, fixed: &[u8]) -> Result<usize, Error> {
    let (least, most) = length_range(fixed)?;
    if n < least {
        return Err(corrupt("index tables do not fit in the index"));
    }
    let too_long = || Error::LimitExceeded {
        what: "an index",
        declared: n,
        limit: Some(most),
    };
    if n > most {
        return Err(too_long());
    }
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(super::head::H_OVERHEAD))
        .filter(|h| h.checked_mul(2).is_some()) // room for the framing's arithmetic
        .ok_or_else(too_long)
}

/// Bytes of the chunk and buffer tables, None on overflow.
fn tables_len(n_chunks: u64, n_buffers: u64) -> Option<u64> {
    n_chunks
        .checked_mul(CHUNK_ENTRY as u64)?
        .checked_add(n_buffers.checked_mul(BUFFER_ENTRY as u64)?)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Index {
    /// The index bytes, zero-padded to exactly `len` (>= [`needed_len`]).
    pub fn encode(&self, len: usize) -> Result<Vec<u8>, Error> {
        let need = needed_len(self.chunks.len(), self.buffers.len());
        if len < need {
            return Err(Error::Invalid(format!(
                "index needs {need} bytes, got {len}"
            )));
        }
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&MAJOR.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.push(self.codec as u8);
        b.push(self.flags);
        b.extend_from_slice(&[0, 0]);
        for v in [
            self.chunks.len() as u64,
            self.buffers.len() as u64,
            self.raw_len,
            self.stored_len,
            self.base,
            self.trailer,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for c in &self.chunks {
            for v in [c.stored_off, c.stored_len, c.raw_off, c.raw_len, c.xxh3] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        for x in &self.buffers {
            for v in [x.record_off, x.data_off, x.data_len] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b.resize(len - 8, 0);
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        Ok(b)
    }

    /// Parses and validates index bytes. `codec` is what the framing announced, `base` where
    /// the data section really starts, `avail` the bytes from the dump's start to the end of
    /// the data. Everything the reader later trusts is checked here.
    pub fn decode(bytes: &[u8], codec: Codec, base: u64, avail: u64) -> Result<Index, Error> {
        if bytes.len() < needed_len(0, 0) || bytes[..8] != MAGIC {
            return Err(corrupt("not a joblite format-2 index"));
        }
        let body = &bytes[..bytes.len() - 8];
        if checksum(body) != u64_at(bytes, bytes.len() - 8) {
            return Err(Error::Checksum {
                what: "the index".into(),
                hint: "",
            });
        }
        let major = u16::from_le_bytes([bytes[8], bytes[9]]);
        if major != MAJOR {
            return Err(Error::Unsupported(format!(
                "format version {major}.x is not supported"
            )));
        }
        let file_codec = Codec::from_id(bytes[12])
            .ok_or_else(|| Error::Unsupported(format!("unknown codec id {}", bytes[12])))?;
        if file_codec != codec {
            // a decompressed dump (e.g. `gzip -d` output): a plain joblib stream to us
            return Err(Error::NotThisFormat(format!(
                "the index says {} but the data is framed as {}",
                file_codec.name(),
                codec.name()
            )));
        }
        let flags = bytes[13];
        let trailer = u64_at(bytes, 56);
        if flags & !FLAG_MAPPED_WRITABLE != 0
            || bytes[14..16] != [0, 0]
            || (codec.trailer_len() == 0 && trailer != 0)
        {
            return Err(corrupt("index has unknown flags or reserved fields set"));
        }
        let n_chunks = u64_at(bytes, 16);
        let n_buffers = u64_at(bytes, 24);
        let raw_len = u64_at(bytes, 32);
        let stored_len = u64_at(bytes, 40);
        let stored_base = u64_at(bytes, 48);
        let room = (body.len() - FIXED_LEN) as u64;
        let need = tables_len(n_chunks, n_buffers)
            .filter(|&n| n <= room)
            .ok_or_else(|| corrupt("index tables do not fit in the index"))?;
        if room - need > MAX_PADDING {
            return Err(Error::LimitExceeded {
                what: "index padding",
                declared: room - need,
                limit: Some(MAX_PADDING),
            });
        }
        if body[FIXED_LEN + need as usize..].iter().any(|&b| b != 0) {
            return Err(corrupt("index padding is not zero"));
        }
        if stored_base != 0 && stored_base != base {
            return Err(corrupt("index data offset disagrees with the header unit"));
        }
        let end = base
            .checked_add(stored_len)
            .and_then(|e| e.checked_add(codec.trailer_len()))
            .ok_or_else(|| corrupt("sizes overflow"))?;
        if end > avail {
            return Err(Error::Truncated(format!(
                "the index describes {end} bytes, the file has {avail}"
            )));
        }
        let h_len = bytes.len() as u64 + super::head::H_OVERHEAD as u64;
        let mut chunks = Vec::with_capacity(n_chunks as usize);
        let (mut next_stored, mut next_raw) = (0u64, h_len);
        let mut at = FIXED_LEN;
        for _ in 0..n_chunks {
            let c = Chunk {
                stored_off: u64_at(bytes, at),
                stored_len: u64_at(bytes, at + 8),
                raw_off: u64_at(bytes, at + 16),
                raw_len: u64_at(bytes, at + 24),
                xxh3: u64_at(bytes, at + 32),
            };
            at += CHUNK_ENTRY;
            if c.stored_off != next_stored || c.raw_off != next_raw {
                return Err(corrupt("chunk entries are not contiguous"));
            }
            let bound = c
                .stored_len
                .saturating_mul(codec.max_expansion())
                .saturating_add(64);
            if c.stored_len == 0
                || c.raw_len == 0
                || c.raw_len > MAX_CHUNK
                || c.raw_len > bound
                || (codec == Codec::None && c.stored_len != c.raw_len)
            {
                return Err(corrupt("a chunk entry has impossible sizes"));
            }
            next_stored = c.stored_off + c.stored_len; // <= stored_len, checked below
            next_raw = c.raw_off.saturating_add(c.raw_len);
            if next_stored > stored_len || next_raw > raw_len {
                return Err(corrupt("chunk entries run past the data"));
            }
            chunks.push(c);
        }
        if next_stored != stored_len || next_raw != raw_len {
            return Err(corrupt("chunk entries do not cover the data"));
        }
        let mut buffers = Vec::with_capacity(n_buffers as usize);
        let mut prev_end = h_len;
        for _ in 0..n_buffers {
            let x = Buffer {
                record_off: u64_at(bytes, at),
                data_off: u64_at(bytes, at + 8),
                data_len: u64_at(bytes, at + 16),
            };
            at += BUFFER_ENTRY;
            let data_end = x.data_off.checked_add(x.data_len);
            match data_end {
                Some(e) if x.record_off >= prev_end && x.data_off > x.record_off && e < raw_len => {
                    prev_end = e
                }
                _ => return Err(corrupt("a buffer entry lies outside the stream")),
            }
            buffers.push(x);
        }
        Ok(Index {
            codec,
            flags,
            raw_len,
            stored_len,
            base,
            trailer,
            chunks,
            buffers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let idx = Index {
            codec: Codec::None,
            flags: 0,
            raw_len: 200,
            stored_len: 100,
            base: 0,
            trailer: 0,
            chunks: vec![],
            buffers: vec![],
        };
        let mut idx = idx;
        let len = needed_len(1, 0) + 16;
        let h_len = (len + super::super::head::H_OVERHEAD) as u64;
        idx.chunks.push(Chunk {
            stored_off: 0,
            stored_len: 200 - h_len,
            raw_off: h_len,
            raw_len: 200 - h_len,
            xxh3: 7,
        });
        idx.stored_len = 200 - h_len;
        let b = idx.encode(len).unwrap();
        let back = Index::decode(&b, Codec::None, 0, 1000).unwrap();
        assert_eq!(back.chunks, idx.chunks);
        let mut bad = b.clone();
        bad[13] ^= 1;
        assert!(Index::decode(&bad, Codec::None, 0, 1000).is_err());
        assert!(Index::decode(&b, Codec::None, 0, 10).is_err());
    }
}
