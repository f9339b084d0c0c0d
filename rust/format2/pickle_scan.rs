//! Walks a protocol-5 pickle stream opcode by opcode and says how to turn it into the
//! pickle part of a format-2 file: the leading PROTO and every FRAME opcode are dropped
//! (joblib's unpickler reads array bytes straight from the file, which a frame would hide),
//! every NEXT_BUFFER marks where an out-of-band buffer goes, a READONLY_BUFFER after it is
//! dropped, every `bytes` / `bytearray` / `str` payload of at least `min_in_band` bytes is
//! marked to become a record of its own (docs/format.md, "In-band objects"), and the stream
//! ends at its STOP.
//!
//! The stream may come in several parts (what the C pickler hands its file's `write`: its
//! frames, and each large payload on its own, by reference): the scan walks their
//! concatenation without joining them, so a 1 GB `bytes` is never copied to be scanned.

use super::Error;

/// One piece of the rewritten stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `start..end` of part `part`, kept as they are.
    Keep(usize, usize, usize),
    /// The next out-of-band buffer goes here (a NEXT_BUFFER opcode was).
    Buffer,
    /// An in-band payload of `len` bytes becomes a record here, of kind `kind`
    /// ([`BYTES`], [`BYTEARRAY`], [`STR`]: its UTF-8 bytes); its bytes are the
    /// [`Piece::Payload`] pieces that follow.
    InBand(u8, u64),
    /// Bytes `start..end` of part `part`, the payload of the last [`Piece::InBand`].
    Payload(usize, usize, usize),
}

/// Kinds of in-band payloads.
pub const BYTES: u8 = 0;
pub const BYTEARRAY: u8 = 1;
pub const STR: u8 = 2;

/// How an opcode's argument is laid out (pickletools' table), for every walk of a stream.
pub(crate) enum Arg {
    Fixed(usize),
    /// a little-endian length of this many bytes, then that many bytes
    Counted(usize),
    /// text up to a newline, `n` times
    Lines(usize),
}

pub(crate) fn arg_of(op: u8) -> Option<Arg> {
    use Arg::*;
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | b'Q' | b'R' | b'a' | b'b' | b'd' | b'}'
        | b'e' | b'l' | b']' | b'o' | b's' | b't' | b')' | b'u' => Fixed(0),
        0x81 | 0x85..=0x89 | 0x8f..=0x94 | 0x97 | 0x98 => Fixed(0),
        b'F' | b'I' | b'L' | b'P' | b'S' | b'V' | b'g' | b'p' => Lines(1),
        b'c' | b'i' => Lines(2),
        b'J' => Fixed(4),
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Fixed(1),
        b'M' | 0x83 => Fixed(2),
        b'j' | b'r' | 0x84 => Fixed(4),
        b'G' | 0x95 => Fixed(8),
        b'T' | b'X' | b'B' | 0x8b => Counted(4),
        b'U' | b'C' | 0x8a | 0x8c => Counted(1),
        0x8d | 0x8e | 0x96 => Counted(8),
        _ => return None,
    })
}

/// The kind of in-band payload an opcode carries, if it is one a record can replace.
fn in_band_kind(op: u8) -> Option<u8> {
    match op {
        b'B' | 0x8e => Some(BYTES), // BINBYTES, BINBYTES8
        0x96 => Some(BYTEARRAY),    // BYTEARRAY8
        b'X' | 0x8d => Some(STR),   // BINUNICODE, BINUNICODE8
        _ => None,
    }
}

fn bad(msg: String) -> Error {
    Error::Invalid(format!("pickle stream: {msg}"))
}

/// The concatenation of the parts, read byte by byte near a cursor that mostly moves ahead.
struct Parts<'a> {
    parts: &'a [&'a [u8]],
    /// offset of each part in the concatenation
    starts: Vec<usize>,
    total: usize,
    cur: usize,
}

impl<'a> Parts<'a> {
    fn new(parts: &'a [&'a [u8]]) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut total = 0usize;
        for p in parts {
            starts.push(total);
            total += p.len();
        }
        Parts {
            parts,
            starts,
            total,
            cur: 0,
        }
    }

    /// The part holding offset `pos` (`pos < total`), non-empty.
    fn locate(&mut self, pos: usize) -> usize {
        let c = self.cur;
        if c < self.parts.len()
            && pos >= self.starts[c]
            && pos < self.starts[c] + self.parts[c].len()
        {
            return c;
        }
        // the last part starting at or before `pos` that is not empty
        let mut i = self.starts.partition_point(|&s| s <= pos) - 1;
        while self.parts[i].is_empty() {
            i += 1;
        }
        self.cur = i;
        i
    }

    fn byte(&mut self, pos: usize) -> Option<u8> {
        if pos >= self.total {
            return None;
        }
        let i = self.locate(pos);
        Some(self.parts[i][pos - self.starts[i]])
    }

    fn le(&mut self, pos: usize, w: usize) -> Option<u64> {
        if pos.checked_add(w)? > self.total {
            return None;
        }
        let mut v = 0u64;
        for j in 0..w {
            v |= u64::from(self.byte(pos + j)?) << (8 * j);
        }
        Some(v)
    }

    /// Pushes `make(part, start, end)` for each part's share of `from..to`.
    fn split(&mut self, out: &mut Vec<Piece>, from: usize, to: usize, payload: bool) {
        let mut at = from;
        while at < to {
            let i = self.locate(at);
            let off = at - self.starts[i];
            let end = (self.parts[i].len()).min(off + (to - at));
            if !payload {
                if let Some(Piece::Keep(p, _, e)) = out.last_mut() {
                    if *p == i && *e == off {
                        *e = end;
                        at += end - off;
                        continue;
                    }
                }
                out.push(Piece::Keep(i, off, end));
            } else {
                out.push(Piece::Payload(i, off, end));
            }
            at += end - off;
        }
    }
}

