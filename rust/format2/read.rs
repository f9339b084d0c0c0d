//! Reading a format-2 dump: the plan (which chunks a buffer owns, which hold the pickle
//! stream), and decoding any set of chunks into their destinations on all cores.

use rayon::prelude::*;

use super::head;
use super::index::{self, Chunk, Index};
use super::pickle_scan::{self, Arg};
pub use super::source::Source;
use super::source::Window;
use super::{checksum, chunk, corrupt, Codec, Error};
use crate::error::invalid;

/// A dump found in a source: how to read it back, the bytes it takes, and (uncompressed)
/// where its index lies.
pub struct Opened {
    pub plan: Plan,
    /// bytes the dump takes, from its first byte
    pub dump_len: u64,
    /// absolute offset of the index in an uncompressed dump
    pub index_offset: Option<u64>,
}

/// Opens the dump that starts at `start` of `src`: finds and validates its header unit,
/// index and trailer. Ok(None) when it is not format 2 (a joblib file, say).
pub fn open(src: &dyn Source, start: u64) -> Result<Option<Opened>, Error> {
    if start >= src.len() {
        return Ok(None);
    }
    let mut window = Window::new(src, start, src.len());
    let avail = window.avail();
    let Some(found) = head::find(&mut window)? else {
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
    Ok(Some(Opened {
        plan,
        dump_len,
        index_offset,
    }))
}

/// How many bytes the dump that `data` starts with takes, judged from the bytes read so
/// far (`data`, from the dump's first byte): for a reader of a stream (a socket, a
/// decompressor) that must not read past the dump nor trust a size before it is verified.
/// Too short to see the index's fixed part: the bytes up to its end; with it, the header
/// unit's length (its index length bounded by the tables the fixed part declares); with the
/// whole header unit, the dump's length (the index verified first). Ok(None) when `data`
/// does not start a format-2 dump whose header unit is stored as is (bz2 and xz compress
/// theirs: their length is not known before decoding).
pub fn stream_len(data: &[u8]) -> Result<Option<u64>, Error> {
    let Some(codec) = head::sniff(data) else {
        return Ok(None);
    };
    let Some(at) = head::index_at(codec) else {
        return Ok(None);
    };
    let Some(fixed) = data.get(at..at + index::FIXED_LEN) else {
        return Ok(Some((at + index::FIXED_LEN) as u64));
    };
    if fixed[..8] != index::MAGIC || fixed[12] != codec as u8 {
        return Ok(None);
    }
    let n = u64::from_le_bytes(data[at - 8..at].try_into().expect("8 bytes"));
    let h_len = index::header_len(n, fixed)?;
    let framed = head::framed_len(codec, h_len).ok_or_else(|| corrupt("no stored header unit"))?;
    if data.len() < framed {
        return Ok(Some(framed as u64));
    }
    let src: &[u8] = data;
    let Some(found) = head::find(&mut Window::new(&src, 0, framed as u64))? else {
        return Ok(None);
    };
    // `decode` checks that these sizes add up without overflow
    let idx = Index::decode(&found.index, codec, found.base, u64::MAX)?;
    Ok(Some(found.base + idx.stored_len + codec.trailer_len()))
}

/// The pickle stream joblite's unpickler reads, and per buffer its bytes when it owns no
/// chunks (None when it does).
pub type Decoded = (Stream, Vec<Option<Vec<u8>>>);

/// The pickle stream joblite's unpickler reads, kept as the decoded chunks and the pieces
/// of them it is made of, so that it is copied once, straight into its final home:
/// `PROTO 5`, then the pieces with a NEXT_BUFFER between each two.
pub struct Stream {
    area: Vec<u8>,
    parts: Vec<(usize, usize)>,
}

impl Stream {
    /// Bytes of the stream.
    pub fn len(&self) -> usize {
        2 + self.parts.iter().map(|(a, b)| b - a).sum::<usize>() + self.parts.len() - 1
    }

    /// Whether the stream is empty (never: it holds PROTO at least).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the stream to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of [`Stream::len`] bytes (it may be uninitialised:
    /// only raw-pointer copies write to it) and overlap nothing this stream holds.
    pub unsafe fn copy_to(&self, dst: *mut u8) {
        let mut at = 0usize;
        let mut put = |src: &[u8]| {
            // SAFETY: `at + src.len() <= self.len()` (the pieces below add up to it), and
            // the caller vouches for `dst`.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.add(at), src.len()) };
            at += src.len();
        };
        put(&[0x80, 5]);
        for (k, &(a, b)) in self.parts.iter().enumerate() {
            if k > 0 {
                put(&[0x97]); // NEXT_BUFFER
            }
            put(&self.area[a..b]);
        }
    }

    /// The stream as one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        // SAFETY: `v` holds exactly `self.len()` bytes of its own.
        unsafe { self.copy_to(v.as_mut_ptr()) };
        v
    }
}

