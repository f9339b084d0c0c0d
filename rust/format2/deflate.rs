//! Deflate chunks for the zlib and gzip codecs.
//!
//! libdeflate compresses a chunk faster, and smaller, than zlib at a matching level, but
//! only as a complete stream: its last block carries the BFINAL bit, so such streams cannot
//! follow one another inside the one deflate stream joblib's readers accept. [`piece`]
//! therefore walks libdeflate's output (a deflate parser that decodes every symbol but writes
//! no output), clears the final block's BFINAL bit and ends the piece with an empty stored
//! block, byte-aligned: exactly what zlib's full flush leaves between two chunks. The walk
//! is checked end to end (the stream must parse to exactly the chunk's length and end at its
//! last byte); a stream it does not accept is never written: that chunk is compressed by
//! zlib-rs with a full flush instead.

use std::cell::RefCell;

use super::Error;

/// The libdeflate level used for zlib level `level` (1-9): the fastest level whose files
/// came out no more than ~4% larger than zlib's at `level` on floats, rounded prices, integer
/// ranges and a pickled scikit-learn forest (measured for docs/compatibility.md; libdeflate's
/// levels are a different scale from zlib's, usually smaller at the same number). Level 1
/// of libdeflate misses the short-distance matches of an int32 `arange` (1.9x zlib's file),
/// its levels 3-4 lose about 9% on prices rounded to 3 decimals, and its levels 8-9 about
/// 6% on small random integers (levels 10-11, near-optimal parsing, do not).
pub fn libdeflate_level(level: i32) -> i32 {
    match level.clamp(1, 9) {
        1..=3 => 2,
        4 | 5 => 5,
        l @ 6..=7 => l,
        l => l + 2,
    }
}

/// Raw deflate of `raw` as a non-final piece ended by an empty stored block (as zlib's
/// full flush leaves it), so that such pieces can follow one another in one stream.
pub fn piece(raw: &[u8], level: i32) -> Result<Vec<u8>, Error> {
    let lvl = libdeflate_level(level);
    let sealed = COMPRESSORS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (_, comp, scratch) = match slot.as_mut() {
            Some(s) if s.0 == lvl => s,
            _ => {
                let c = libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(lvl)
                        .map_err(|e| Error::Invalid(format!("deflate level {level}: {e:?}")))?,
                );
                slot.insert((lvl, c, Vec::new()))
            }
        };
        // compress into the thread's scratch buffer (its pages are already mapped), seal
        // it there, and hand out an exactly sized copy
        scratch.resize(comp.deflate_compress_bound(raw.len()) + 5, 0);
        let n = comp
            .deflate_compress(raw, scratch)
            .map_err(|e| Error::Invalid(format!("deflate: {e:?}")))?;
        scratch.truncate(n);
        let ok = seal(scratch, raw.len()).is_ok();
        let out = ok.then(|| scratch.clone());
        if scratch.capacity() > 16 << 20 {
            *scratch = Vec::new(); // one huge chunk does not pin its memory
        }
        Ok::<_, Error>(out)
    })?;
    match sealed {
        Some(out) => Ok(out),
        // never expected; the zlib-rs path writes the same kind of piece, only slower
        None => full_flush(raw, level),
    }
}

thread_local! {
    /// One libdeflate compressor (its tables are large to set up) and output buffer per
    /// worker thread.
    #[allow(clippy::type_complexity)]
    static COMPRESSORS: RefCell<Option<(i32, libdeflater::Compressor, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// zlib-rs, ended by a full flush (the fallback of [`piece`]).
pub fn full_flush(raw: &[u8], level: i32) -> Result<Vec<u8>, Error> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(level.clamp(1, 9) as u32), false);
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&raw[consumed..], &mut out, FlushCompress::Full)
            .map_err(|e| Error::Invalid(format!("deflate: {e}")))?;
        if c.total_in() as usize == raw.len() && out.len() < out.capacity() {
            break;
        }
        if status == Status::BufError || out.len() == out.capacity() {
            out.reserve(out.capacity() / 2 + 64);
        }
    }
    Ok(out)
}

/// Why the walk refused a stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Bad(pub &'static str);

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// LSB-first bit reader over `d`; reads past the end give zero bits (counted, so that an
/// overrun is seen).
struct Bits<'a> {
    d: &'a [u8],
    /// next byte to load
    i: usize,
    buf: u64,
    n: u32,
}

