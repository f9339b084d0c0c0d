//! Where everything goes in a format-2 dump (docs/format.md): from the pickle stream the C
//! pickler wrote and its out-of-band buffers, the bytes of the stream after the header
//! (joblib `NumpyArrayWrapper` records with their padding in place of each buffer and of
//! each large in-band `bytes` / `bytearray` / `str`), where its chunks start, the index's
//! buffer entries and the length of the header that will hold the index.
//!
//! Nothing here copies data: the layout is a list of slices of the caller's stream parts
//! and buffers, and of the small records it builds. All sizes use checked arithmetic.

use super::head::H_OVERHEAD;
use super::index::{self, Buffer};
use super::pickle_scan::{self, Piece, BYTEARRAY, BYTES, STR};
use super::{Codec, Error};

/// Payloads of `bytes` / `bytearray` / `str` (a `str`: its UTF-8 bytes) of at least this
/// many bytes become records of their own ("In-band objects").
pub const IN_BAND_MIN: u64 = 1 << 20;
/// Buffers at least this large own whole chunks in a compressed dump (read straight into
/// their memory); smaller ones share chunks with the pickle. Uncompressed: every non-empty
/// buffer owns its chunks.
pub const MIN_OWN: u64 = 64 << 10;
/// Alignment of buffer bytes in the file of an uncompressed dump (memory maps are aligned).
pub const ALIGN: u64 = 64;
/// Rounds of the header-length fixpoint (it settles in two: see [`plan`]).
const MAX_ROUNDS: usize = 8;

/// Raw bytes per chunk: lz4 / zstd / xz windows gain from larger chunks, bz2 blocks hold
/// 900 000 bytes.
pub fn chunk_size(codec: Codec) -> u64 {
    match codec {
        Codec::None | Codec::Zlib | Codec::Gzip => 1 << 20,
        Codec::Bz2 => 900_000,
        Codec::Xz | Codec::Lz4 | Codec::Zstd => 4 << 20,
    }
}

/// Per kind ([`BYTES`], [`BYTEARRAY`], [`STR`]): the pickle before an in-band object's
/// record, making it `bytes(a)`, `bytearray(a)` or `str(a, "utf-8", "surrogatepass")` of
/// the uint8 array `a` joblib reads (SHORT_BINUNICODE module and name, STACK_GLOBAL) ...
pub const IN_BAND_PREFIX: [&[u8]; 3] = [
    b"\x8c\x08builtins\x8c\x05bytes\x93",
    b"\x8c\x08builtins\x8c\x09bytearray\x93",
    b"\x8c\x08builtins\x8c\x03str\x93",
];
/// ... and after it (TUPLE1 REDUCE; `"utf-8"`, `"surrogatepass"`, TUPLE3 REDUCE).
pub const IN_BAND_SUFFIX: [&[u8]; 3] = [
    b"\x85R",
    b"\x85R",
    b"\x8c\x05utf-8\x8c\x0dsurrogatepass\x87R",
];

