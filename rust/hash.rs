//! Content hashing: blake3 (multi-threaded for large buffers), md5 and sha1 behind one
//! streaming interface, plus the type-tagged, length-prefixed encoding used by `joblite.hash`.
//!
//! The object walk itself lives in the binding layer (it has to look at Python objects); this
//! module owns everything that only sees bytes: the [`Encoder`] that turns tags, lengths and
//! buffers into a digest, and [`feed_strided`], which hashes a strided n-dimensional array in
//! logical C order without materialising a contiguous copy.

use md5::Digest as _;
use rayon::prelude::*;

/// Version tag of the encoding. It is the first thing every digest covers, so changing the walk
/// (and this tag with it) can never produce a stale cache hit. Documented in `docs/hash.md`.
pub const ENCODING_VERSION: &[u8] = b"joblite-hash-v7\0";

/// Buffers at least this large are hashed with blake3's multi-threaded mode.
pub const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Bytes gathered per block when a strided array is hashed in C order.
const GATHER_BLOCK: usize = 8 << 20;

/// Unit of parallel work when gathering a block.
const PIECE: usize = 64 << 10;

/// Small writes are collected in a buffer of this size before reaching the hash function, which
/// is much faster than feeding the hasher a tag byte at a time.
const PENDING_CAPACITY: usize = 16 << 10;

/// A digest algorithm `joblite.hash` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Blake3,
    Md5,
    Sha1,
}

impl Algorithm {
    /// Every accepted name, in the order the error message lists them.
    pub const NAMES: [&'static str; 3] = ["blake3", "md5", "sha1"];

    /// Parses a user-supplied algorithm name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "blake3" => Some(Self::Blake3),
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            _ => None,
        }
    }
}

enum State {
    // Boxed: blake3's hasher carries a ~1.7 KiB chaining-value stack.
    Blake3(Box<blake3::Hasher>),
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
}

impl State {
    fn update(&mut self, data: &[u8]) {
        match self {
            State::Blake3(h) => {
                if data.len() >= PARALLEL_THRESHOLD {
                    crate::core_threads::install(|| {
                        h.update_rayon(data);
                    });
                } else {
                    h.update(data);
                }
            }
            State::Md5(h) => h.update(data),
            State::Sha1(h) => h.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            State::Blake3(h) => h.finalize().as_bytes().to_vec(),
            State::Md5(h) => h.finalize().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
        }
    }
}

/// Type tags of the encoding: one byte in front of every value.
pub mod tag {
    pub const NONE: u8 = b'N';
    pub const TRUE: u8 = b'T';
    pub const FALSE: u8 = b'F';
    pub const INT: u8 = b'i';
    pub const BIG_INT: u8 = b'I';
    pub const FLOAT: u8 = b'f';
    pub const COMPLEX: u8 = b'c';
    pub const STR: u8 = b's';
    pub const BYTES: u8 = b'b';
    pub const BYTEARRAY: u8 = b'B';
    pub const MEMORYVIEW: u8 = b'M';
    pub const TUPLE: u8 = b't';
    pub const LIST: u8 = b'l';
    pub const DICT: u8 = b'd';
    pub const SET: u8 = b'S';
    pub const FROZENSET: u8 = b'Z';
    pub const ARRAY: u8 = b'A';
    pub const OBJECT_ARRAY: u8 = b'O';
    pub const NUMPY_SCALAR: u8 = b'g';
    pub const GLOBAL: u8 = b'G';
    pub const FUNCTION: u8 = b'L';
    pub const REDUCE: u8 = b'R';
    pub const BACKREF: u8 = b'@';
    /// An object met before in the walk (not a cycle): the order of its first meeting.
    pub const SHARED: u8 = b'=';
    pub const ITEMS_ORDERED: u8 = b'o';
    pub const ITEMS_UNORDERED: u8 = b'u';
    pub const ABSENT: u8 = b'_';
    /// A module, by its name (closures that capture a module key by it).
    pub const MODULE: u8 = b'm';
    /// An object hashed through a registered handler: its type, then the handler's content.
    pub const HANDLED: u8 = b'h';
}

/// Turns a stream of tags, integers and buffers into a digest.
///
/// Small writes are buffered; large buffers go straight to the hash function (multi-threaded
/// for blake3). Two encoders fed the same calls produce the same digest, whatever the sizes of
/// the individual writes.
pub struct Encoder {
    pending: Vec<u8>,
    state: State,
}

impl Encoder {
    /// A new encoder whose digest covers [`ENCODING_VERSION`] first.
    pub fn new(algorithm: Algorithm) -> Self {
        let mut enc = Self::bare(algorithm);
        enc.pending.extend_from_slice(ENCODING_VERSION);
        enc
    }

    /// An encoder without the version prefix, for sub-digests (dict items, set members) that
    /// are always folded into a versioned parent.
    pub fn bare(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
            Algorithm::Md5 => State::Md5(md5::Md5::new()),
            Algorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
        };
        Self {
            pending: Vec::with_capacity(256),
            state,
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.state.update(&self.pending);
            self.pending.clear();
        }
    }

    /// Writes one type tag.
    #[inline]
    pub fn tag(&mut self, t: u8) {
        self.pending.push(t);
    }

    /// Writes a length or count (fixed 8 bytes, little endian).
    #[inline]
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Writes a fixed-width 64-bit value.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.pending.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes raw bytes without a length prefix (the caller has written the length).
    pub fn raw(&mut self, data: &[u8]) {
        if self.pending.len() + data.len() <= PENDING_CAPACITY {
            self.pending.extend_from_slice(data);
        } else {
            self.flush();
            if data.len() < PENDING_CAPACITY {
                self.pending.extend_from_slice(data);
            } else {
                self.state.update(data);
            }
        }
    }

    /// Writes a length prefix, then the bytes.
    #[inline]
    pub fn bytes(&mut self, data: &[u8]) {
        self.len(data.len());
        self.raw(data);
    }

    /// Whether this encoder computes blake3.
    pub fn is_blake3(&self) -> bool {
        matches!(self.state, State::Blake3(_))
    }

    /// True when nothing but small writes have been made and the digest can be taken in one
    /// shot (used to decide nothing; exposed for tests of the buffering invariant).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Finishes and returns the raw digest bytes (32 for blake3, 16 for md5, 20 for sha1).
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.state.finalize()
    }

    /// Returns a 32-byte digest of everything written so far and starts over, keeping the
    /// allocations (used for the many small sub-digests of dict items and set members).
    /// md5 and sha1 digests are widened to 32 bytes by hashing them with blake3.
    pub fn finish_reset(&mut self) -> [u8; 32] {
        self.flush();
        match &mut self.state {
            State::Blake3(h) => {
                let out = *h.finalize().as_bytes();
                h.reset();
                out
            }
            State::Md5(h) => *blake3::hash(&h.finalize_reset()).as_bytes(),
            State::Sha1(h) => *blake3::hash(&h.finalize_reset()).as_bytes(),
        }
    }

    /// Finishes and returns the digest as lowercase hex.
    pub fn finish_hex(self) -> String {
        to_hex(&self.finish())
    }
}

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Why a strided layout was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("shape has {shape} dimensions but strides has {strides}")]
    RankMismatch { shape: usize, strides: usize },
    #[error("element at byte offset {offset} (+{itemsize}) lies outside the {len}-byte buffer")]
    OutOfBounds {
        offset: i128,
        itemsize: usize,
        len: usize,
    },
    #[error("array size overflows")]
    Overflow,
}