/// How to read one dump back.
pub struct Plan {
    pub index: Index,
    /// absolute offset of the data section in the source
    pub data_start: u64,
    /// for each buffer: the range of chunks it owns (it is read straight into its own
    /// memory), or None when its bytes come from the stream chunks
    pub owned: Vec<Option<(usize, usize)>>,
    /// the chunks that are not owned by a buffer, in order, and where each starts in the
    /// stream area (their concatenation)
    pub stream_chunks: Vec<(usize, u64)>,
    pub stream_len: u64,
}

impl Plan {
    pub fn new(index: Index, data_start: u64) -> Plan {
        let chunks = &index.chunks;
        let mut owned = Vec::with_capacity(index.buffers.len());
        let mut is_owned = vec![false; chunks.len()];
        for b in &index.buffers {
            let i0 = chunks.partition_point(|c| c.raw_off < b.data_off);
            let end = b.data_off + b.data_len;
            let i1 = chunks.partition_point(|c| c.raw_off < end);
            let tiles = b.data_len > 0
                && i0 < i1
                && chunks[i0].raw_off == b.data_off
                && chunks[i1 - 1].raw_off + chunks[i1 - 1].raw_len == end;
            if tiles {
                is_owned[i0..i1].iter_mut().for_each(|o| *o = true);
                owned.push(Some((i0, i1)));
            } else {
                owned.push(None);
            }
        }
        let mut stream_chunks = Vec::new();
        let mut at = 0u64;
        for (i, c) in chunks.iter().enumerate() {
            if !is_owned[i] {
                stream_chunks.push((i, at));
                at += c.raw_len;
            }
        }
        Plan {
            index,
            data_start,
            owned,
            stream_chunks,
            stream_len: at,
        }
    }

    /// Where raw offset `raw` is in the stream area.
    fn stream_pos(&self, raw: u64) -> Result<usize, Error> {
        let chunks = &self.index.chunks;
        let k = self
            .stream_chunks
            .partition_point(|&(i, _)| chunks[i].raw_off + chunks[i].raw_len <= raw);
        let &(i, at) = self
            .stream_chunks
            .get(k)
            .ok_or_else(|| corrupt("stream offset outside the data"))?;
        let c = &chunks[i];
        if raw < c.raw_off {
            return Err(corrupt("stream offset inside a buffer"));
        }
        Ok((at + raw - c.raw_off) as usize)
    }