/// The record of a buffer of `nbytes` bytes, up to its padding: a joblib
/// `NumpyArrayWrapper` of a 1-D uint8 array (`allow_mmap` False in compressed files, as
/// joblib writes it: joblib 1.2 would try to map such an array under `mmap_mode`).
pub fn record(nbytes: u64, mappable: bool) -> Vec<u8> {
    fn short(out: &mut Vec<u8>, s: &str) {
        // SHORT_BINUNICODE: every name here is shorter than 256 bytes
        out.push(0x8c);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    let mut r = Vec::with_capacity(256);
    short(&mut r, "joblib.numpy_pickle");
    short(&mut r, "NumpyArrayWrapper");
    r.extend_from_slice(b"\x93)\x81}("); // STACK_GLOBAL EMPTY_TUPLE NEWOBJ EMPTY_DICT MARK
    short(&mut r, "subclass");
    short(&mut r, "numpy");
    short(&mut r, "ndarray");
    r.push(0x93);
    short(&mut r, "shape");
    match u32::try_from(nbytes) {
        Ok(n) if n < 1 << 31 => {
            r.push(b'J'); // BININT
            r.extend_from_slice(&n.to_le_bytes());
        }
        _ => {
            r.extend_from_slice(b"\x8a\x08"); // LONG1 of 8 bytes (nbytes < 2**63)
            r.extend_from_slice(&nbytes.to_le_bytes());
        }
    }
    r.push(0x85); // TUPLE1
    short(&mut r, "order");
    short(&mut r, "C");
    short(&mut r, "dtype");
    short(&mut r, "numpy");
    short(&mut r, "dtype");
    r.push(0x93);
    short(&mut r, "u1");
    r.extend_from_slice(b"\x89\x88\x87R(K\x03"); // False True TUPLE3 REDUCE MARK 3
    short(&mut r, "|");
    r.extend_from_slice(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
    short(&mut r, "allow_mmap");
    r.push(if mappable { 0x88 } else { 0x89 });
    short(&mut r, "numpy_array_alignment_bytes");
    r.extend_from_slice(b"K\x10ub"); // 16, SETITEMS BUILD
    r
}

/// One element of the stream after the header.
#[derive(Clone, Copy)]
enum Part<'a> {
    /// bytes kept as they are: stream pieces, in-band prefixes and suffixes, buffer data
    Bytes(&'a [u8]),
    /// the record (with padding) at this position of [`Layout::records`]
    Record(usize),
}

/// A buffer record to place: its data (one buffer, or an in-band payload in pieces) and size.
struct Pending<'a> {
    data: Vec<&'a [u8]>,
    nbytes: u64,
}

/// What [`plan`] works from: the stream after its PROTO, records not yet placed.
enum Item<'a> {
    Bytes(&'a [u8]),
    Record(Pending<'a>),
}

/// A dump's layout: what [`super::write::write`] writes.
pub struct Layout<'a> {
    parts: Vec<Part<'a>>,
    /// the records with their padding, referred to by `parts`
    records: Vec<Vec<u8>>,
    /// chunk starts, relative to the body (the stream after `H`): strictly increasing, the
    /// first 0
    pub bounds: Vec<u64>,
    /// buffer entries, relative to the body
    pub buffers: Vec<Buffer>,
    /// length of the raw header `H` (index + [`H_OVERHEAD`]), a multiple of [`ALIGN`]
    pub h_len: usize,
    /// bytes of the body
    pub body_len: u64,
}

impl<'a> Layout<'a> {
    /// The body as slices, in order.
    pub fn parts(&self) -> Vec<&[u8]> {
        self.parts
            .iter()
            .map(|p| match *p {
                Part::Bytes(b) => b,
                Part::Record(i) => &self.records[i][..],
            })
            .collect()
    }
}

fn too_large() -> Error {
    Error::Invalid("dump too large".into())
}

fn add(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b).ok_or_else(too_large)
}

fn len64(b: &[u8]) -> u64 {
    b.len() as u64
}