impl Bits<'_> {
    /// Bits consumed so far.
    fn pos(&self) -> usize {
        self.i * 8 - self.n as usize
    }
    /// At least 56 bits in the buffer.
    #[inline(always)]
    fn refill(&mut self) {
        if self.n >= 56 {
            return;
        }
        if let Some(s) = self.d.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
            self.buf |= w << self.n;
            let k = (63 - self.n) / 8;
            self.i += k as usize;
            self.n += k * 8;
        } else {
            while self.n <= 56 {
                let byte = self.d.get(self.i).copied().unwrap_or(0);
                self.buf |= u64::from(byte) << self.n;
                self.i += 1;
                self.n += 8;
            }
        }
    }
    #[inline(always)]
    fn bits(&mut self, k: u32) -> u32 {
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.buf >>= k;
        self.n -= k;
        v
    }
    /// Drops bits up to the next byte boundary.
    fn align(&mut self) {
        let k = self.n % 8;
        self.bits(k);
    }
}

/// Bits looked up at once.
const PRIMARY: u32 = 12;
const MASK: u64 = (1 << PRIMARY) - 1;

// kinds of a fast-table entry (its top 3 bits); 0 = take the slow path
const LITS: u32 = 1 << 29; // | count << 4 | bits: `count` literals in `bits` bits
const MATCH: u32 = 2 << 29; // | base << 8 | extra << 4 | bits: a length code
const END: u32 = 3 << 29; // | bits: the end-of-block code
const DIST: u32 = 4 << 29; // | base << 8 | extra << 4 | bits: a distance code
const KIND: u32 = 7 << 29;

/// A canonical Huffman code: counts and symbols sorted by code (for bit-by-bit decoding of
/// long codes) and a [`PRIMARY`]-bit table of the short ones.
struct Code {
    /// symbol << 4 | length for codes of at most PRIMARY bits, 0 for the rest
    table: Box<[u16; 1 << PRIMARY]>,
    /// what the walk does with the next PRIMARY bits (see the kinds above)
    fast: Box<[u32; 1 << PRIMARY]>,
    count: [u16; 16],
    sorted: [u16; 320],
}

impl Code {
    fn new() -> Code {
        Code {
            table: Box::new([0; 1 << PRIMARY]),
            fast: Box::new([0; 1 << PRIMARY]),
            count: [0; 16],
            sorted: [0; 320],
        }
    }