    /// Decodes the stream chunks, and returns the pickle stream joblite's unpickler reads
    /// (`PROTO 5`, NEXT_BUFFER where each buffer's record and bytes are) and the bytes of
    /// the buffers that own no chunks.
    pub fn stream(&self, src: &dyn Source, verify: bool) -> Result<Decoded, Error> {
        // Decoded in waves, memory growing only with what the chunks really decode to: a
        // hostile index may declare gigabytes that its few stored bytes cannot hold, and
        // its first wave then fails before the rest is allocated. Every allocation is
        // fallible (an abort is never an answer to a file).
        let mut area: Vec<u8> = Vec::new();
        let mut k = 0usize;
        while k < self.stream_chunks.len() {
            let mut end = k;
            let mut wave = 0u64;
            while end < self.stream_chunks.len()
                && (end == k || wave + self.index.chunks[self.stream_chunks[end].0].raw_len <= WAVE)
            {
                wave += self.index.chunks[self.stream_chunks[end].0].raw_len;
                end += 1;
            }
            let at = area.len();
            grow(&mut area, wave as usize)?;
            let mut tasks = Vec::with_capacity(end - k);
            let mut rest: &mut [u8] = &mut area[at..];
            for &(i, _) in &self.stream_chunks[k..end] {
                let (dst, tail) = rest.split_at_mut(self.index.chunks[i].raw_len as usize);
                rest = tail;
                tasks.push((self.index.chunks[i], dst));
            }
            decode_chunks(src, self.data_start, self.index.codec, tasks, verify)?;
            k = end;
        }
        let h_len = self.index.chunks.first().map_or(0, |c| c.raw_off);
        let mut parts = Vec::with_capacity(self.index.buffers.len() + 1);
        let mut small = Vec::with_capacity(self.index.buffers.len());
        let mut from = h_len;
        for (b, owned) in self.index.buffers.iter().zip(&self.owned) {
            let (p0, p1) = (self.stream_pos(from)?, self.stream_pos(b.record_off)?);
            if p1 < p0 || (b.record_off - from) as usize != p1 - p0 {
                return Err(corrupt("stream pieces are not contiguous"));
            }
            parts.push((p0, p1));
            if owned.is_none() && b.data_len > 0 {
                let d0 = self.stream_pos(b.data_off)?;
                let d1 = d0 + b.data_len as usize;
                let d = area
                    .get(d0..d1)
                    .ok_or_else(|| corrupt("buffer outside the stream"))?;
                let mut v = Vec::new();
                v.try_reserve_exact(d.len())
                    .map_err(|_| no_memory(d.len(), "a buffer"))?;
                v.extend_from_slice(d);
                small.push(Some(v));
            } else if owned.is_none() {
                small.push(Some(Vec::new()));
            } else {
                small.push(None);
            }
            from = b.data_off + b.data_len;
        }
        let p0 = self.stream_pos(from)?;
        let tail = &area[p0..];
        if tail.len() as u64 != self.index.raw_len - from || tail.last() != Some(&b'.') {
            return Err(corrupt("pickle stream does not end with STOP"));
        }
        parts.push((p0, area.len()));
        let stream = Stream { area, parts };
        check_memo(&stream)?;
        Ok((stream, small))
    }

    /// Checks the bytes after the last chunk (zlib / gzip trailer) against the index.
    pub fn check_trailer(&self, src: &dyn Source, h: &[u8]) -> Result<(), Error> {
        let idx = &self.index;
        let n = idx.codec.trailer_len() as usize;
        if n == 0 {
            return Ok(());
        }
        let h_len = h.len() as u64;
        let want =
            super::write::trailer_bytes(idx.codec, h, idx.trailer as u32, idx.raw_len - h_len);
        let got = src.read_vec(self.data_start + idx.stored_len, n, 0)?;
        if got != want {
            return Err(corrupt(format!(
                "the {} trailer does not match the index: the file is damaged",
                idx.codec.name()
            )));
        }
        Ok(())
    }

    /// The chunks buffer `k` owns.
    pub fn owned_chunks(&self, k: usize) -> Option<&[Chunk]> {
        let (i0, i1) = (*self.owned.get(k)?)?;
        Some(&self.index.chunks[i0..i1])
    }

    /// Absolute offset of buffer `k`'s bytes in an uncompressed file.
    pub fn data_offset(&self, k: usize) -> Option<u64> {
        let c = self.owned_chunks(k)?.first()?;
        (self.index.codec == Codec::None).then_some(self.data_start + c.stored_off)
    }

    /// Decodes the owned buffers `(k, dst)` (dst exactly the buffer's size).
    pub fn read_buffers(
        &self,
        src: &dyn Source,
        jobs: Vec<(usize, &mut [u8])>,
        verify: bool,
    ) -> Result<(), Error> {
        let mut tasks = Vec::new();
        for (k, dst) in jobs {
            let chunks = self
                .owned_chunks(k)
                .ok_or_else(|| invalid(format!("buffer {k} owns no chunks")))?;
            let total: u64 = chunks.iter().map(|c| c.raw_len).sum();
            if total != dst.len() as u64 {
                return Err(invalid("destination size mismatch"));
            }
            let mut rest = dst;
            for c in chunks {
                let (d, tail) = rest.split_at_mut(c.raw_len as usize);
                rest = tail;
                tasks.push((*c, d));
            }
        }
        decode_chunks(src, self.data_start, self.index.codec, tasks, verify)
    }