/// The stream to write, as kept bytes and records to place, from the pickler's `stream`
/// parts and its out-of-band `buffers` (in the order of the stream's NEXT_BUFFER opcodes).
fn sequence<'a>(stream: &[&'a [u8]], buffers: &[&'a [u8]]) -> Result<Vec<Item<'a>>, Error> {
    let pieces = pickle_scan::scan_parts(stream, IN_BAND_MIN)?;
    let n_buffers = pieces.iter().filter(|p| **p == Piece::Buffer).count();
    if n_buffers != buffers.len() {
        return Err(Error::Invalid(format!(
            "pickle stream and out-of-band buffers disagree: {n_buffers} NEXT_BUFFER opcodes, \
             {} buffers",
            buffers.len()
        )));
    }
    let mut items = Vec::with_capacity(pieces.len() + 2);
    let mut next = buffers.iter();
    let mut suffix: Option<&'static [u8]> = None;
    for piece in pieces {
        if !matches!(piece, Piece::Payload(..)) {
            if let Some(s) = suffix.take() {
                items.push(Item::Bytes(s));
            }
        }
        match piece {
            Piece::Keep(i, a, b) => items.push(Item::Bytes(&stream[i][a..b])),
            Piece::Buffer => {
                let data = *next
                    .next()
                    .ok_or_else(|| Error::Invalid("no buffer".into()))?;
                items.push(Item::Record(Pending {
                    data: vec![data],
                    nbytes: len64(data),
                }));
            }
            Piece::InBand(kind, nbytes) => {
                let k = usize::from(kind);
                debug_assert!([BYTES, BYTEARRAY, STR].contains(&kind));
                let (pre, suf) = IN_BAND_PREFIX
                    .get(k)
                    .zip(IN_BAND_SUFFIX.get(k))
                    .ok_or_else(|| Error::Invalid(format!("in-band kind {kind}")))?;
                items.push(Item::Bytes(pre));
                items.push(Item::Record(Pending {
                    data: Vec::new(),
                    nbytes,
                }));
                suffix = Some(suf);
            }
            Piece::Payload(i, a, b) => match items.last_mut() {
                Some(Item::Record(p)) => p.data.push(&stream[i][a..b]),
                _ => return Err(Error::Invalid("in-band payload without a record".into())),
            },
        }
    }
    if let Some(s) = suffix {
        items.push(Item::Bytes(s));
    }
    Ok(items)
}

/// The layout of the dump of the pickle stream `stream` (the parts the pickler wrote, PROTO
/// included) with out-of-band `buffers`, in `codec`, for a dump starting at byte
/// `dump_start` of its file (uncompressed dumps align buffer data in the file).
///
/// The header's length depends on the number of chunks and buffers, and record padding on
/// where the header ends: the layout is computed for a header length until that length
/// holds the index. Header lengths are multiples of [`ALIGN`], so padding does not change
/// from one round to the next and the second round settles it.
pub fn plan<'a>(
    stream: &[&'a [u8]],
    buffers: &[&'a [u8]],
    codec: Codec,
    dump_start: u64,
) -> Result<Layout<'a>, Error> {
    let items = sequence(stream, buffers)?;
    let mut h_len = 0usize;
    for _ in 0..MAX_ROUNDS {
        let layout = place(&items, codec, dump_start, h_len)?;
        let need = index::needed_len(layout.bounds.len(), layout.buffers.len())
            .checked_add(H_OVERHEAD)
            .ok_or_else(too_large)?;
        if need <= h_len {
            return Ok(layout);
        }
        // room for a few more chunks, so that a record's growth rarely needs a third round
        let want = need
            .checked_add(4 * index::CHUNK_ENTRY)
            .ok_or_else(too_large)?;
        h_len = want.div_ceil(ALIGN as usize) * ALIGN as usize;
    }
    Err(Error::Invalid(
        "format-2 layout: header length did not converge".into(),
    ))
}

/// The layout for a header of `h_len` bytes.
fn place<'a>(
    items: &[Item<'a>],
    codec: Codec,
    dump_start: u64,
    h_len: usize,
) -> Result<Layout<'a>, Error> {
    let chunk = chunk_size(codec);
    let min_own = if codec == Codec::None { 1 } else { MIN_OWN };
    // where the body starts in the file, for alignment (compressed: in the raw stream)
    let origin = add(
        h_len as u64,
        if codec == Codec::None { dump_start } else { 0 },
    )?;
    let mut parts = Vec::with_capacity(items.len() + 4);
    let mut records = Vec::new();
    let mut bounds = vec![0u64];
    let mut buffers = Vec::new();
    let mut pos = 0u64; // bytes of the body so far
    let mut cur = 0u64; // start of the current chunk
                        // cuts chunks (each `chunk` bytes) until `n` more bytes at `pos` fit in the current one
    let cut_for = |bounds: &mut Vec<u64>, cur: &mut u64, pos: u64, n: u64| {
        let end = add(pos, n)?;
        while end - *cur > chunk {
            *cur += chunk;
            bounds.push(*cur);
        }
        Ok::<(), Error>(())
    };
    for item in items {
        match item {
            Item::Bytes(b) => {
                parts.push(Part::Bytes(b));
                cut_for(&mut bounds, &mut cur, pos, len64(b))?;
                pos = add(pos, len64(b))?;
            }
            Item::Record(Pending { data, nbytes }) => {
                let nbytes = *nbytes;
                let mut rec = record(nbytes, codec == Codec::None);
                // the padding byte `p` then `p` bytes 0xFF put the data at a multiple of ALIGN
                let at = add(add(origin, pos)?, len64(&rec))?;
                let pad = ALIGN - (at + 1) % ALIGN;
                rec.push(pad as u8);
                rec.resize(rec.len() + pad as usize, 0xff);
                let record_off = pos;
                cut_for(&mut bounds, &mut cur, pos, len64(&rec))?;
                pos = add(pos, len64(&rec))?;
                buffers.push(Buffer {
                    record_off,
                    data_off: pos,
                    data_len: nbytes,
                });
                parts.push(Part::Record(records.len()));
                records.push(rec);
                parts.extend(data.iter().map(|d| Part::Bytes(d)));
                let end = add(pos, nbytes)?;
                if nbytes >= min_own {
                    // the buffer owns whole chunks: one starts at its first byte, and one
                    // after its last (a STOP at least follows)
                    if pos > cur {
                        bounds.push(pos);
                    }
                    let mut b = add(pos, chunk)?;
                    while b < end {
                        bounds.push(b);
                        b = add(b, chunk)?;
                    }
                    bounds.push(end);
                    cur = end;
                } else {
                    cut_for(&mut bounds, &mut cur, pos, nbytes)?;
                }
                pos = end;
            }
        }
    }
    Ok(Layout {
        parts,
        records,
        bounds,
        buffers,
        h_len,
        body_len: pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTO 5, EMPTY_LIST, then per buffer NEXT_BUFFER APPEND, STOP.
    fn stream_of(n: usize) -> Vec<u8> {
        let mut s = vec![0x80, 5, b']'];
        for _ in 0..n {
            s.extend_from_slice(&[0x97, b'a']);
        }
        s.push(b'.');
        s
    }

    fn body(l: &Layout<'_>) -> Vec<u8> {
        l.parts().concat()
    }

    #[test]
    fn record_matches_the_documented_bytes() {
        let r = record(10, true);
        assert!(r.starts_with(b"\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}("));
        assert!(r.ends_with(b"\x8c\x0aallow_mmap\x88\x8c\x1bnumpy_array_alignment_bytesK\x10ub"));
        let at = r.windows(7).position(|w| w == b"\x8c\x05shape").unwrap() + 7;
        assert_eq!(&r[at..at + 6], b"J\x0a\x00\x00\x00\x85");
        // from 2**31 bytes the shape is a LONG1 of 8 bytes, and the record 5 bytes longer
        let big = record(1 << 31, false);
        assert_eq!(
            &big[at..at + 11],
            b"\x8a\x08\x00\x00\x00\x80\x00\x00\x00\x00\x85"
        );
        assert_eq!(big.len(), r.len() + 5);
        assert!(big.ends_with(b"allow_mmap\x89\x8c\x1bnumpy_array_alignment_bytesK\x10ub"));
        assert_eq!(record((1 << 31) - 1, true).len(), r.len());
    }

    #[test]
    fn uncompressed_buffers_are_aligned_and_own_their_chunks() {
        let datas: Vec<Vec<u8>> = [0usize, 1, 100, 3 << 20, 5]
            .iter()
            .map(|&n| vec![7u8; n])
            .collect();
        let views: Vec<&[u8]> = datas.iter().map(|d| &d[..]).collect();
        let s = stream_of(views.len());
        for start in [0u64, 1, 63, 64, 1000] {
            let l = plan(&[&s], &views, Codec::None, start).unwrap();
            assert_eq!(l.h_len % ALIGN as usize, 0);
            assert!(l.h_len >= index::needed_len(l.bounds.len(), l.buffers.len()) + H_OVERHEAD);
            let b = body(&l);
            assert_eq!(b.len() as u64, l.body_len);
            for (k, e) in l.buffers.iter().enumerate() {
                assert_eq!(
                    (start + l.h_len as u64 + e.data_off) % ALIGN,
                    0,
                    "{start} {k}"
                );
                assert_eq!(e.data_len, datas[k].len() as u64);
                let data = &b[e.data_off as usize..(e.data_off + e.data_len) as usize];
                assert_eq!(data, &datas[k][..]);
                // the padding: a count p in 1..=64, then p bytes 0xFF, right before the data
                let p = (1..=64)
                    .find(|&p| {
                        b[e.data_off as usize - p - 1] == p as u8
                            && b[e.data_off as usize - p..e.data_off as usize]
                                .iter()
                                .all(|&x| x == 0xff)
                    })
                    .unwrap();
                assert!(b[e.record_off as usize..].starts_with(&record(e.data_len, true)));
                assert_eq!(
                    e.record_off as usize + record(e.data_len, true).len() + 1 + p,
                    e.data_off as usize
                );
                if e.data_len > 0 {
                    // owns whole chunks: bounds at both ends, 1 MiB apart inside
                    assert!(l.bounds.contains(&e.data_off));
                    assert!(l.bounds.contains(&(e.data_off + e.data_len)));
                }
            }
            let big = &l.buffers[3];
            let inside: Vec<u64> = l
                .bounds
                .iter()
                .copied()
                .filter(|&x| x > big.data_off && x < big.data_off + big.data_len)
                .collect();
            assert_eq!(
                inside,
                vec![big.data_off + (1 << 20), big.data_off + (2 << 20)]
            );
        }
    }

    #[test]
    fn compressed_small_buffers_share_chunks() {
        let small = vec![1u8; (MIN_OWN - 1) as usize];
        let large = vec![2u8; MIN_OWN as usize];
        let s = stream_of(2);
        let l = plan(&[&s], &[&small, &large], Codec::Zstd, 12345).unwrap();
        let (a, b) = (l.buffers[0], l.buffers[1]);
        assert!(!l.bounds.contains(&a.data_off));
        assert!(l.bounds.contains(&b.data_off));
        assert!(l.bounds.contains(&(b.data_off + b.data_len)));
        assert_eq!(l.bounds.len(), 3);
        // compressed: aligned in the raw stream, wherever the dump starts
        assert_eq!((l.h_len as u64 + b.data_off) % ALIGN, 0);
        assert!(body(&l)[b.record_off as usize..].starts_with(&record(b.data_len, false)));
    }

    #[test]
    fn chunks_are_cut_at_the_codec_size() {
        // BINUNICODE of 3.5 chunks just under the in-band threshold: kept in the stream
        for codec in [Codec::None, Codec::Bz2, Codec::Xz] {
            let n = IN_BAND_MIN - 1;
            let mut s = vec![0x80, 5, b']'];
            for _ in 0..4 {
                s.push(b'X');
                s.extend_from_slice(&(n as u32).to_le_bytes());
                s.extend(std::iter::repeat_n(b'z', n as usize));
                s.push(b'a');
            }
            s.push(b'.');
            let l = plan(&[&s], &[], codec, 0).unwrap();
            assert!(l.buffers.is_empty());
            let c = chunk_size(codec);
            let want: Vec<u64> = (0..l.body_len.div_ceil(c)).map(|i| i * c).collect();
            assert_eq!(l.bounds, want, "{codec:?}");
            assert_eq!(l.body_len as usize, s.len() - 2);
            assert_eq!(body(&l), &s[2..]);
        }
    }

    #[test]
    fn header_length_settles_for_many_chunks_and_buffers() {
        let datas: Vec<Vec<u8>> = (0..500).map(|k| vec![k as u8; k + 1]).collect();
        let views: Vec<&[u8]> = datas.iter().map(|d| &d[..]).collect();
        let s = stream_of(views.len());
        let l = plan(&[&s], &views, Codec::None, 0).unwrap();
        let need = index::needed_len(l.bounds.len(), l.buffers.len()) + H_OVERHEAD;
        assert!(l.h_len >= need && l.h_len < need + 4 * index::CHUNK_ENTRY + ALIGN as usize);
        assert_eq!(l.buffers.len(), 500);
        assert!(l.bounds.len() > 1000); // each buffer owns a chunk, the pickle between
        assert_eq!(place_again(&l, &s, &views), l.bounds);
    }

    /// The bounds for the same inputs at the settled header length (the fixpoint).
    fn place_again(l: &Layout<'_>, s: &[u8], views: &[&[u8]]) -> Vec<u64> {
        let items = sequence(&[s], views).unwrap();
        place(&items, Codec::None, 0, l.h_len).unwrap().bounds
    }

    #[test]
    fn in_band_objects_become_records() {
        // EMPTY_LIST, BINBYTES8 of IN_BAND_MIN bytes split over two parts, MEMOIZE, APPEND,
        // BINUNICODE8 "é" * (IN_BAND_MIN / 2), APPEND, STOP
        let n = IN_BAND_MIN as usize;
        let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let mut a = vec![0x80, 5, b']', 0x8e];
        a.extend_from_slice(&(n as u64).to_le_bytes());
        a.extend_from_slice(&payload[..10]);
        let b = &payload[10..];
        let mut c = vec![0x94, b'a', 0x8d];
        c.extend_from_slice(&(n as u64).to_le_bytes());
        c.extend("é".repeat(n / 2).as_bytes());
        c.extend_from_slice(b"a.");
        let l = plan(&[&a, b, &c], &[], Codec::Zlib, 0).unwrap();
        let body = body(&l);
        assert_eq!(l.buffers.len(), 2);
        let e = l.buffers[0];
        assert_eq!(&body[..1], b"]");
        assert!(body[1..].starts_with(IN_BAND_PREFIX[BYTES as usize]));
        assert_eq!(e.record_off as usize, 1 + IN_BAND_PREFIX[0].len());
        assert_eq!(&body[e.data_off as usize..][..n], &payload[..]);
        let after = (e.data_off + e.data_len) as usize;
        assert!(body[after..].starts_with(b"\x85R\x94a"));
        let e = l.buffers[1];
        let pre = IN_BAND_PREFIX[STR as usize];
        assert_eq!(
            &body[e.record_off as usize - pre.len()..e.record_off as usize],
            pre
        );
        let after = (e.data_off + e.data_len) as usize;
        assert_eq!(&body[after..], [IN_BAND_SUFFIX[2], b"a."].concat());
        // both own their chunks (compressed: from MIN_OWN)
        for e in &l.buffers {
            assert!(l.bounds.contains(&e.data_off));
            assert!(l.bounds.contains(&(e.data_off + e.data_len)));
        }
    }

    #[test]
    fn refuses_a_buffer_count_that_disagrees() {
        let s = stream_of(2);
        let one = [1u8; 4];
        assert!(plan(&[&s], &[&one], Codec::None, 0).is_err());
        assert!(plan(&[&s], &[&one, &one, &one], Codec::None, 0).is_err());
        assert!(plan(&[b"\x80\x05]"], &[], Codec::None, 0).is_err()); // no STOP
    }
}