    fn build(&mut self, lens: &[u8]) -> Result<(), Bad> {
        self.count = [0; 16];
        for &l in lens {
            self.count[l as usize] += 1;
        }
        self.count[0] = 0;
        let mut left: i32 = 1;
        for c in &self.count[1..] {
            left = (left << 1) - i32::from(*c);
            if left < 0 {
                return Err(Bad("over-subscribed code"));
            }
        }
        let mut offs = [0u16; 16];
        for l in 1..15 {
            offs[l + 1] = offs[l] + self.count[l];
        }
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for (l, slot) in next.iter_mut().enumerate().skip(1) {
            code = (code + u32::from(self.count[l - 1])) << 1;
            *slot = code;
        }
        self.table.fill(0);
        for (sym, &l) in lens.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let l = l as usize;
            self.sorted[offs[l] as usize] = sym as u16;
            offs[l] += 1;
            if l as u32 > PRIMARY {
                continue;
            }
            let c = next[l];
            next[l] += 1;
            let rev = (c.reverse_bits() >> (32 - l)) as usize;
            let entry = ((sym as u16) << 4) | l as u16;
            let mut i = rev;
            while i < 1 << PRIMARY {
                self.table[i] = entry;
                i += 1 << l;
            }
        }
        Ok(())
    }

    /// The fast table of a literal/length code: runs of literals, lengths with their
    /// extra-bit counts, the end code.
    fn build_litlen(&mut self) {
        for idx in 0..1usize << PRIMARY {
            let (mut used, mut cnt) = (0u32, 0u32);
            loop {
                let e = self.table[idx >> used];
                let l = u32::from(e & 15);
                if e == 0 || used + l > PRIMARY || (e >> 4) >= 256 {
                    break;
                }
                used += l;
                cnt += 1;
            }
            let e = self.table[idx];
            let (sym, l) = (u32::from(e >> 4), u32::from(e & 15));
            self.fast[idx] = if cnt > 0 {
                LITS | cnt << 4 | used
            } else if e == 0 {
                0
            } else if sym == 256 {
                END | l
            } else if (257..286).contains(&sym) {
                let k = (sym - 257) as usize;
                MATCH | u32::from(LEN_BASE[k]) << 8 | u32::from(LEN_EXTRA[k]) << 4 | l
            } else {
                0 // 286 and 287: refused on the slow path
            };
        }
    }

    /// The fast table of a distance code.
    fn build_dist(&mut self) {
        for idx in 0..1usize << PRIMARY {
            let e = self.table[idx];
            let (sym, l) = ((e >> 4) as usize, u32::from(e & 15));
            self.fast[idx] = if e != 0 && sym < 30 {
                DIST | DIST_BASE[sym] << 8 | u32::from(DIST_EXTRA[sym]) << 4 | l
            } else {
                0
            };
        }
    }

    /// One symbol; the buffer holds at least 15 bits.
    #[inline(always)]
    fn decode(&self, b: &mut Bits<'_>) -> Result<usize, Bad> {
        let e = self.table[(b.buf & MASK) as usize];
        if e != 0 {
            b.bits(u32::from(e & 15));
            return Ok((e >> 4) as usize);
        }
        self.slow(b)
    }

    /// Bit-by-bit canonical decoding (codes longer than the table, or no code at all).
    #[cold]
    fn slow(&self, b: &mut Bits<'_>) -> Result<usize, Bad> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for l in 1..16 {
            code |= b.bits(1) as i32;
            let count = i32::from(self.count[l]);
            if code - count < first {
                return Ok(self.sorted[(index + code - first) as usize] as usize);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(Bad("no such code"))
    }
}

/// The value of a length or distance code's extra bits, then its base; consumes both.
#[inline(always)]
fn coded(b: &mut Bits<'_>, e: u32) -> usize {
    let (l, extra) = (e & 15, (e >> 4) & 15);
    let v = ((b.buf >> l) & ((1u64 << extra) - 1)) as usize;
    b.bits(l + extra);
    ((e >> 8) & 0x0001_ffff) as usize + v
}

/// A distance, by the fast table or the slow path.
#[inline(always)]
fn distance(dist: &Code, b: &mut Bits<'_>) -> Result<usize, Bad> {
    let e = dist.fast[(b.buf & MASK) as usize];
    if e != 0 {
        return Ok(coded(b, e));
    }
    let ds = dist.slow(b)?;
    if ds >= 30 {
        return Err(Bad("bad distance symbol"));
    }
    Ok(DIST_BASE[ds] as usize + b.bits(u32::from(DIST_EXTRA[ds])) as usize)
}