    /// Checks buffer `k`'s bytes (a memory map of an uncompressed file) against its checksums.
    pub fn verify_buffer(&self, k: usize, data: &[u8]) -> Result<(), Error> {
        let chunks = self
            .owned_chunks(k)
            .ok_or_else(|| invalid(format!("buffer {k} owns no chunks")))?;
        let base = chunks.first().map_or(0, |c| c.raw_off);
        crate::core_threads::install(|| {
            chunks.par_iter().try_for_each(|c| {
                let at = (c.raw_off - base) as usize;
                let part = data
                    .get(at..at + c.raw_len as usize)
                    .ok_or_else(|| invalid("mapped buffer too short"))?;
                if checksum(part) != c.xxh3 {
                    return Err(mismatch(c, self.index.codec));
                }
                Ok(())
            })
        })
    }
}

/// Refuses a stream whose memo opcodes name an index no pickler would have written there,
/// or whose counted argument (BINBYTES8, BINUNICODE8, BYTEARRAY8, ...) runs past its end.
///
/// CPython's C unpickler grows its memo to twice the index a PUT / BINPUT / LONG_BINPUT
/// names, and zeroes it: five stream bytes (`r` and a u32) ask for up to 64 GiB. A pickler
/// numbers its memo entries in order (the index is the count of entries made before), so a
/// memo index beyond the memo operations seen so far can only be forged. The walk follows
/// the unpickler opcode by opcode; it stops at STOP, at an opcode the unpickler does not
/// know, or at another argument that runs past the end (the unpickler fails there first). A
/// counted argument is different: the C unpickler allocates its declared length (up to
/// 2**63 bytes) before it reads it, so it is refused here.
fn check_memo(stream: &Stream) -> Result<(), Error> {
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * stream.parts.len() + 1);
    pieces.push(&[0x80, 5]);
    for (k, &(a, b)) in stream.parts.iter().enumerate() {
        if k > 0 {
            pieces.push(&[0x97]);
        }
        pieces.push(&stream.area[a..b]);
    }
    let mut cur = Cursor {
        pieces: &pieces,
        at: (0, 0),
    };
    let mut memo_ops = 0u64;
    let too_far = |idx: u64, made: u64| {
        corrupt(format!(
            "the pickle stream stores memo entry {idx} after only {made} memo operations \
             (a forged stream: it would make the unpickler allocate its memo that large)"
        ))
    };
    while let Some(op) = cur.next() {
        let idx = match op {
            b'.' => return Ok(()),
            0x94 => None, // MEMOIZE: the next entry
            b'q' => cur.le(1),
            b'r' => cur.le(4),
            b'p' => match cur.line() {
                Some(line) => Some(parse_index(&line).unwrap_or(u64::MAX)),
                None => return Ok(()),
            },
            _ => {
                let Some(arg) = pickle_scan::arg_of(op) else {
                    return Ok(());
                };
                let ok = match arg {
                    Arg::Fixed(n) => cur.skip(n as u64),
                    Arg::Counted(w) => match cur.le(w) {
                        // the C unpickler allocates a counted argument before reading it
                        Some(n) if !cur.skip(n) => {
                            return Err(corrupt(format!(
                                "the pickle stream declares a {n}-byte argument past its end"
                            )))
                        }
                        Some(_) => true,
                        None => false,
                    },
                    Arg::Lines(n) => (0..n).all(|_| cur.line().is_some()),
                };
                if !ok {
                    return Ok(());
                }
                continue;
            }
        };
        match (op, idx) {
            (0x94, _) => {}
            (_, None) => return Ok(()), // the argument runs past the end
            (_, Some(i)) if i > memo_ops => return Err(too_far(i, memo_ops)),
            _ => {}
        }
        memo_ops += 1;
    }
    Ok(())
}

/// A decimal memo index (PUT's text argument), as the unpickler's `int()` reads it.
fn parse_index(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    text.trim().parse::<u64>().ok()
}