/// The byte range (relative to the first element) that a strided layout touches, as
/// `(lowest offset, one past the highest byte)`. `None` for an empty array.
pub fn strided_extent(
    shape: &[usize],
    strides: &[isize],
    itemsize: usize,
) -> Result<Option<(i128, i128)>, LayoutError> {
    if shape.len() != strides.len() {
        return Err(LayoutError::RankMismatch {
            shape: shape.len(),
            strides: strides.len(),
        });
    }
    if shape.contains(&0) {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0i128, 0i128);
    for (&n, &s) in shape.iter().zip(strides) {
        let span = (n as i128 - 1) * s as i128;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    Ok(Some((lo, hi + itemsize as i128)))
}

/// Feeds an n-dimensional strided array into `enc` in logical C order.
///
/// `data` is the memory the array lives in and `offset` the position of its first element in
/// `data`; every element the layout addresses is bounds-checked against `data` before anything
/// is read. A C-contiguous layout is hashed straight from `data`; any other layout is gathered
/// into blocks (in parallel for large arrays) that are then hashed.
pub fn feed_strided(
    enc: &mut Encoder,
    data: &[u8],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
    itemsize: usize,
) -> Result<(), LayoutError> {
    let Some((lo, hi)) = strided_extent(shape, strides, itemsize)? else {
        return Ok(());
    };
    let (first, end) = (offset as i128 + lo, offset as i128 + hi);
    if first < 0 || end > data.len() as i128 {
        return Err(LayoutError::OutOfBounds {
            offset: if first < 0 {
                first
            } else {
                end - itemsize as i128
            },
            itemsize,
            len: data.len(),
        });
    }
    let total = shape
        .iter()
        .try_fold(itemsize, |acc, &n| acc.checked_mul(n))
        .ok_or(LayoutError::Overflow)?;
    if total == 0 {
        return Ok(());
    }
    if total >= PARALLEL_THRESHOLD && enc.is_blake3() {
        // A large array's bytes get their own blake3 tree, started at offset 0, so every
        // thread hashes whole power-of-two subtrees (the parent's small prefix would
        // misalign them); the parent covers that digest. Equal logical content gives the
        // same digest whatever the memory layout, as below.
        let mut sub = Encoder::bare(Algorithm::Blake3);
        feed_runs(&mut sub, data, offset, shape, strides, itemsize, total);
        enc.raw(&sub.finish());
        return Ok(());
    }
    feed_runs(enc, data, offset, shape, strides, itemsize, total);
    Ok(())
}

/// The bytes of a validated strided array in logical C order (see [`feed_strided`]).
fn feed_runs(
    enc: &mut Encoder,
    data: &[u8],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
    itemsize: usize,
    total: usize,
) {
    // Merge trailing dimensions that are contiguous with each other into one "row".
    let ndim = shape.len();
    let mut row_len = itemsize; // bytes per contiguous run
    let mut inner = ndim; // dimensions [inner..] are folded into the run
    while inner > 0 && strides[inner - 1] == row_len as isize {
        row_len *= shape[inner - 1];
        inner -= 1;
    }
    if inner == 0 {
        enc.raw(&data[offset..offset + total]);
        return;
    }
    // What is left is a grid of "runs" of `row_len` contiguous bytes: dimension `inner - 1`
    // steps from run to run with its stride ("a line"), dimensions before it pick the line.
    let layout = RunLayout {
        data,
        offset,
        outer_shape: &shape[..inner - 1],
        outer_strides: &strides[..inner - 1],
        line_len: shape[inner - 1],
        step: strides[inner - 1],
        run: row_len,
    };
    let n_runs = total / row_len;
    let runs_per_block = (GATHER_BLOCK / row_len).max(1);
    let runs_per_piece = (PIECE / row_len).max(1);
    // Zeroed once; every block overwrites the bytes it hashes, so no re-zeroing per block.
    let mut buffer = vec![0u8; runs_per_block.min(n_runs) * row_len];
    let mut first = 0;
    while first < n_runs {
        let end = (first + runs_per_block).min(n_runs);
        let block = &mut buffer[..(end - first) * row_len];
        let piece_len = runs_per_piece * row_len;
        let gather = |(p, piece): (usize, &mut [u8])| {
            layout.gather(first + p * runs_per_piece, piece);
        };
        if block.len() >= PARALLEL_THRESHOLD {
            crate::core_threads::install(|| {
                block.par_chunks_mut(piece_len).enumerate().for_each(gather)
            });
        } else {
            block.chunks_mut(piece_len).enumerate().for_each(gather);
        }
        enc.raw(block);
        first = end;
    }
}

/// A strided array seen as lines of equally spaced contiguous runs (bounds already checked).
struct RunLayout<'a> {
    data: &'a [u8],
    offset: usize,
    outer_shape: &'a [usize],
    outer_strides: &'a [isize],
    line_len: usize,
    step: isize,
    run: usize,
}

impl RunLayout<'_> {
    /// Byte position of the first run of line `index` (C order over the outer dimensions).
    fn line_start(&self, mut index: usize) -> isize {
        let mut pos = self.offset as isize;
        for d in (0..self.outer_shape.len()).rev() {
            let n = self.outer_shape[d];
            pos += (index % n) as isize * self.outer_strides[d];
            index /= n;
        }
        pos
    }

    /// Copies consecutive runs, starting with run number `first`, until `out` is full.
    fn gather(&self, first: usize, out: &mut [u8]) {
        match self.run {
            1 => self.gather_fixed::<1>(first, out),
            2 => self.gather_fixed::<2>(first, out),
            4 => self.gather_fixed::<4>(first, out),
            8 => self.gather_fixed::<8>(first, out),
            16 => self.gather_fixed::<16>(first, out),
            _ => self.gather_runs(first, out, self.run),
        }
    }

    fn gather_fixed<const N: usize>(&self, first: usize, out: &mut [u8]) {
        self.gather_runs(first, out, N)
    }

    #[inline(always)]
    fn gather_runs(&self, first: usize, out: &mut [u8], run: usize) {
        let mut line = first / self.line_len;
        let mut j = first % self.line_len;
        let mut pos = self.line_start(line) + j as isize * self.step;
        for dst in out.chunks_exact_mut(run) {
            let p = pos as usize;
            dst.copy_from_slice(&self.data[p..p + run]);
            j += 1;
            if j == self.line_len {
                j = 0;
                line += 1;
                pos = self.line_start(line);
            } else {
                pos += self.step;
            }
        }
    }
}

/// Arrow string, binary and dictionary columns as the byte streams of `joblite.hashing`'s
/// Arrow handler, read straight from the buffers of one array (no decoding, no cast, no copy
/// of the column). The streams of a column depend only on its logical values, so a column
/// hashes the same however it is chunked, sliced or dictionary-encoded:
///
/// * null positions (`u64` little endian, counted from the column's first row);
/// * string/binary values: their lengths (LEB128) and their bytes, nulls left out;
/// * dictionary columns: the id of each non-null value (LEB128), ids given to distinct values
///   in the order they first appear in the column, and the distinct values in that order
///   (lengths and bytes as above).
///
/// Every offset, view, buffer index and dictionary index is checked against the buffers it
/// points into: a malformed array is an [`arrow::Malformed`] error, never a read out of bounds.
pub mod arrow {
    use super::{Encoder, PARALLEL_THRESHOLD};
    use std::collections::HashMap;

    /// A malformed Arrow array (an offset, view or index outside its buffers).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Malformed(pub String);

    impl std::fmt::Display for Malformed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    fn bad<T>(msg: impl Into<String>) -> Result<T, Malformed> {
        Err(Malformed(msg.into()))
    }

