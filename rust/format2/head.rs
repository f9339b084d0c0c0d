//! The header unit: the first bytes of a format-2 dump, holding the raw header `H`
//! (`PROTO 5`, `BINBYTES8 n`, the n-byte index, `POP`) in the codec's framing. For none,
//! zlib, gzip, lz4 and zstd, `H` is stored uncompressed (stored deflate blocks, an
//! uncompressed lz4 block, raw zstd blocks), so its size is known before it is written
//! and a reader finds it without a decoder; bz2 and xz compress it as their first stream.

use std::io::Write;

use super::chunk::{lz4_header, LZ4_BLOCK_MAX, LZ4_MAGIC};
use super::source::Window;
use super::{corrupt, Codec, Error};
use crate::error::truncated;

/// `PROTO 5` `BINBYTES8` (+ u64 length), before the index.
pub const H_PREFIX_LEN: usize = 11;
/// Bytes of `H` around the index: the prefix and the trailing `POP`.
pub const H_OVERHEAD: usize = H_PREFIX_LEN + 1;
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// A zstd file starts with a skippable frame (magic 0x184D2A55) that zstd tools skip and
/// whose bytes, read as a pickle by joblib, raise a ValueError saying what the file is.
pub const ZSTD_NOTE_MAGIC: [u8; 4] = [0x55, 0x2a, 0x4d, 0x18];
pub const ZSTD_NOTE_LEN: usize = 8 + 256;
const ZSTD_NOTE_TEXT: &str = "joblite: this file is compressed with zstd \
(joblite.dump(..., compress='zstd')), which joblib cannot read: load it with joblite.load, \
or write it again with another codec";

/// The skippable frame a zstd dump starts with. Read as a pickle: SHORT_BINSTRING (`U`, 42
/// bytes: the rest of the frame header and 36 filler bytes), then `builtins.int(TEXT)`,
/// which raises `ValueError: invalid literal for int() ...: 'joblite: ...'`.
pub fn zstd_note() -> Vec<u8> {
    let mut content = vec![b'-'; 36];
    content.extend_from_slice(b"cbuiltins\nint\n");
    content.push(b'X');
    content.extend_from_slice(&(ZSTD_NOTE_TEXT.len() as u32).to_le_bytes());
    content.extend_from_slice(ZSTD_NOTE_TEXT.as_bytes());
    content.extend_from_slice(b"\x85R.");
    content.resize(ZSTD_NOTE_LEN - 8, b' ');
    let mut out = Vec::with_capacity(ZSTD_NOTE_LEN);
    out.extend_from_slice(&ZSTD_NOTE_MAGIC);
    out.extend_from_slice(&((ZSTD_NOTE_LEN - 8) as u32).to_le_bytes());
    out.extend_from_slice(&content);
    out
}
const ZSTD_BLOCK_MAX: usize = 128 << 10;
const STORED_MAX: usize = 65535;

/// `H` for an index.
pub fn raw_header(index: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(index.len() + H_OVERHEAD);
    h.extend_from_slice(&[0x80, 5, 0x8e]);
    h.extend_from_slice(&(index.len() as u64).to_le_bytes());
    h.extend_from_slice(index);
    h.push(b'0');
    h
}

fn zlib_flg(level: i32) -> u8 {
    match level {
        ..=1 => 0x01,
        2..=5 => 0x5e,
        6 => 0x9c,
        _ => 0xda,
    }
}

/// Bytes the header unit takes in the file for `h_len` raw bytes (None for bz2 / xz, whose
/// header unit is compressed).
pub fn framed_len(codec: Codec, h_len: usize) -> Option<usize> {
    let stored = h_len + 5 * h_len.div_ceil(STORED_MAX).max(1);
    Some(match codec {
        Codec::None => h_len,
        Codec::Zlib => 2 + stored,
        Codec::Gzip => 10 + stored,
        Codec::Lz4 => 7 + 4 * h_len.div_ceil(LZ4_BLOCK_MAX).max(1) + h_len + 4,
        Codec::Zstd => {
            ZSTD_NOTE_LEN + 4 + 1 + 8 + 3 * h_len.div_ceil(ZSTD_BLOCK_MAX).max(1) + h_len
        }
        Codec::Bz2 | Codec::Xz => return None,
    })
}