/// Reads the concatenation of `pieces` in order, without joining them.
struct Cursor<'a> {
    pieces: &'a [&'a [u8]],
    /// (piece, offset in it)
    at: (usize, usize),
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        loop {
            let piece = self.pieces.get(self.at.0)?;
            if let Some(&b) = piece.get(self.at.1) {
                self.at.1 += 1;
                return Some(b);
            }
            self.at = (self.at.0 + 1, 0);
        }
    }

    /// Skips `n` bytes; false when fewer are left.
    fn skip(&mut self, mut n: u64) -> bool {
        while n > 0 {
            let Some(piece) = self.pieces.get(self.at.0) else {
                return false;
            };
            let here = (<[u8]>::len(piece) - self.at.1) as u64;
            if n <= here {
                self.at.1 += n as usize;
                return true;
            }
            n -= here;
            self.at = (self.at.0 + 1, 0);
        }
        true
    }

    /// A little-endian unsigned integer of `w` bytes.
    fn le(&mut self, w: usize) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..w {
            v |= u64::from(self.next()?) << (8 * i);
        }
        Some(v)
    }

    /// The bytes up to the next newline (which is consumed); None at the end.
    fn line(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'\n' => return Some(out),
                b => {
                    if out.len() < 32 {
                        out.push(b); // a memo index is short; longer text is skipped
                    }
                }
            }
        }
    }
}

/// Raw bytes of stream chunks decoded per wave (at least one chunk).
const WAVE: u64 = 64 << 20;

/// Appends `n` zero bytes to `v`, failing (never aborting) when memory is short.
fn grow(v: &mut Vec<u8>, n: usize) -> Result<(), Error> {
    v.try_reserve(n)
        .map_err(|_| no_memory(v.len() + n, "a pickle stream"))?;
    // fresh pages are faulted in as huge pages: on a virtual machine 4 KiB faults cost
    // more than the copy that follows (rust/pages.rs)
    crate::pages::advise_huge_pages(v.as_mut_ptr(), v.capacity());
    v.resize(v.len() + n, 0);
    Ok(())
}

fn no_memory(n: usize, what: &'static str) -> Error {
    Error::LimitExceeded {
        what,
        declared: n as u64,
        limit: None,
    }
}

fn mismatch(c: &Chunk, codec: Codec) -> Error {
    let hint = if codec == Codec::None {
        " (or its arrays were changed in place through a writable memory map by another \
         program, e.g. joblib.load(mmap_mode='r+'); load(..., verify=False) skips the check)"
    } else {
        ""
    };
    Error::Checksum {
        what: format!("the chunk at raw offset {}", c.raw_off),
        hint,
    }
}