/// For a complete raw deflate stream `d` that decodes to `raw_len` bytes: the bit position
/// of its last block's header and the bit position just after that block's end code.
/// Fails unless the stream parses to exactly `raw_len` bytes, every distance stays inside
/// the output, it ends in its final block and that block ends in its last byte.
pub fn last_block(d: &[u8], raw_len: usize) -> Result<(usize, usize), Bad> {
    let mut b = Bits {
        d,
        i: 0,
        buf: 0,
        n: 0,
    };
    let limit = d.len() * 8;
    let mut out = 0usize;
    let (mut lit, mut dist, mut cl) = (Code::new(), Code::new(), Code::new());
    let mut lens = [0u8; 320];
    loop {
        b.refill();
        let start = b.pos();
        let last = b.bits(1) == 1;
        match b.bits(2) {
            0 => {
                b.align();
                b.refill();
                let len = b.bits(16);
                let nlen = b.bits(16);
                if len != !nlen & 0xffff {
                    return Err(Bad("stored block length"));
                }
                // skip the stored bytes: the cursor is byte-aligned here
                let p = b.pos() + len as usize * 8;
                if p > limit {
                    return Err(Bad("runs past the end"));
                }
                b.i = p / 8;
                b.buf = 0;
                b.n = 0;
                out += len as usize;
            }
            t @ (1 | 2) => {
                let (nlit, ndist) = if t == 1 {
                    lens[..144].fill(8);
                    lens[144..256].fill(9);
                    lens[256..280].fill(7);
                    lens[280..288].fill(8);
                    lens[288..320].fill(5);
                    (288, 32)
                } else {
                    let nlit = b.bits(5) as usize + 257;
                    let ndist = b.bits(5) as usize + 1;
                    let ncl = b.bits(4) as usize + 4;
                    if nlit > 286 || ndist > 30 {
                        return Err(Bad("too many codes"));
                    }
                    let mut cll = [0u8; 19];
                    for &k in &CL_ORDER[..ncl] {
                        b.refill();
                        cll[k] = b.bits(3) as u8;
                    }
                    cl.build(&cll)?;
                    let n = nlit + ndist;
                    let mut i = 0;
                    while i < n {
                        b.refill();
                        let s = cl.decode(&mut b)?;
                        let (v, rep) = match s {
                            0..=15 => (s as u8, 1),
                            16 => {
                                if i == 0 {
                                    return Err(Bad("repeat with nothing before"));
                                }
                                (lens[i - 1], 3 + b.bits(2) as usize)
                            }
                            17 => (0, 3 + b.bits(3) as usize),
                            _ => (0, 11 + b.bits(7) as usize),
                        };
                        if i + rep > n {
                            return Err(Bad("code lengths overflow"));
                        }
                        lens[i..i + rep].fill(v);
                        i += rep;
                    }
                    if lens[256] == 0 {
                        return Err(Bad("no end-of-block code"));
                    }
                    (nlit, ndist)
                };
                lit.build(&lens[..nlit])?;
                lit.build_litlen();
                dist.build(&lens[nlit..nlit + ndist])?;
                dist.build_dist();
                loop {
                    // at most 15 + 5 + 15 + 13 bits per step: the refill leaves 56
                    b.refill();
                    if b.i > d.len() + 8 || out > raw_len {
                        return Err(Bad("runs past the end"));
                    }
                    let e = lit.fast[(b.buf & MASK) as usize];
                    let len = match e & KIND {
                        LITS => {
                            b.bits(e & 15);
                            out += ((e >> 4) & 15) as usize;
                            continue;
                        }
                        MATCH => coded(&mut b, e),
                        END => {
                            b.bits(e & 15);
                            break;
                        }
                        _ => match lit.slow(&mut b)? {
                            0..=255 => {
                                out += 1;
                                continue;
                            }
                            256 => break,
                            s @ 257..=285 => {
                                let k = s - 257;
                                LEN_BASE[k] as usize + b.bits(u32::from(LEN_EXTRA[k])) as usize
                            }
                            _ => return Err(Bad("bad length symbol")),
                        },
                    };
                    if distance(&dist, &mut b)? > out {
                        return Err(Bad("distance before the start"));
                    }
                    out += len;
                }
            }
            _ => return Err(Bad("reserved block type")),
        }
        let end = b.pos();
        if end > limit {
            return Err(Bad("runs past the end"));
        }
        if last {
            if out != raw_len || end.div_ceil(8) != d.len() {
                return Err(Bad("stream length differs"));
            }
            return Ok((start, end));
        }
    }
}