/// The header unit for `h` in the framing of `codec`.
pub fn frame(codec: Codec, level: i32, h: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(h.len() + 64);
    match codec {
        Codec::None => out.extend_from_slice(h),
        Codec::Zlib | Codec::Gzip => {
            if codec == Codec::Zlib {
                out.extend_from_slice(&[0x78, zlib_flg(level)]);
            } else {
                out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
            }
            for block in h.chunks(STORED_MAX) {
                let n = block.len() as u16;
                out.push(0x00);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&(!n).to_le_bytes());
                out.extend_from_slice(block);
            }
        }
        Codec::Lz4 => {
            out.extend_from_slice(&lz4_header());
            for block in h.chunks(LZ4_BLOCK_MAX) {
                out.extend_from_slice(&(block.len() as u32 | 0x8000_0000).to_le_bytes());
                out.extend_from_slice(block);
            }
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        Codec::Zstd => {
            out.extend_from_slice(&zstd_note());
            out.extend_from_slice(&ZSTD_MAGIC);
            out.push(0xe0); // 8-byte content size, single segment, no checksum, no dict
            out.extend_from_slice(&(h.len() as u64).to_le_bytes());
            let n = h.len().div_ceil(ZSTD_BLOCK_MAX);
            for (i, block) in h.chunks(ZSTD_BLOCK_MAX).enumerate() {
                let last = u32::from(i + 1 == n);
                let word = ((block.len() as u32) << 3) | last; // block type 0 = raw
                out.extend_from_slice(&word.to_le_bytes()[..3]);
                out.extend_from_slice(block);
            }
        }
        Codec::Bz2 | Codec::Xz => {
            let st = super::chunk::compress(codec, level.clamp(1, 9), &[h])?;
            out = st.bytes;
        }
    }
    Ok(out)
}