    /// The values buffers of a string/binary array (Arrow's three layouts).
    pub enum Layout<'a> {
        /// `string`/`binary`: `i32` offsets, then the data.
        Offsets32 { offsets: &'a [u8], data: &'a [u8] },
        /// `large_string`/`large_binary`: `i64` offsets, then the data.
        Offsets64 { offsets: &'a [u8], data: &'a [u8] },
        /// `string_view`/`binary_view`: 16-byte views, then the variadic data buffers.
        Views {
            views: &'a [u8],
            buffers: Vec<&'a [u8]>,
        },
    }

    /// One string/binary array: its layout, validity bitmap and slice (`offset`, `len`).
    pub struct Strings<'a> {
        layout: Layout<'a>,
        validity: Option<&'a [u8]>,
        offset: usize,
        len: usize,
    }

    fn i32_at(buf: &[u8], pos: usize) -> i32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&buf[pos..pos + 4]);
        i32::from_le_bytes(b)
    }

    fn i64_at(buf: &[u8], pos: usize) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[pos..pos + 8]);
        i64::from_le_bytes(b)
    }

    fn span(offset: usize, len: usize, extra: usize, width: usize) -> Option<usize> {
        offset
            .checked_add(len)?
            .checked_add(extra)?
            .checked_mul(width)
    }

    fn check_validity(validity: Option<&[u8]>, offset: usize, len: usize) -> Result<(), Malformed> {
        if let Some(v) = validity {
            let bits = v.len().checked_mul(8);
            if offset
                .checked_add(len)
                .zip(bits)
                .map_or(true, |(need, have)| need > have)
            {
                return bad("validity bitmap shorter than the array");
            }
        }
        Ok(())
    }

    #[inline]
    fn bit(validity: Option<&[u8]>, i: usize) -> bool {
        validity.map_or(true, |v| v[i >> 3] >> (i & 7) & 1 == 1)
    }

    impl<'a> Strings<'a> {
        /// Checks that the slice lies within the offsets/views and validity buffers (each
        /// value's own extent is checked when it is read).
        pub fn new(
            layout: Layout<'a>,
            validity: Option<&'a [u8]>,
            offset: usize,
            len: usize,
        ) -> Result<Self, Malformed> {
            let (have, need) = match &layout {
                Layout::Offsets32 { offsets, .. } => (offsets.len(), span(offset, len, 1, 4)),
                Layout::Offsets64 { offsets, .. } => (offsets.len(), span(offset, len, 1, 8)),
                Layout::Views { views, .. } => (views.len(), span(offset, len, 0, 16)),
            };
            if need.map_or(true, |need| need > have) {
                return bad("offsets/views buffer shorter than the array");
            }
            check_validity(validity, offset, len)?;
            Ok(Self {
                layout,
                validity,
                offset,
                len,
            })
        }

        /// The number of slots.
        pub fn len(&self) -> usize {
            self.len
        }

        /// Whether the array has no slots.
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Whether slot `i` (of the slice) holds a value.
        #[inline]
        pub fn is_valid(&self, i: usize) -> bool {
            bit(self.validity, self.offset + i)
        }

        /// The extent of slot `i` (of the slice) in the data buffer of an offsets layout,
        /// bounds-checked (`(0, 0)` for views).
        #[inline]
        fn range(&self, i: usize) -> Result<(usize, usize), Malformed> {
            let j = self.offset + i;
            let (a, b, data) = match &self.layout {
                Layout::Offsets32 { offsets, data } => (
                    i64::from(i32_at(offsets, j * 4)),
                    i64::from(i32_at(offsets, j * 4 + 4)),
                    data,
                ),
                Layout::Offsets64 { offsets, data } => {
                    (i64_at(offsets, j * 8), i64_at(offsets, j * 8 + 8), data)
                }
                Layout::Views { .. } => return Ok((0, 0)),
            };
            if a < 0 || b < a || b as u64 > data.len() as u64 {
                return bad("string offsets outside the data buffer");
            }
            Ok((a as usize, b as usize))
        }

        /// The bytes of slot `i` (of the slice), bounds-checked.
        #[inline]
        pub fn get(&self, i: usize) -> Result<&'a [u8], Malformed> {
            let j = self.offset + i;
            match &self.layout {
                Layout::Offsets32 { data, .. } | Layout::Offsets64 { data, .. } => {
                    let (a, b) = self.range(i)?;
                    Ok(&data[a..b])
                }
                Layout::Views { views, buffers } => {
                    let view: &'a [u8] = &views[j * 16..j * 16 + 16];
                    let n = i32_at(view, 0);
                    if n < 0 {
                        return bad("negative length in a string view");
                    }
                    let n = n as usize;
                    if n <= 12 {
                        return Ok(&view[4..4 + n]);
                    }
                    let (index, start) = (i32_at(view, 8), i32_at(view, 12));
                    let buffer = usize::try_from(index)
                        .ok()
                        .and_then(|k| buffers.get(k))
                        .ok_or_else(|| {
                            Malformed("string view points to a missing buffer".into())
                        })?;
                    let start = usize::try_from(start)
                        .map_err(|_| Malformed("negative offset in a string view".into()))?;
                    match start.checked_add(n) {
                        Some(end) if end <= buffer.len() => Ok(&buffer[start..end]),
                        _ => bad("string view points outside its buffer"),
                    }
                }
            }
        }
    }

    /// An encoder with a counter of the bytes written and a gathering buffer (written to the
    /// encoder in blocks large enough for blake3's multi-threaded mode).
    pub struct Sink<'e> {
        enc: &'e mut Encoder,
        written: u64,
        buf: Vec<u8>,
    }

    /// Room kept free for one LEB128 number or one `u64`.
    const SLACK: usize = 16;

    /// Sink buffers kept per thread between calls (each `PARALLEL_THRESHOLD` bytes).
    const SPARE_BUFFERS: usize = 5;

    thread_local! {
        static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    impl<'e> Sink<'e> {
        /// A sink writing to `enc`.
        pub fn new(enc: &'e mut Encoder) -> Self {
            // A buffer kept from an earlier call on this thread (already paged in).
            let mut buf = SPARE
                .with(|spare| spare.borrow_mut().pop())
                .unwrap_or_default();
            buf.clear();
            Self {
                enc,
                written: 0,
                buf,
            }
        }

        #[cold]
        fn flush(&mut self) {
            if self.buf.capacity() == 0 {
                self.buf.reserve(PARALLEL_THRESHOLD + SLACK);
            }
            if !self.buf.is_empty() {
                self.enc.raw(&self.buf);
                self.written += self.buf.len() as u64;
                self.buf.clear();
            }
        }

        /// Appends bytes.
        #[inline]
        pub fn bytes(&mut self, data: &[u8]) {
            if data.len() >= PARALLEL_THRESHOLD / 4 {
                self.flush();
                self.enc.raw(data);
                self.written += data.len() as u64;
            } else {
                if self.buf.len() + data.len() > PARALLEL_THRESHOLD {
                    self.flush();
                }
                self.buf.extend_from_slice(data);
            }
        }

        /// Appends an unsigned LEB128 number.
        #[inline(always)]
        pub fn varint(&mut self, mut v: u64) {
            if self.buf.len() >= PARALLEL_THRESHOLD {
                self.flush();
            }
            if v < 0x80 {
                self.buf.push(v as u8);
                return;
            }
            while v >= 0x80 {
                self.buf.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.buf.push(v as u8);
        }

        /// Appends a `u64`, little endian.
        #[inline]
        pub fn u64(&mut self, v: u64) {
            if self.buf.len() >= PARALLEL_THRESHOLD {
                self.flush();
            }
            self.buf.extend_from_slice(&v.to_le_bytes());
        }

        /// Writes what is buffered; returns the number of bytes appended in all.
        pub fn finish(mut self) -> u64 {
            self.flush();
            give_back(std::mem::take(&mut self.buf));
            self.written
        }
    }

    /// Keeps a buffer for the next call on this thread (at most `SPARE_BUFFERS` of them).
    fn give_back(mut buf: Vec<u8>) {
        buf.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS && buf.capacity() <= 2 * PARALLEL_THRESHOLD {
                spare.push(buf);
            }
        });
    }

    /// LEB128 numbers gathered on the stack (a local array and cursor the compiler keeps in
    /// registers), passed on to a sink block by block.
    struct Varints {
        buf: [u8; VARINT_BLOCK + 10],
        n: usize,
    }

    const VARINT_BLOCK: usize = 16 << 10;

    impl Varints {
        fn new() -> Self {
            Self {
                buf: [0; VARINT_BLOCK + 10],
                n: 0,
            }
        }

        #[inline(always)]
        fn push(&mut self, mut v: u64, sink: &mut Sink<'_>) {
            if self.n >= VARINT_BLOCK {
                self.flush(sink);
            }
            while v >= 0x80 {
                self.buf[self.n] = (v as u8) | 0x80;
                self.n += 1;
                v >>= 7;
            }
            self.buf[self.n] = v as u8;
            self.n += 1;
        }

        fn flush(&mut self, sink: &mut Sink<'_>) {
            sink.bytes(&self.buf[..self.n]);
            self.n = 0;
        }

        /// Appends numbers that are all below 0x80 (one LEB128 byte each: the byte is the
        /// number), as `push` would one by one.
        #[inline]
        fn push_small(&mut self, small: &[u8], sink: &mut Sink<'_>) {
            debug_assert!(small.iter().all(|&b| b < 0x80));
            if self.n + small.len() > VARINT_BLOCK {
                self.flush(sink);
            }
            if small.len() > VARINT_BLOCK {
                sink.bytes(small);
            } else {
                self.buf[self.n..self.n + small.len()].copy_from_slice(small);
                self.n += small.len();
            }
        }
    }

    /// Rows whose lengths are computed as one block (all below 0x80: one byte each, checked
    /// for the whole block at once; any other block takes the row loop).
    const LENGTH_BLOCK: usize = 4096;

    /// A little-endian integer of an Arrow buffer (offsets and indices).
    trait Word: Copy {
        const WIDTH: usize;
        /// The value read from `WIDTH` bytes, or None when it is negative.
        fn read(bytes: &[u8]) -> Option<u64>;
        /// The value read from `WIDTH` bytes as `u64` bits (a negative value sign-extended,
        /// so it is far above any length; a `u64` above `i64::MAX` likewise).
        fn bits(bytes: &[u8]) -> u64;
    }

    macro_rules! word {
        ($t:ty) => {
            impl Word for $t {
                const WIDTH: usize = std::mem::size_of::<$t>();
                #[inline(always)]
                fn read(bytes: &[u8]) -> Option<u64> {
                    let mut b = [0u8; std::mem::size_of::<$t>()];
                    b.copy_from_slice(bytes);
                    u64::try_from(<$t>::from_le_bytes(b)).ok()
                }
                #[inline(always)]
                fn bits(bytes: &[u8]) -> u64 {
                    let mut b = [0u8; std::mem::size_of::<$t>()];
                    b.copy_from_slice(bytes);
                    <$t>::from_le_bytes(b) as i64 as u64
                }
            }
        };
    }
    word!(i8);
    word!(u8);
    word!(i16);
    word!(u16);
    word!(i32);
    word!(u32);
    word!(i64);
    word!(u64);

    /// Streams of a string/binary array: null positions (`row_base` + slot) to `nulls`, the
    /// non-null values' lengths to `lengths` and their bytes to `data`.
    pub fn feed_strings(
        arr: &Strings<'_>,
        row_base: u64,
        nulls: &mut Sink<'_>,
        lengths: &mut Sink<'_>,
        data: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        match &arr.layout {
            Layout::Offsets32 { offsets, data: buf } => {
                feed_offsets::<i32>(arr, offsets, buf, row_base, nulls, lengths, data)
            }
            Layout::Offsets64 { offsets, data: buf } => {
                feed_offsets::<i64>(arr, offsets, buf, row_base, nulls, lengths, data)
            }
            Layout::Views { views, buffers } => {
                feed_views(arr, views, buffers, row_base, nulls, lengths, data)
            }
        }
    }

    /// Bytes of a views array gathered on the stack before they reach the data sink.
    const GATHER_BLOCK: usize = PARALLEL_THRESHOLD;

    /// Arrays of at least this many rows write their lengths and their bytes on two core
    /// threads at once (the lengths are a loop over the rows; the bytes, a gather and a hash).
    const SPLIT_ROWS: usize = 1 << 16;

    /// Runs `lengths` and `values` (which write to sinks of their own, so the streams do not
    /// depend on it) at the same time on the core threads when `split`, else one after the
    /// other; the first error wins.
    fn lengths_and_values(
        split: bool,
        lengths: impl FnOnce() -> Result<(), Malformed> + Send,
        values: impl FnOnce() -> Result<(), Malformed> + Send,
    ) -> Result<(), Malformed> {
        let (a, b) = if split {
            crate::core_threads::install(|| rayon::join(lengths, values))
        } else {
            (lengths(), values())
        };
        a.and(b)
    }

    fn feed_views(
        arr: &Strings<'_>,
        views: &[u8],
        buffers: &[&[u8]],
        row_base: u64,
        nulls: &mut Sink<'_>,
        lengths: &mut Sink<'_>,
        data: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        // `Strings::new` checked that views[offset .. offset + len] are in the buffer.
        let views = &views[arr.offset * 16..(arr.offset + arr.len) * 16];
        if arr.validity.is_none() {
            return gathered_views(arr.len >= SPLIT_ROWS, views, buffers, lengths, data);
        }
        lengths_and_values(
            arr.len >= SPLIT_ROWS,
            || view_lengths(arr, views, row_base, nulls, lengths),
            || view_values(arr, views, buffers, data),
        )
    }

    /// The value of a view longer than 12 bytes: `len` bytes of the buffer it names, checked.
    fn out_of_line<'b>(
        view: &[u8],
        len: usize,
        buffers: &[&'b [u8]],
    ) -> Result<&'b [u8], Malformed> {
        let (index, start) = (i32_at(view, 8), i32_at(view, 12));
        let buffer = usize::try_from(index)
            .ok()
            .and_then(|k| buffers.get(k))
            .ok_or_else(|| Malformed("string view points to a missing buffer".into()))?;
        usize::try_from(start)
            .ok()
            .and_then(|start| buffer.get(start..start.checked_add(len)?))
            .ok_or_else(|| Malformed("string view points outside its buffer".into()))
    }

    /// Rows of a views array gathered as one block at most (bounds the lengths of a block).
    const GATHERED_ROWS: usize = 1 << 16;

    /// One block of a views array: the LEB128 lengths and the bytes of its values.
    struct Gathered {
        lengths: Vec<u8>,
        data: Vec<u8>,
        n: usize,
        k: usize,
    }

    /// Blocks kept per thread between calls (their buffers already paged in and sized).
    const SPARE_GATHERED: usize = 2;

    thread_local! {
        static GATHERED: std::cell::RefCell<Vec<Gathered>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    impl Gathered {
        fn new() -> Self {
            GATHERED
                .with(|spare| spare.borrow_mut().pop())
                .unwrap_or_else(|| Self {
                    lengths: vec![0; GATHERED_ROWS * 10],
                    data: vec![0; GATHER_BLOCK + 16],
                    n: 0,
                    k: 0,
                })
        }

        /// Gathers rows from `*row` on until about `GATHER_BLOCK` bytes or `GATHERED_ROWS`
        /// rows are in the block. A value larger than a block ends it, its length counted
        /// in the block: it is returned, to be written right after the block's bytes.
        fn fill<'b>(
            &mut self,
            views: &[u8],
            buffers: &[&'b [u8]],
            row: &mut usize,
        ) -> Result<Option<&'b [u8]>, Malformed> {
            // Local cursors (kept in registers): `n` into the bytes, `k` into the lengths.
            let (data, lens) = (&mut self.data[..], &mut self.lengths[..]);
            let (mut n, mut k, mut i) = (0usize, 0usize, *row);
            let end = (views.len() / 16).min(i + GATHERED_ROWS);
            let mut large = None;
            while i < end && n < GATHER_BLOCK {
                let view = &views[i * 16..i * 16 + 16];
                let len = i32_at(view, 0);
                if len < 0 {
                    *row = i;
                    return bad("negative length in a string view");
                }
                let len = len as usize;
                if len <= 12 {
                    // Inline: the 12 bytes after the length, of which the first `len` count
                    // (`n` < GATHER_BLOCK, and the buffer has 16 bytes more).
                    data[n..n + 12].copy_from_slice(&view[4..16]);
                    n += len;
                    lens[k] = len as u8; // < 0x80: one LEB128 byte
                    k += 1;
                    i += 1;
                    continue;
                }
                let value = out_of_line(view, len, buffers)?;
                if len <= GATHER_BLOCK {
                    if n + len > GATHER_BLOCK {
                        break; // the next block begins with this row
                    }
                    data[n..n + len].copy_from_slice(value);
                    n += len;
                } else {
                    large = Some(value);
                }
                let mut v = len as u64;
                while v >= 0x80 {
                    lens[k] = (v as u8) | 0x80;
                    k += 1;
                    v >>= 7;
                }
                lens[k] = v as u8;
                k += 1;
                i += 1;
                if large.is_some() {
                    break;
                }
            }
            (self.n, self.k, *row) = (n, k, i);
            Ok(large)
        }

        /// Writes the block (then the large value that ended it, if any) to the streams.
        fn write(&self, large: Option<&[u8]>, lengths: &mut Sink<'_>, data: &mut Sink<'_>) {
            lengths.bytes(&self.lengths[..self.k]);
            data.bytes(&self.data[..self.n]);
            if let Some(value) = large {
                data.bytes(value);
            }
        }

        /// Keeps the block for the next call on this thread.
        fn give_back(self) {
            GATHERED.with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_GATHERED {
                    spare.push(self);
                }
            });
        }
    }

    /// A views array without nulls in one pass over its views: blocks of lengths and bytes
    /// gathered, each written to the streams while the next one is gathered (on two core
    /// threads when `split`). The streams are those of `view_lengths` and `view_values`.
    fn gathered_views(
        split: bool,
        views: &[u8],
        buffers: &[&[u8]],
        lengths: &mut Sink<'_>,
        data: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        let rows = views.len() / 16;
        let (mut current, mut next) = (Gathered::new(), Gathered::new());
        let mut row = 0usize;
        let mut run = || {
            let mut large = current.fill(views, buffers, &mut row)?;
            loop {
                if row == rows {
                    current.write(large, lengths, data);
                    return Ok(());
                }
                let mut gather = || next.fill(views, buffers, &mut row);
                let following = if split {
                    let write = || current.write(large, lengths, data);
                    rayon::join(gather, write).0?
                } else {
                    current.write(large, lengths, data);
                    gather()?
                };
                std::mem::swap(&mut current, &mut next);
                large = following;
            }
        };
        let result = if split {
            crate::core_threads::install(run)
        } else {
            run()
        };
        current.give_back();
        next.give_back();
        result
    }

    /// The null positions and the lengths of the non-null values of a views array.
    fn view_lengths(
        arr: &Strings<'_>,
        views: &[u8],
        row_base: u64,
        nulls: &mut Sink<'_>,
        lengths: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        let mut out = Varints::new();
        for (i, view) in views.chunks_exact(16).enumerate() {
            if arr.validity.is_some() && !arr.is_valid(i) {
                nulls.u64(row_base + i as u64);
                continue;
            }
            let len = i32_at(view, 0);
            if len < 0 {
                return bad("negative length in a string view");
            }
            out.push(len as u64, lengths);
        }
        out.flush(lengths);
        Ok(())
    }

    /// The bytes of the non-null values of a views array, in order.
    fn view_values(
        arr: &Strings<'_>,
        views: &[u8],
        buffers: &[&[u8]],
        data: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        // A buffer kept from an earlier call on this thread (already paged in); a full block
        // is past `PARALLEL_THRESHOLD / 4`, so it reaches the hasher without another copy.
        let mut gather = SPARE
            .with(|spare| spare.borrow_mut().pop())
            .unwrap_or_default();
        gather.clear();
        gather.resize(GATHER_BLOCK + 16, 0);
        let mut n = 0usize;
        for (i, view) in views.chunks_exact(16).enumerate() {
            if arr.validity.is_some() && !arr.is_valid(i) {
                continue;
            }
            let len = i32_at(view, 0);
            if len < 0 {
                return bad("negative length in a string view");
            }
            let len = len as usize;
            if n >= GATHER_BLOCK {
                data.bytes(&gather[..n]);
                n = 0;
            }
            if len <= 12 {
                // Inline: the 12 bytes after the length, of which the first `len` count.
                gather[n..n + 12].copy_from_slice(&view[4..16]);
                n += len;
                continue;
            }
            let value = out_of_line(view, len, buffers)?;
            if n + len > GATHER_BLOCK {
                data.bytes(&gather[..n]);
                n = 0;
            }
            if len > GATHER_BLOCK {
                data.bytes(value);
            } else {
                gather[n..n + len].copy_from_slice(value);
                n += len;
            }
        }
        data.bytes(&gather[..n]);
        give_back(gather);
        Ok(())
    }

    fn feed_offsets<W: Word>(
        arr: &Strings<'_>,
        offsets: &[u8],
        buf: &[u8],
        row_base: u64,
        nulls: &mut Sink<'_>,
        lengths: &mut Sink<'_>,
        data: &mut Sink<'_>,
    ) -> Result<(), Malformed> {
        // `Strings::new` checked that offsets[offset ..= offset + len] are in the buffer.
        let offsets = &offsets[arr.offset * W::WIDTH..(arr.offset + arr.len + 1) * W::WIDTH];
        let limit = buf.len() as u64;
        let outside = || Malformed("string offsets outside the data buffer".into());
        let first = W::read(&offsets[..W::WIDTH]).ok_or_else(outside)?;
        let mut a = first;
        let mut out = Varints::new();
        if arr.validity.is_none() {
            // No nulls: the values are data[first .. last offset], in one piece (the loop
            // checks that the offsets between never decrease).
            let last = W::read(&offsets[offsets.len() - W::WIDTH..]).ok_or_else(outside)?;
            if last < first || last > limit {
                return Err(outside());
            }
            let values = &buf[first as usize..last as usize];
            let rest = &offsets[W::WIDTH..];
            let lengths_of = move || {
                let mut small = [0u8; LENGTH_BLOCK];
                for block in rest.chunks(LENGTH_BLOCK * W::WIDTH) {
                    // Fast path: every length of the block in 0..0x80 (a decreasing offset
                    // makes its difference wrap far above), written as one byte each.
                    let (mut prev, mut above) = (a, 0u64);
                    for (slot, word) in small.iter_mut().zip(block.chunks_exact(W::WIDTH)) {
                        let b = W::bits(word);
                        let d = b.wrapping_sub(prev);
                        above |= d;
                        *slot = d as u8;
                        prev = b;
                    }
                    if above < 0x80 {
                        // `a` >= 0 and each step in 0..0x80: every offset read is >= 0.
                        out.push_small(&small[..block.len() / W::WIDTH], lengths);
                        a = prev;
                        continue;
                    }
                    for word in block.chunks_exact(W::WIDTH) {
                        let b = W::read(word).ok_or_else(outside)?;
                        if b < a {
                            return Err(outside());
                        }
                        out.push(b - a, lengths);
                        a = b;
                    }
                }
                out.flush(lengths);
                Ok(())
            };
            return lengths_and_values(arr.len >= SPLIT_ROWS, lengths_of, || {
                data.bytes(values);
                Ok(())
            });
        }
        // Runs of adjacent values in the data buffer are appended in one piece.
        let words = offsets[W::WIDTH..].chunks_exact(W::WIDTH);
        let mut run = (a, a);
        for (i, word) in words.enumerate() {
            let b = W::read(word).ok_or_else(outside)?;
            if arr.is_valid(i) {
                if b < a || b > limit {
                    return Err(outside());
                }
                out.push(b - a, lengths);
                if a != run.1 {
                    data.bytes(&buf[run.0 as usize..run.1 as usize]);
                    run.0 = a;
                }
                run.1 = b;
            } else {
                nulls.u64(row_base + i as u64);
            }
            a = b;
        }
        out.flush(lengths);
        data.bytes(&buf[run.0 as usize..run.1 as usize]);
        Ok(())
    }

    /// Rows of a dictionary column whose ids are looked up as one block.
    const ID_BLOCK: usize = 4096;

    /// The index buffer of a dictionary array.
    pub struct Indices<'a> {
        buf: &'a [u8],
        width: usize,
        signed: bool,
        validity: Option<&'a [u8]>,
        offset: usize,
        len: usize,
    }

    impl<'a> Indices<'a> {
        /// Indices of `width` bytes (1, 2, 4 or 8), signed or not; the slice is checked
        /// against the buffers.
        pub fn new(
            buf: &'a [u8],
            width: usize,
            signed: bool,
            validity: Option<&'a [u8]>,
            offset: usize,
            len: usize,
        ) -> Result<Self, Malformed> {
            if ![1, 2, 4, 8].contains(&width) {
                return bad("dictionary index width must be 1, 2, 4 or 8 bytes");
            }
            if span(offset, len, 0, width).map_or(true, |need| need > buf.len()) {
                return bad("dictionary index buffer shorter than the array");
            }
            check_validity(validity, offset, len)?;
            Ok(Self {
                buf,
                width,
                signed,
                validity,
                offset,
                len,
            })
        }
    }

    /// The ids of a dictionary column's distinct values, kept from chunk to chunk (memory:
    /// the column's distinct values).
    #[derive(Default)]
    pub struct DictionaryIds {
        ids: HashMap<Box<[u8]>, u64>,
    }

    impl DictionaryIds {
        /// A column with no values yet.
        pub fn new() -> Self {
            Self::default()
        }

        /// Streams of one chunk of a dictionary column whose values are strings/binary:
        /// null positions (an index or a dictionary entry that is null) to `nulls`, the id of
        /// each other row to `ids`, each value seen for the first time to `lengths`/`data`.
        #[allow(clippy::too_many_arguments)]
        pub fn feed(
            &mut self,
            indices: &Indices<'_>,
            dictionary: &Strings<'_>,
            row_base: u64,
            nulls: &mut Sink<'_>,
            ids: &mut Sink<'_>,
            lengths: &mut Sink<'_>,
            data: &mut Sink<'_>,
        ) -> Result<(), Malformed> {
            // one reader per index type (`Indices::new` allowed only these widths)
            macro_rules! feed {
                ($word:ty) => {
                    self.feed_words::<$word>(
                        indices, dictionary, row_base, nulls, ids, lengths, data,
                    )
                };
            }
            match (indices.width, indices.signed) {
                (1, true) => feed!(i8),
                (1, false) => feed!(u8),
                (2, true) => feed!(i16),
                (2, false) => feed!(u16),
                (4, true) => feed!(i32),
                (4, false) => feed!(u32),
                (8, true) => feed!(i64),
                _ => feed!(u64),
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn feed_words<W: Word>(
            &mut self,
            indices: &Indices<'_>,
            dictionary: &Strings<'_>,
            row_base: u64,
            nulls: &mut Sink<'_>,
            ids: &mut Sink<'_>,
            lengths: &mut Sink<'_>,
            data: &mut Sink<'_>,
        ) -> Result<(), Malformed> {
            const UNSEEN: u64 = u64::MAX;
            const NULL: u64 = u64::MAX - 1;
            /// In `short`: the row's id is not known to be one byte long (unseen, a null
            /// entry, an id of 128 or more, or an index out of range).
            const LONG: u8 = 0x80;
            debug_assert_eq!(W::WIDTH, indices.width);
            // Sized by the dictionary, which `Strings::new` checked against its buffers.
            let mut local = vec![UNSEEN; dictionary.len()];
            // The LEB128 encoding of each entry's id when it is one byte (id < 128), else LONG.
            let mut short = vec![LONG; dictionary.len()];
            // `short` again, padded to 256 entries of LONG, for dictionaries of fewer than 256
            // entries (categories): an index clamped to 255 needs no bounds check, so the
            // block loop below compiles to straight loads.
            let mut table = [LONG; 256];
            let small = dictionary.len() < 256;
            // `Indices::new` checked that the slice is in the buffer.
            let words =
                &indices.buf[indices.offset * W::WIDTH..(indices.offset + indices.len) * W::WIDTH];
            let mut out = Varints::new();
            let mut block = [0u8; ID_BLOCK];
            let mut fast = indices.validity.is_none();
            let mut resolved = 0usize; // entries of `local` given their id
            for (b, rows) in words.chunks(ID_BLOCK * W::WIDTH).enumerate() {
                let first_row = b * ID_BLOCK;
                if fast {
                    // Every row's id already known and one byte long (the common case of a
                    // small dictionary once its entries have been met): the ids stream gets
                    // the block as one table lookup a row, the same bytes the loop below
                    // writes. Any other block takes that loop.
                    let mut seen = 0u8;
                    if small {
                        for (slot, word) in block.iter_mut().zip(rows.chunks_exact(W::WIDTH)) {
                            let k = W::bits(word).min(255) as usize;
                            *slot = table[k];
                            seen |= *slot;
                        }
                    } else {
                        for (slot, word) in block.iter_mut().zip(rows.chunks_exact(W::WIDTH)) {
                            let k = W::read(word).map_or(usize::MAX, |k| k as usize);
                            *slot = short.get(k).copied().unwrap_or(LONG);
                            seen |= *slot;
                        }
                    }
                    if seen & LONG == 0 {
                        out.flush(ids);
                        ids.bytes(&block[..rows.len() / W::WIDTH]);
                        continue;
                    }
                }
                let known = resolved;
                for (j, word) in rows.chunks_exact(W::WIDTH).enumerate() {
                    let i = first_row + j;
                    if indices.validity.is_some() && !bit(indices.validity, indices.offset + i) {
                        nulls.u64(row_base + i as u64);
                        continue;
                    }
                    let k = W::read(word)
                        .and_then(|k| usize::try_from(k).ok())
                        .filter(|&k| k < local.len())
                        .ok_or_else(|| Malformed("dictionary index out of range".into()))?;
                    let mut id = local[k];
                    if id == UNSEEN {
                        id = if dictionary.is_valid(k) {
                            let value = dictionary.get(k)?;
                            match self.ids.get(value) {
                                Some(&id) => id,
                                None => {
                                    let id = self.ids.len() as u64;
                                    self.ids.insert(value.into(), id);
                                    lengths.varint(value.len() as u64);
                                    data.bytes(value);
                                    id
                                }
                            }
                        } else {
                            NULL
                        };
                        local[k] = id;
                        resolved += 1;
                        if id < 0x80 {
                            short[k] = id as u8;
                            if small {
                                table[k] = id as u8; // k < len < 256
                            }
                        }
                    }
                    if id == NULL {
                        nulls.u64(row_base + i as u64);
                    } else {
                        out.push(id, ids);
                    }
                }
                // a block that met no new value would fail the table again: stop trying
                fast &= resolved > known;
            }
            out.flush(ids);
            Ok(())
        }
    }
}

/// Digest of a single buffer with the given algorithm, without any framing (used by the
/// criterion benches and by tests that compare against reference implementations).
pub fn digest_bytes(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::bare(algorithm);
    enc.raw(data);
    enc.finish()
}

/// Values checked per piece of work when a large array is tested for a progression.
const PROGRESSION_PIECE: usize = 1 << 16;

/// `(first, step)` when `values` (native-endian `i64`s; a length that is not a multiple of 8
/// is not an array of them) form an arithmetic progression in wrapping `i64` arithmetic,
/// `values[i] == first + i * step`, else `None`. Fewer than two values are a progression of
/// step 0 (`first` 0 when there is none). Wrapping arithmetic keeps the description exact:
/// `(first, step, len)` gives back every value, so two arrays with one description are equal.
/// Large arrays are checked on the core threads; a mismatch stops the check early.
pub fn int64_progression(values: &[u8]) -> Option<(i64, i64)> {
    if values.len() % 8 != 0 {
        return None;
    }
    let at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&values[i * 8..i * 8 + 8]);
        i64::from_ne_bytes(word)
    };
    let n = values.len() / 8;
    if n < 2 {
        return Some((if n == 1 { at(0) } else { 0 }, 0));
    }
    let (first, step) = (at(0), at(1).wrapping_sub(at(0)));
    let piece_holds = |(p, piece): (usize, &[u8])| {
        let mut expected = first.wrapping_add(((p * PROGRESSION_PIECE) as i64).wrapping_mul(step));
        piece.chunks_exact(8).all(|word| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word); // chunks_exact: always 8 bytes
            let ok = i64::from_ne_bytes(bytes) == expected;
            expected = expected.wrapping_add(step);
            ok
        })
    };
    let holds = if values.len() >= PARALLEL_THRESHOLD {
        crate::core_threads::install(|| {
            values
                .par_chunks(PROGRESSION_PIECE * 8)
                .enumerate()
                .all(piece_holds)
        })
    } else {
        values
            .chunks(PROGRESSION_PIECE * 8)
            .enumerate()
            .all(piece_holds)
    };
    holds.then_some((first, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn progressions_are_found_and_only_they() {
        assert_eq!(int64_progression(&words(&[])), Some((0, 0)));
        assert_eq!(int64_progression(&words(&[7])), Some((7, 0)));
        assert_eq!(int64_progression(&words(&[5, 2, -1])), Some((5, -3)));
        assert_eq!(int64_progression(&words(&[4, 4, 4])), Some((4, 0)));
        assert_eq!(int64_progression(&words(&[0, 1, 3])), None);
        assert_eq!(int64_progression(&[0u8; 12]), None);
        // wrapping: the description still gives back every value
        assert_eq!(
            int64_progression(&words(&[i64::MIN, i64::MAX])),
            Some((i64::MIN, -1))
        );
        // large (parallel) arrays, with one value off in a late piece and in the last one
        let n = 3 * PROGRESSION_PIECE + 11;
        let mut values: Vec<i64> = (0..n as i64).map(|i| 10 + 3 * i).collect();
        assert_eq!(int64_progression(&words(&values)), Some((10, 3)));
        for at in [2 * PROGRESSION_PIECE + 5, n - 1] {
            values[at] += 1;
            assert_eq!(int64_progression(&words(&values)), None);
            values[at] -= 1;
        }
    }

    #[test]
    fn buffering_does_not_change_the_digest() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut one = Encoder::new(Algorithm::Blake3);
        one.raw(&data);
        let mut many = Encoder::new(Algorithm::Blake3);
        for chunk in data.chunks(13) {
            many.raw(chunk);
        }
        assert_eq!(one.finish(), many.finish());
    }

    #[test]
    fn bare_digests_match_reference_implementations() {
        let data = b"abc";
        assert_eq!(
            to_hex(&digest_bytes(Algorithm::Md5, data)),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            to_hex(&digest_bytes(Algorithm::Sha1, data)),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            digest_bytes(Algorithm::Blake3, data),
            blake3::hash(data).as_bytes().to_vec()
        );
        let big = vec![3u8; 3 * PARALLEL_THRESHOLD + 5];
        assert_eq!(
            digest_bytes(Algorithm::Blake3, &big),
            blake3::hash(&big).as_bytes().to_vec()
        );
    }

    fn c_order_gather(
        data: &[u8],
        offset: usize,
        shape: &[usize],
        strides: &[isize],
        item: usize,
    ) -> Vec<u8> {
        let n: usize = shape.iter().product();
        let mut out = Vec::new();
        for mut idx in 0..n {
            let mut off = offset as isize;
            for d in (0..shape.len()).rev() {
                off += (idx % shape[d]) as isize * strides[d];
                idx /= shape[d];
            }
            out.extend_from_slice(&data[off as usize..off as usize + item]);
        }
        out
    }

    #[test]
    fn strided_layouts_hash_like_their_c_order_copy() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 256) as u8).collect();
        // (offset, shape, strides, itemsize): transposed, stepped, negative strides, broadcast.
        let cases: Vec<(usize, Vec<usize>, Vec<isize>, usize)> = vec![
            (0, vec![8, 16], vec![128, 8], 8),
            (0, vec![16, 8], vec![8, 128], 8),
            (0, vec![8, 8], vec![256, 16], 8),
            (4088, vec![8, 8], vec![-256, -8], 8),
            (0, vec![5, 7], vec![0, 4], 4),
            (3, vec![3, 4, 5], vec![200, 40, 3], 2),
            (0, vec![0, 5], vec![8, 8], 8),
        ];
        for (offset, shape, strides, item) in cases {
            let expected = c_order_gather(&data, offset, &shape, &strides, item);
            let mut a = Encoder::new(Algorithm::Blake3);
            feed_strided(&mut a, &data, offset, &shape, &strides, item).unwrap();
            let mut b = Encoder::new(Algorithm::Blake3);
            b.raw(&expected);
            assert_eq!(
                a.finish(),
                b.finish(),
                "shape {shape:?} strides {strides:?}"
            );
        }
    }

    #[test]
    fn out_of_bounds_layouts_are_refused() {
        let data = vec![0u8; 100];
        let mut enc = Encoder::new(Algorithm::Blake3);
        assert!(matches!(
            feed_strided(&mut enc, &data, 0, &[20], &[8], 8),
            Err(LayoutError::OutOfBounds { .. })
        ));
        assert!(matches!(
            feed_strided(&mut enc, &data, 8, &[3], &[-8], 8),
            Err(LayoutError::OutOfBounds { .. })
        ));
        assert_eq!(
            feed_strided(&mut enc, &data, 0, &[2], &[8, 8], 8),
            Err(LayoutError::RankMismatch {
                shape: 1,
                strides: 2
            })
        );
    }

    #[test]
    fn algorithm_names_round_trip() {
        for name in Algorithm::NAMES {
            assert!(Algorithm::from_name(name).is_some());
        }
        assert_eq!(Algorithm::from_name("sha256"), None);
    }

    type Streams = (Vec<u8>, Vec<u8>, Vec<u8>);

    fn streams(arr: &arrow::Strings<'_>) -> Result<Streams, arrow::Malformed> {
        let (mut n, mut l, mut d) = (
            Encoder::bare(Algorithm::Blake3),
            Encoder::bare(Algorithm::Blake3),
            Encoder::bare(Algorithm::Blake3),
        );
        let (mut sn, mut sl, mut sd) = (
            arrow::Sink::new(&mut n),
            arrow::Sink::new(&mut l),
            arrow::Sink::new(&mut d),
        );
        arrow::feed_strings(arr, 0, &mut sn, &mut sl, &mut sd)?;
        let lengths = (sn.finish(), sl.finish(), sd.finish());
        assert_eq!(lengths.1, 3);
        Ok((n.finish(), l.finish(), d.finish()))
    }

    type Checked<'a> = Result<arrow::Strings<'a>, arrow::Malformed>;

    /// Rows `offset..offset + len` of a string array with 32-bit `offsets` into `data`.
    fn offsets32<'a>(
        offsets: &'a [u8],
        data: &'a [u8],
        validity: Option<&'a [u8]>,
        offset: usize,
        len: usize,
    ) -> Checked<'a> {
        arrow::Strings::new(
            arrow::Layout::Offsets32 { offsets, data },
            validity,
            offset,
            len,
        )
    }

    fn view(len: i32, inline: &[u8], buffer: i32, offset: i32) -> Vec<u8> {
        let mut v = len.to_le_bytes().to_vec();
        if len <= 12 {
            let mut padded = inline.to_vec();
            padded.resize(12, 0);
            v.extend_from_slice(&padded);
        } else {
            v.extend_from_slice(b"pref");
            v.extend_from_slice(&buffer.to_le_bytes());
            v.extend_from_slice(&offset.to_le_bytes());
        }
        v
    }

    #[test]
    fn gathered_views_give_the_streams_of_the_row_loops() {
        // Without nulls a views array is read in one pass, in blocks (1 MiB of bytes or 2**16
        // rows); with a validity bitmap (all valid) by the two row loops: same streams.
        let buffer: Vec<u8> = (0..(1usize << 20) + 8).map(|j| (j % 251) as u8).collect();
        let mut lens: Vec<usize> = (0..70_000).map(|i| (i * 7) % 41).collect();
        lens[10] = 1 << 20; // exactly a block
        lens[11] = (1 << 20) + 3; // larger than a block
        lens[12] = 200;
        lens[69_999] = (1 << 20) + 1;
        let views: Vec<u8> = lens
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| {
                let start = i % 5;
                let inline = &buffer[start..start + len.min(12)];
                view(len as i32, inline, 0, start as i32)
            })
            .collect();
        let valid = vec![0xffu8; lens.len().div_ceil(8)];
        let run = |validity: Option<&[u8]>| {
            let arr = arrow::Strings::new(
                arrow::Layout::Views {
                    views: &views,
                    buffers: vec![&buffer[..]],
                },
                validity,
                0,
                lens.len(),
            )
            .unwrap();
            let mut encs: Vec<Encoder> = (0..3).map(|_| Encoder::bare(Algorithm::Blake3)).collect();
            let [n, l, d] = &mut encs[..] else {
                unreachable!()
            };
            let (mut sn, mut sl, mut sd) = (
                arrow::Sink::new(n),
                arrow::Sink::new(l),
                arrow::Sink::new(d),
            );
            arrow::feed_strings(&arr, 0, &mut sn, &mut sl, &mut sd).unwrap();
            let written = (sn.finish(), sl.finish(), sd.finish());
            let digests: Vec<Vec<u8>> = encs.into_iter().map(Encoder::finish).collect();
            (written, digests)
        };
        let (one_pass, row_loops) = (run(None), run(Some(&valid)));
        let expected: u64 = lens.iter().map(|&len| len as u64).sum();
        assert_eq!(one_pass.0 .2, expected);
        assert_eq!(one_pass, row_loops);
    }

    #[test]
    fn offsets_and_views_layouts_give_the_same_streams() {
        let data = b"abthirteen bytes!";
        let offsets: Vec<u8> = [0i32, 2, 2, 17]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect();
        let wide: Vec<u8> = [0i64, 2, 2, 17]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect();
        let views: Vec<u8> = [
            view(2, b"ab", 0, 0),
            view(0, b"", 0, 0),
            view(15, b"", 0, 2),
        ]
        .concat();
        let buffers: Vec<&[u8]> = vec![b"ignoredthirteen bytes!".get(5..).unwrap()];
        let a = offsets32(&offsets, data, None, 0, 3).unwrap();
        let b = arrow::Strings::new(
            arrow::Layout::Offsets64 {
                offsets: &wide,
                data,
            },
            None,
            0,
            3,
        )
        .unwrap();
        let c = arrow::Strings::new(
            arrow::Layout::Views {
                views: &views,
                buffers,
            },
            None,
            0,
            3,
        )
        .unwrap();
        let (a, b, c) = (
            streams(&a).unwrap(),
            streams(&b).unwrap(),
            streams(&c).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn malformed_arrays_are_errors() {
        let data = b"abc";
        let offsets: Vec<u8> = [0i32, 2, 9].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert!(offsets32(&offsets, data, None, 0, 3).is_err());
        assert!(offsets32(&offsets, data, None, usize::MAX, 1).is_err());
        assert!(offsets32(&offsets, data, Some(&[]), 0, 1).is_err());
        let past = offsets32(&offsets, data, None, 0, 2).unwrap();
        let mut e = Encoder::bare(Algorithm::Blake3);
        let mut sink = arrow::Sink::new(&mut e);
        let (mut e2, mut e3) = (
            Encoder::bare(Algorithm::Blake3),
            Encoder::bare(Algorithm::Blake3),
        );
        let (mut s2, mut s3) = (arrow::Sink::new(&mut e2), arrow::Sink::new(&mut e3));
        assert!(arrow::feed_strings(&past, 0, &mut sink, &mut s2, &mut s3).is_err());
        let views = view(13, b"", 0, 0);
        let buffers: Vec<&[u8]> = vec![b"twelve bytes"];
        let short = arrow::Strings::new(
            arrow::Layout::Views {
                views: &views,
                buffers,
            },
            None,
            0,
            1,
        )
        .unwrap();
        assert!(arrow::feed_strings(&short, 0, &mut sink, &mut s2, &mut s3).is_err());
        let mut ids = arrow::DictionaryIds::new();
        let dict = offsets32(&offsets, data, None, 0, 1).unwrap();
        let indices = arrow::Indices::new(&[0, 1], 1, false, None, 0, 2).unwrap();
        let mut e4 = Encoder::bare(Algorithm::Blake3);
        let mut s4 = arrow::Sink::new(&mut e4);
        let err = ids.feed(&indices, &dict, 0, &mut sink, &mut s2, &mut s3, &mut s4);
        assert_eq!(
            err,
            Err(arrow::Malformed("dictionary index out of range".into()))
        );
        assert!(arrow::Indices::new(&[0, 1], 3, false, None, 0, 1).is_err());
        assert!(arrow::Indices::new(&[0, 1], 2, false, None, 1, 1).is_err());
    }
}