/// Reads, verifies and decodes each chunk into its destination, on all cores.
pub fn decode_chunks(
    src: &dyn Source,
    data_start: u64,
    codec: Codec,
    tasks: Vec<(Chunk, &mut [u8])>,
    verify: bool,
) -> Result<(), Error> {
    let one = |(c, dst): (Chunk, &mut [u8])| -> Result<(), Error> {
        let at = data_start + c.stored_off;
        if codec == Codec::None {
            src.read_at(at, dst)?;
            if verify && checksum(dst) != c.xxh3 {
                return Err(mismatch(&c, codec));
            }
            return Ok(());
        }
        // room for the final empty deflate block that `chunk::decode` appends
        let mut stored = src.read_vec(at, c.stored_len as usize, 2)?;
        if verify && checksum(&stored) != c.xxh3 {
            return Err(mismatch(&c, codec));
        }
        chunk::decode(codec, &mut stored, dst)
    };
    crate::core_threads::install(|| tasks.into_par_iter().with_max_len(1).try_for_each(one))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format2::index::needed_len;

    /// An uncompressed dump of the pickle `N.` (None) with `pad` bytes of index padding.
    fn tiny_dump(pad: usize) -> Vec<u8> {
        let data = b"N.";
        let index_len = needed_len(1, 0) + pad;
        let h_len = (index_len + head::H_OVERHEAD) as u64;
        let idx = Index {
            codec: Codec::None,
            flags: 0,
            raw_len: h_len + 2,
            stored_len: 2,
            base: 0,
            trailer: 0,
            chunks: vec![Chunk {
                stored_off: 0,
                stored_len: 2,
                raw_off: h_len,
                raw_len: 2,
                xxh3: checksum(data),
            }],
            buffers: vec![],
        };
        let mut out = head::raw_header(&idx.encode(index_len).unwrap());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn stream_len_bounds_then_verifies() {
        let dump = tiny_dump(0);
        let h_len = dump.len() as u64 - 2;
        let fixed = head::H_PREFIX_LEN + index::FIXED_LEN;
        // too short to see the index's fixed part: read up to its end
        assert_eq!(stream_len(&dump[..5]).unwrap(), Some(fixed as u64));
        assert_eq!(stream_len(&dump[..fixed]).unwrap(), Some(h_len));
        assert_eq!(
            stream_len(&dump[..h_len as usize]).unwrap(),
            Some(h_len + 2)
        );
        let mut more = dump.clone();
        more.extend_from_slice(b"next message");
        assert_eq!(stream_len(&more).unwrap(), Some(h_len + 2));
        assert_eq!(
            stream_len(b"\x80\x04\x95 a joblib pickle ....").unwrap(),
            None
        );
        // an index length past its tables' bound, or short of them: refused unread
        let n = u64::from_le_bytes(dump[3..11].try_into().unwrap());
        for (bad, long) in [(n + index::MAX_PADDING + 1, true), (n - 1, false)] {
            let mut d = dump.clone();
            d[3..11].copy_from_slice(&bad.to_le_bytes());
            let e = stream_len(&d[..fixed]).unwrap_err();
            assert_eq!(matches!(e, Error::LimitExceeded { .. }), long, "{e}");
        }
        // a damaged index is never believed
        let mut d = dump.clone();
        d[head::H_PREFIX_LEN + 40] ^= 1; // stored_len
        assert!(matches!(stream_len(&d), Err(Error::Checksum { .. })));
        // the whole dump opens and reads back
        let src: &[u8] = &dump;
        let opened = open(&src, 0).unwrap().unwrap();
        assert_eq!(opened.dump_len, h_len + 2);
        let (stream, _) = opened.plan.stream(&src, true).unwrap();
        assert_eq!(stream.to_vec(), b"\x80\x05N.");
    }

    fn walk(body: &[u8], parts: Vec<(usize, usize)>) -> Result<(), Error> {
        check_memo(&Stream {
            area: body.to_vec(),
            parts,
        })
    }

    #[test]
    fn memo_indices_and_counted_lengths_are_bounded() {
        // in order: MEMOIZE, BINPUT 1, LONG_BINPUT 2, PUT 3 (the next index each time)
        let ok = b"N\x94Nq\x01Nr\x02\x00\x00\x00Np3\n.";
        assert!(walk(ok, vec![(0, ok.len())]).is_ok());
        for bad in [
            &b"Nr\x00\x00\x00\x04."[..], // LONG_BINPUT 2**26 on an empty memo
            b"Nq\x05.",                  // BINPUT 5
            b"Np99999999\n.",            // PUT
            b"\x8e\x00\x00\x00\x00\x00\x01\x00\x00xy.", // BINBYTES8 of 2**40 bytes
        ] {
            assert!(walk(bad, vec![(0, bad.len())]).is_err(), "{bad:?}");
        }
        // an argument may not hide the rest of the stream; NEXT_BUFFER joins the parts
        let two = b"C\x02ab\x94N\x94.";
        assert!(walk(two, vec![(0, 5), (5, two.len())]).is_ok());
        // a stream cut in an argument other than a count is left to the unpickler
        assert!(walk(b"J\x01", vec![(0, 2)]).is_ok());
    }

    #[test]
    fn index_padding_is_bounded() {
        let small = tiny_dump(index::MAX_PADDING as usize);
        let src: &[u8] = &small;
        assert!(open(&src, 0).unwrap().is_some());
        let big = tiny_dump(index::MAX_PADDING as usize + 8);
        let src: &[u8] = &big;
        assert!(matches!(
            open(&src, 0),
            Err(Error::LimitExceeded {
                what: "index padding",
                ..
            })
        ));
    }
}