/// The pieces of the stream that is the concatenation of `parts`; payloads of `bytes`,
/// `bytearray` and `str` of at least `min_in_band` bytes become [`Piece::InBand`].
pub fn scan_parts(parts: &[&[u8]], min_in_band: u64) -> Result<Vec<Piece>, Error> {
    let mut src = Parts::new(parts);
    let mut pieces = Vec::new();
    let mut pos = 0usize;
    if src.byte(0) == Some(0x80) && src.total >= 2 {
        pos = 2; // PROTO n: the format-2 header unit writes its own PROTO 5
    }
    let mut keep_from = pos;
    loop {
        let op = src
            .byte(pos)
            .ok_or_else(|| bad("ends before its STOP opcode".into()))?;
        let arg = arg_of(op).ok_or_else(|| bad(format!("unknown opcode 0x{op:02x} at {pos}")))?;
        let start = pos;
        pos += 1;
        let mut counted: Option<(usize, u64)> = None; // (payload start, length)
        match arg {
            Arg::Fixed(n) => pos += n,
            Arg::Counted(w) => {
                let n = src
                    .le(pos, w)
                    .ok_or_else(|| bad("truncated length".into()))?;
                let at = pos + w;
                counted = Some((at, n));
                pos = usize::try_from(n)
                    .ok()
                    .and_then(|n| at.checked_add(n))
                    .ok_or_else(|| bad("length too large".into()))?;
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    loop {
                        let b = src
                            .byte(pos)
                            .ok_or_else(|| bad("unterminated text argument".into()))?;
                        pos += 1;
                        if b == b'\n' {
                            break;
                        }
                    }
                }
            }
        }
        if pos > src.total {
            return Err(bad("truncated".into()));
        }
        match op {
            0x95 | 0x98 => {
                // FRAME, READONLY_BUFFER: dropped
                src.split(&mut pieces, keep_from, start, false);
                keep_from = pos;
            }
            0x97 => {
                src.split(&mut pieces, keep_from, start, false);
                pieces.push(Piece::Buffer);
                keep_from = pos;
            }
            b'.' => {
                src.split(&mut pieces, keep_from, pos, false);
                return Ok(pieces);
            }
            _ => {
                if let (Some(kind), Some((at, n))) = (in_band_kind(op), counted) {
                    if n >= min_in_band {
                        src.split(&mut pieces, keep_from, start, false);
                        pieces.push(Piece::InBand(kind, n));
                        src.split(&mut pieces, at, pos, true);
                        keep_from = pos;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces of a single-part stream, with no in-band records.
    fn scan(stream: &[u8]) -> Result<Vec<Piece>, Error> {
        scan_parts(&[stream], u64::MAX)
    }

    #[test]
    fn drops_frames_and_marks_buffers() {
        // PROTO 5, FRAME 3, EMPTY_LIST, NEXT_BUFFER, READONLY_BUFFER, APPEND, STOP
        let s = [
            0x80, 5, 0x95, 3, 0, 0, 0, 0, 0, 0, 0, b']', 0x97, 0x98, b'a', b'.',
        ];
        let p = scan(&s).unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Keep(0, 11, 12),
                Piece::Buffer,
                Piece::Keep(0, 14, 16)
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(scan(&[0x80, 5, 0xff]).is_err());
        assert!(scan(&[0x80, 5, b'X', 9, 0, 0, 0]).is_err());
        assert!(scan(&[0x80, 5]).is_err());
        let big = [
            0x80, 5, 0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(scan(&big).is_err());
    }

    #[test]
    fn finds_payloads_across_parts() {
        // PROTO 5, EMPTY_LIST, BINBYTES 4 "abcd" (its own part), MEMOIZE, APPEND,
        // BINUNICODE 2 "hi" (small: kept), APPEND, BYTEARRAY8 5 split over two parts, STOP
        let a: &[u8] = &[0x80, 5, b']', b'B', 4, 0, 0, 0];
        let b: &[u8] = b"abcd";
        let c: &[u8] = &[
            0x94, b'a', b'X', 2, 0, 0, 0, b'h', b'i', b'a', 0x96, 5, 0, 0, 0, 0,
        ];
        let d: &[u8] = &[0, 0, 0, b'x', b'y'];
        let e: &[u8] = b"zwv.";
        let p = scan_parts(&[a, b, c, d, e], 3).unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Keep(0, 2, 3),
                Piece::InBand(BYTES, 4),
                Piece::Payload(1, 0, 4),
                Piece::Keep(2, 0, 10),
                Piece::InBand(BYTEARRAY, 5),
                Piece::Payload(3, 3, 5),
                Piece::Payload(4, 0, 3),
                Piece::Keep(4, 3, 4),
            ]
        );
        // with a higher threshold nothing moves, and the kept ranges cover the stream
        let p = scan_parts(&[a, b, c, d, e], 6).unwrap();
        let kept: usize = p
            .iter()
            .map(|x| match x {
                Piece::Keep(_, s, e) => e - s,
                _ => panic!("{x:?}"),
            })
            .sum();
        assert_eq!(kept, a.len() + b.len() + c.len() + d.len() + e.len() - 2);
    }

    #[test]
    fn empty_parts_are_skipped() {
        let a: &[u8] = &[0x80, 5];
        let b: &[u8] = &[];
        let c: &[u8] = b"N.";
        assert_eq!(
            scan_parts(&[a, b, b, c], 1).unwrap(),
            vec![Piece::Keep(3, 0, 2)]
        );
    }
}