/// The codec a dump's first bytes announce, if they can start a format-2 dump.
pub fn sniff(head: &[u8]) -> Option<Codec> {
    if head.starts_with(&[0x80, 5, 0x8e]) {
        Some(Codec::None)
    } else if head.len() >= 2
        && head[0] == 0x78
        && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
    {
        Some(Codec::Zlib)
    } else if head.starts_with(&[0x1f, 0x8b, 8]) {
        Some(Codec::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(Codec::Bz2)
    } else if head.starts_with(b"\xfd7zXZ\x00") {
        Some(Codec::Xz)
    } else if head.starts_with(&LZ4_MAGIC) {
        Some(Codec::Lz4)
    } else if head.starts_with(&ZSTD_NOTE_MAGIC) {
        Some(Codec::Zstd)
    } else {
        None
    }
}

/// Whether the start of the raw stream is a format-2 `H` start; its index length then.
fn h_index_len(raw: &[u8]) -> Option<u64> {
    if raw.len() < H_PREFIX_LEN || raw[..3] != [0x80, 5, 0x8e] {
        return None;
    }
    Some(u64::from_le_bytes(raw[3..11].try_into().ok()?))
}

/// What the header unit holds.
pub struct Found {
    pub codec: Codec,
    /// the index bytes
    pub index: Vec<u8>,
    /// where the data section starts, from the dump's start
    pub base: u64,
}

/// Finds and unframes the header unit of the dump `src` starts with; Ok(None) when the
/// dump is not format 2 (a joblib file, say). The index length believed is bounded by the
/// bytes the window holds.
pub fn find(src: &mut Window<'_>) -> Result<Option<Found>, Error> {
    let limit = src.avail();
    let found = find_framed(src, limit)?;
    if found.is_none() && damaged_opening(src)? {
        // Not refused, a flipped bit in the opening would send the file to the joblib
        // reader, which has no checksums: damaged data would then load silently.
        return Err(corrupt(
            "it holds a joblite format-2 index but its opening bytes are damaged",
        ));
    }
    if found.is_none() && skippable_frame(src.prefix(4)?) {
        // joblite's zstd dumps start with a skippable frame, and no joblib format does (a
        // plain zstd stream, which a registered compressor may write, is left to those)
        return Err(corrupt(
            "it starts with a zstd skippable frame, as a joblite zstd dump does, but is not \
             a readable one: the file is damaged or truncated (joblib cannot read zstd files \
             at all)",
        ));
    }
    Ok(found)
}

/// Whether `head` starts with the magic of a zstd skippable frame (0x184D2A50..5F).
fn skippable_frame(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == ZSTD_NOTE_MAGIC[1..4]
}

/// Where the index starts in a dump of `codec` whose header unit is stored as is (its
/// length field is the 8 bytes before); None for bz2 / xz, whose header unit is compressed.
pub fn index_at(codec: Codec) -> Option<usize> {
    Some(match codec {
        Codec::None => H_PREFIX_LEN,
        Codec::Zlib => 2 + 5 + H_PREFIX_LEN,
        Codec::Gzip => 10 + 5 + H_PREFIX_LEN,
        Codec::Lz4 => 7 + 4 + H_PREFIX_LEN,
        Codec::Zstd => ZSTD_NOTE_LEN + 13 + 3 + H_PREFIX_LEN,
        Codec::Bz2 | Codec::Xz => return None,
    })
}

/// Bytes an opening must hold at an offset.
type FixedBytes = (usize, Vec<u8>);

/// Where the index magic lies when `H` is stored as is (none, zlib, gzip, lz4, zstd), and
/// the fixed bytes of that codec's opening before it (offset, bytes; length fields left out).
fn stored_openings() -> [(usize, Vec<FixedBytes>); 5] {
    let proto = vec![0x80, 5, 0x8e];
    let note = zstd_note();
    let at = |codec| index_at(codec).expect("stored header unit");
    [
        (at(Codec::None), vec![(0, proto.clone())]),
        (
            at(Codec::Zlib),
            vec![(0, vec![0x78]), (2, vec![0]), (7, proto.clone())],
        ),
        (
            at(Codec::Gzip),
            vec![
                (0, vec![0x1f, 0x8b, 8, 0]),
                (10, vec![0]),
                (15, proto.clone()),
            ],
        ),
        (
            at(Codec::Lz4),
            vec![(0, lz4_header().to_vec()), (11, proto.clone())],
        ),
        (
            at(Codec::Zstd),
            vec![
                (0, note[..8].to_vec()),
                (ZSTD_NOTE_LEN, [&ZSTD_MAGIC[..], &[0xe0]].concat()),
                (ZSTD_NOTE_LEN + 16, proto),
            ],
        ),
    ]
}

/// Whether a dump that is not format 2 as framed still carries a format-2 index: the
/// magic where a stored header unit puts it behind an opening at most two bits off that
/// codec's (a joblib pickle of a dump's bytes can hold the magic at such an offset, behind
/// a different opening), or (bz2, xz) a first stream that decodes to `H` once its magic,
/// one or two bits off, is restored.
fn damaged_opening(src: &mut Window<'_>) -> Result<bool, Error> {
    let head = src
        .prefix(ZSTD_NOTE_LEN + 13 + 3 + H_PREFIX_LEN + 8)?
        .to_vec();
    let magic = &super::index::MAGIC;
    let bits =
        |a: &[u8], b: &[u8]| -> u32 { a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum() };
    for (at, fixed) in stored_openings() {
        if head.get(at..at + 8) != Some(magic.as_slice()) {
            continue;
        }
        let off: u32 = fixed
            .iter()
            .map(|(o, want)| bits(&head[*o..*o + want.len()], want))
            .sum();
        if off <= 2 {
            return Ok(true);
        }
    }
    for (codec, opening) in [(Codec::Bz2, &b"BZh"[..]), (Codec::Xz, &b"\xfd7zXZ\x00"[..])] {
        // an exact opening was read as framed: a stream that is not a dump's header unit
        // (joblib's own bz2 / xz files, a whole dump compressed at once) is no damage
        let off = head
            .get(..opening.len())
            .map_or(u32::MAX, |h| bits(h, opening));
        if head.len() < 64 || off == 0 || off > 2 {
            continue;
        }
        let mut data = src.prefix(4096)?.to_vec();
        data[..opening.len()].copy_from_slice(opening);
        if codec == Codec::Bz2 && !(b'1'..=b'9').contains(&data[3]) {
            data[3] = b'9';
        }
        let mut out = Vec::new();
        if decode_stream(codec, &data, &mut out, H_PREFIX_LEN + 8).is_ok()
            && out.len() >= H_PREFIX_LEN + 8
            && out[H_PREFIX_LEN..H_PREFIX_LEN + 8] == *magic
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn find_framed(src: &mut Window<'_>, limit: u64) -> Result<Option<Found>, Error> {
    let head = src.prefix(64)?.to_vec();
    if head.len() < 3 && [0x80, 5, 0x8e].starts_with(&head) && !head.is_empty() {
        return Err(truncated("data ends inside the header"));
    }
    let Some(codec) = sniff(&head) else {
        return Ok(None);
    };
    if codec == Codec::None && head.len() < H_PREFIX_LEN + 8 {
        // BINBYTES8 as the first opcode, and the data ends before its length: truncated
        return Err(truncated("data ends inside the header"));
    }
    let magic_ok = |raw: &[u8]| {
        raw.len() >= H_PREFIX_LEN + 8 && raw[H_PREFIX_LEN..H_PREFIX_LEN + 8] == super::index::MAGIC
    };
    match codec {
        // a compressed index may be larger than the file (its sizes are checked again when
        // decoded, and memory only grows with the bytes the decoder really produces)
        Codec::Bz2 | Codec::Xz => {
            unframe_compressed(src, codec, limit.saturating_mul(64).max(1 << 20), &magic_ok)
        }
        _ => {
            // the raw H is stored as is, after a fixed framing prefix
            let skip = match codec {
                Codec::None => 0,
                Codec::Zlib => 2,
                Codec::Gzip => {
                    if head.len() < 10 || head[3] != 0 {
                        return Ok(None); // gzip header fields joblite never writes
                    }
                    10
                }
                Codec::Lz4 => {
                    if head.len() < 7 || head[..7] != lz4_header() {
                        return Ok(None); // frame options joblite never writes
                    }
                    7
                }
                _ => {
                    // zstd: the note frame, then a frame header with an 8-byte size
                    let note = src.prefix(ZSTD_NOTE_LEN)?;
                    if note != zstd_note().as_slice() {
                        return Ok(None);
                    }
                    ZSTD_NOTE_LEN + 13
                }
            };
            let first = unframe_stored(src, codec, skip, H_PREFIX_LEN + 8)?;
            let Some(first) = first else { return Ok(None) };
            if !magic_ok(&first.0) {
                return Ok(None);
            }
            let Some(n) = h_index_len(&first.0) else {
                return Ok(None);
            };
            if n > limit {
                return Err(Error::LimitExceeded {
                    what: "an index",
                    declared: n,
                    limit: Some(limit),
                });
            }
            let h_len = n as usize + H_OVERHEAD;
            let (raw, consumed) = unframe_stored(src, codec, skip, h_len)?
                .ok_or_else(|| truncated("inside the header unit"))?;
            if raw.len() < h_len || raw[h_len - 1] != b'0' {
                return Err(corrupt("header unit is truncated or malformed"));
            }
            Ok(Some(Found {
                codec,
                index: raw[H_PREFIX_LEN..h_len - 1].to_vec(),
                base: consumed as u64,
            }))
        }
    }
}

/// The first `want` raw bytes of a stored framing (at least; it stops at block
/// boundaries) and the framed bytes they took, including the end of the header unit
/// when `want` reaches it. None when the framing is not joblite's.
fn unframe_stored(
    src: &mut Window<'_>,
    codec: Codec,
    skip: usize,
    want: usize,
) -> Result<Option<(Vec<u8>, usize)>, Error> {
    if codec == Codec::None {
        let data = src.prefix(want)?;
        if data.len() < want {
            return Ok(None);
        }
        return Ok(Some((data[..want].to_vec(), want)));
    }
    let (hdr_len, block_max) = match codec {
        Codec::Zlib | Codec::Gzip => (5usize, STORED_MAX),
        Codec::Lz4 => (4, LZ4_BLOCK_MAX),
        _ => (3, ZSTD_BLOCK_MAX),
    };
    let mut raw = Vec::new(); // grows with the blocks really read, not with `want`
    let mut pos = skip;
    if codec == Codec::Zstd {
        let d = src.prefix(skip)?;
        if d.len() < skip || d[skip - 13..skip - 9] != ZSTD_MAGIC || d[skip - 9] != 0xe0 {
            return Ok(None);
        }
    }
    while raw.len() < want {
        let data = src.prefix(pos + hdr_len)?;
        let Some(h) = data.get(pos..pos + hdr_len) else {
            return Ok(None);
        };
        let n = match codec {
            Codec::Zlib | Codec::Gzip => {
                let n = u16::from_le_bytes([h[1], h[2]]);
                if h[0] != 0 || u16::from_le_bytes([h[3], h[4]]) != !n {
                    return Ok(None);
                }
                n as usize
            }
            Codec::Lz4 => {
                let w = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                if w & 0x8000_0000 == 0 {
                    return Ok(None);
                }
                (w & 0x7fff_ffff) as usize
            }
            _ => {
                let w = u32::from_le_bytes([h[0], h[1], h[2], 0]);
                if (w >> 1) & 3 != 0 {
                    return Ok(None);
                }
                (w >> 3) as usize
            }
        };
        if n > block_max {
            return Ok(None);
        }
        pos += hdr_len;
        let take = n.min(want - raw.len());
        let data = src.prefix(pos + take)?;
        let Some(block) = data.get(pos..pos + take) else {
            return Ok(None);
        };
        raw.extend_from_slice(block);
        if take < n {
            return Ok(Some((raw, pos + take))); // only the start was wanted
        }
        pos += n;
        if n == 0 {
            break;
        }
    }
    if codec == Codec::Lz4 && raw.len() >= want {
        // the end mark closes the header frame
        let data = src.prefix(pos + 4)?;
        match data.get(pos..pos + 4) {
            Some(w) if w == [0, 0, 0, 0] => pos += 4,
            _ => return Ok(None),
        }
    }
    Ok(Some((raw, pos)))
}

fn unframe_compressed(
    src: &mut Window<'_>,
    codec: Codec,
    limit: u64,
    magic_ok: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<Found>, Error> {
    // decode the first stream, reading more input as needed; first only enough to see the
    // magic (a joblib file is not decoded further), then never more than the header's size
    let mut want_in = 4096usize;
    let mut cap = H_PREFIX_LEN + 8;
    loop {
        let data = src.prefix(want_in)?.to_vec();
        let short_input = data.len() < want_in;
        let mut out = Vec::new();
        let (ended, consumed) = decode_stream(codec, &data, &mut out, cap)?;
        if out.len() >= H_PREFIX_LEN + 8 {
            if !magic_ok(&out) {
                return Ok(None);
            }
            let Some(n) = h_index_len(&out) else {
                return Ok(None);
            };
            if n > limit {
                return Err(Error::LimitExceeded {
                    what: "an index",
                    declared: n,
                    limit: Some(limit),
                });
            }
            let h_len = n as usize + H_OVERHEAD;
            if cap < h_len + 1 {
                cap = h_len + 1;
                continue; // decode again, now up to the whole header
            }
            if ended {
                if out.len() != h_len || out[h_len - 1] != b'0' {
                    return Ok(None); // one stream holding more: a whole dump compressed at once
                }
                return Ok(Some(Found {
                    codec,
                    index: out[H_PREFIX_LEN..h_len - 1].to_vec(),
                    base: consumed as u64,
                }));
            }
            if out.len() > h_len {
                return Ok(None); // the same
            }
        } else if ended {
            return Ok(None);
        }
        if short_input {
            return if out.len() >= H_PREFIX_LEN + 8 {
                Err(truncated("the header stream ends early"))
            } else {
                Ok(None)
            };
        }
        want_in = want_in.saturating_mul(4);
    }
}

/// Decodes the start of the first bz2 / xz stream of `data` into `out`, stopping once
/// `out` holds more than `cap` bytes. Returns whether the stream ended, and the input
/// bytes it took.
fn decode_stream(
    codec: Codec,
    data: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<(bool, usize), Error> {
    let mut buf = vec![0u8; 64 << 10];
    let damaged = |e: String| corrupt(format!("header stream is damaged ({e})"));
    if codec == Codec::Bz2 {
        let mut d = bzip2::Decompress::new(false);
        loop {
            let (i0, o0) = (d.total_in(), d.total_out());
            let room = (cap + 1).saturating_sub(out.len()).clamp(1, buf.len());
            let st = d
                .decompress(&data[i0 as usize..], &mut buf[..room])
                .map_err(|e| damaged(e.to_string()))?;
            out.extend_from_slice(&buf[..(d.total_out() - o0) as usize]);
            if st == bzip2::Status::StreamEnd {
                return Ok((true, d.total_in() as usize));
            }
            if out.len() > cap || (d.total_in() == i0 && d.total_out() == o0) {
                return Ok((false, 0));
            }
        }
    }
    let mut s = liblzma::stream::Stream::new_stream_decoder(96 << 20, 0)
        .map_err(|e| damaged(e.to_string()))?;
    loop {
        let (i0, o0) = (s.total_in(), s.total_out());
        let room = (cap + 1).saturating_sub(out.len()).clamp(1, buf.len());
        let st = s
            .process(
                &data[i0 as usize..],
                &mut buf[..room],
                liblzma::stream::Action::Run,
            )
            .map_err(|e| damaged(e.to_string()))?;
        out.extend_from_slice(&buf[..(s.total_out() - o0) as usize]);
        if st == liblzma::stream::Status::StreamEnd {
            return Ok((true, s.total_in() as usize));
        }
        if out.len() > cap || (s.total_in() == i0 && s.total_out() == o0) {
            return Ok((false, 0));
        }
    }
}

/// Writes `data` to `w` (helper for the writer).
pub fn write_all(w: &mut dyn Write, data: &[u8]) -> Result<(), Error> {
    w.write_all(data)?;
    Ok(())
}
