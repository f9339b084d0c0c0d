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
pub const ENCODING_VERSION: &[u8] = b"joblite-hash-v4\0";

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

/// Digest of a single buffer with the given algorithm, without any framing (used by the
/// criterion benches and by tests that compare against reference implementations).
pub fn digest_bytes(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::bare(algorithm);
    enc.raw(data);
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
