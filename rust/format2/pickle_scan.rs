//! Walks a protocol-5 pickle stream opcode by opcode and says how to turn it into the
//! pickle part of a format-2 file: the leading PROTO and every FRAME opcode are dropped
//! (joblib's unpickler reads array bytes straight from the file, which a frame would hide),
//! every NEXT_BUFFER marks where an out-of-band buffer goes, a READONLY_BUFFER after it is
//! dropped, and the stream ends at its STOP.

use super::Error;

/// One piece of the rewritten stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `start..end` of the original stream, kept as they are.
    Keep(usize, usize),
    /// The next out-of-band buffer goes here (a NEXT_BUFFER opcode was).
    Buffer,
}

/// How an opcode's argument is laid out.
enum Arg {
    Fixed(usize),
    /// a little-endian length of this many bytes, then that many bytes
    Counted(usize),
    /// text up to a newline, `n` times
    Lines(usize),
}

fn arg_of(op: u8) -> Option<Arg> {
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

fn bad(msg: String) -> Error {
    Error::Invalid(format!("pickle stream: {msg}"))
}

/// The pieces of `stream` (a `pickle.dumps(..., protocol=5, buffer_callback=...)` output),
/// and the number of NEXT_BUFFER opcodes met.
pub fn scan(stream: &[u8]) -> Result<Vec<Piece>, Error> {
    let mut pieces = Vec::new();
    let mut pos = 0usize;
    if stream.len() >= 2 && stream[0] == 0x80 {
        pos = 2; // PROTO n: the format-2 header unit writes its own PROTO 5
    }
    let mut keep_from = pos;
    let flush = |pieces: &mut Vec<Piece>, from: usize, to: usize| {
        if to > from {
            if let Some(Piece::Keep(_, end)) = pieces.last_mut() {
                if *end == from {
                    *end = to;
                    return;
                }
            }
            pieces.push(Piece::Keep(from, to));
        }
    };
    loop {
        let op = *stream
            .get(pos)
            .ok_or_else(|| bad("ends before its STOP opcode".into()))?;
        let arg = arg_of(op).ok_or_else(|| bad(format!("unknown opcode 0x{op:02x} at {pos}")))?;
        let start = pos;
        pos += 1;
        match arg {
            Arg::Fixed(n) => pos += n,
            Arg::Counted(w) => {
                let len_bytes = stream
                    .get(pos..pos + w)
                    .ok_or_else(|| bad("truncated length".into()))?;
                let mut le = [0u8; 8];
                le[..w].copy_from_slice(len_bytes);
                let n = usize::try_from(u64::from_le_bytes(le))
                    .map_err(|_| bad("length too large".into()))?;
                pos = pos
                    .checked_add(w)
                    .and_then(|p| p.checked_add(n))
                    .ok_or_else(|| bad("length too large".into()))?;
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let nl = stream
                        .get(pos..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
                        .ok_or_else(|| bad("unterminated text argument".into()))?;
                    pos += nl + 1;
                }
            }
        }
        if pos > stream.len() {
            return Err(bad("truncated".into()));
        }
        match op {
            0x95 | 0x98 => {
                // FRAME, READONLY_BUFFER: dropped
                flush(&mut pieces, keep_from, start);
                keep_from = pos;
            }
            0x97 => {
                flush(&mut pieces, keep_from, start);
                pieces.push(Piece::Buffer);
                keep_from = pos;
            }
            b'.' => {
                flush(&mut pieces, keep_from, pos);
                return Ok(pieces);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_frames_and_marks_buffers() {
        // PROTO 5, FRAME 3, EMPTY_LIST, NEXT_BUFFER, READONLY_BUFFER, APPEND, STOP
        let s = [
            0x80, 5, 0x95, 3, 0, 0, 0, 0, 0, 0, 0, b']', 0x97, 0x98, b'a', b'.',
        ];
        let p = scan(&s).unwrap();
        assert_eq!(
            p,
            vec![Piece::Keep(11, 12), Piece::Buffer, Piece::Keep(14, 16)]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(scan(&[0x80, 5, 0xff]).is_err());
        assert!(scan(&[0x80, 5, b'X', 9, 0, 0, 0]).is_err());
        assert!(scan(&[0x80, 5]).is_err());
    }
}