/// Turns `d`, a complete raw deflate stream of `raw_len` bytes, into a non-final piece
/// ended by an empty stored block (byte-aligned, as zlib's full flush leaves it).
pub fn seal(d: &mut Vec<u8>, raw_len: usize) -> Result<(), Bad> {
    let (start, end) = last_block(d, raw_len)?;
    if end % 8 != 0 && d[end / 8] >> (end % 8) != 0 {
        return Err(Bad("padding bits are not zero"));
    }
    d[start / 8] &= !(1u8 << (start % 8));
    let r = end % 8;
    if r == 0 || r > 5 {
        d.push(0); // the stored block's 3 header bits (all zero) and padding
    }
    d.extend_from_slice(&[0, 0, 0xff, 0xff]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Inputs of every kind libdeflate treats differently: empty, tiny, stored
    /// (incompressible), fixed-code, long runs, text, and numbers like the benchmarks'.
    fn corpus() -> Vec<Vec<u8>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let noise: Vec<u8> = (0..300_000).map(|_| rnd() as u8).collect();
        let small_ints: Vec<u8> = (0..200_000u32)
            .flat_map(|_| ((rnd() % 16) as u32).to_le_bytes())
            .collect();
        let floats: Vec<u8> = (0..100_000)
            .flat_map(|_| (((rnd() % 20_000) as f64 - 10_000.0) / 1000.0).to_le_bytes())
            .collect();
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("row {i}: the quick brown fox {}\n", i % 97).into_bytes())
            .collect();
        vec![
            Vec::new(),
            b"a".to_vec(),
            b"abcabcabcabc".to_vec(),
            vec![0u8; 1 << 20],
            noise,
            small_ints,
            floats,
            text,
        ]
    }

    /// The pieces of `inputs` in one raw deflate stream, closed as the writer does.
    fn inflate_all(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut all = pieces.concat();
        all.extend_from_slice(&[0x03, 0x00]);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&all[..])
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn pieces_make_one_stream_zlib_decodes() {
        let corpus = corpus();
        for level in 1..=9 {
            let pieces: Vec<Vec<u8>> = corpus.iter().map(|c| piece(c, level).unwrap()).collect();
            assert_eq!(inflate_all(&pieces), corpus.concat(), "level {level}");
            // each piece is sealed by the walk, not the fallback: libdeflate's output is
            // accepted, and every piece ends as a full flush does
            for (c, p) in corpus.iter().zip(&pieces) {
                assert_eq!(&p[p.len() - 4..], &[0, 0, 0xff, 0xff]);
                let mut fresh = vec![0u8; 1 << 21];
                let mut comp = libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(libdeflate_level(level)).unwrap(),
                );
                let n = comp.deflate_compress(c, &mut fresh).unwrap();
                fresh.truncate(n);
                assert!(seal(&mut fresh, c.len()).is_ok(), "level {level}");
            }
        }
    }

    #[test]
    fn the_fallback_writes_the_same_kind_of_piece() {
        let corpus = corpus();
        let pieces: Vec<Vec<u8>> = corpus.iter().map(|c| full_flush(c, 3).unwrap()).collect();
        assert_eq!(inflate_all(&pieces), corpus.concat());
    }

    #[test]
    fn the_walk_refuses_what_it_cannot_vouch_for() {
        let raw = &corpus()[6];
        let mut comp = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(2).unwrap());
        let mut good = vec![0u8; comp.deflate_compress_bound(raw.len())];
        let n = comp.deflate_compress(raw, &mut good).unwrap();
        good.truncate(n);
        assert!(last_block(&good, raw.len()).is_ok());
        // another length than the stream decodes to
        assert!(last_block(&good, raw.len() + 1).is_err());
        assert!(last_block(&good, raw.len() - 1).is_err());
        // cut short, or with a byte after the end
        assert!(last_block(&good[..good.len() - 1], raw.len()).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(last_block(&longer, raw.len()).is_err());
        // a stream of zlib-rs pieces has no final block at all
        let z = full_flush(raw, 3).unwrap();
        assert!(last_block(&z, raw.len()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_walk_never_panics_on_any_bytes(d in proptest::collection::vec(0u8..=255, 0..400),
                                              n in 0usize..5000) {
            let _ = last_block(&d, n);
        }

        #[test]
        fn damaged_streams_are_refused_or_still_exact(flip in 0usize..100_000, bit in 0u8..8) {
            let raw = b"the walk must never report a boundary it did not parse to the end ".repeat(300);
            let mut comp = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(2).unwrap());
            let mut d = vec![0u8; comp.deflate_compress_bound(raw.len())];
            let n = comp.deflate_compress(&raw, &mut d).unwrap();
            d.truncate(n);
            let at = flip % d.len();
            d[at] ^= 1 << bit;
            if seal(&mut d, raw.len()).is_ok() {
                // whatever it accepted still decodes, in one stream, to raw's length
                let mut all = d.clone();
                all.extend_from_slice(&[0x03, 0x00]);
                let mut back = Vec::new();
                let ok = flate2::read::DeflateDecoder::new(&all[..]).read_to_end(&mut back);
                proptest::prop_assert!(ok.is_ok());
                proptest::prop_assert_eq!(back.len(), raw.len());
            }
        }
    }
}
