//! Where a bz2 / xz dump read from a stream (a socket, a pipe) ends. Their header unit is
//! the first compressed stream of the file, so its length, and the index that gives the
//! dump's, are known only once it is decoded: [`HeadStream`] decodes it as the bytes
//! arrive and says, at each step, how far the reader may read without passing the end of
//! a valid dump (the stored codecs need no decoder: `read::stream_len`).
//!
//! Bounds (nothing declared is believed before it is checked): the decoded bytes stop at
//! the index's fixed part until it is seen, then at the index length that part allows; they
//! never exceed [`MAX_RATIO`] times the input plus the index's padding (a bomb of a header
//! stream fails on its first block); the input never exceeds [`INPUT_SLACK`] plus twice
//! the decoded bytes (a valid header stream is about the size of `H` or smaller); and the
//! dump's length is believed only from the verified index.

use super::head::H_PREFIX_LEN;
use super::index::{self, Index};
use super::{corrupt, Codec, Error};

/// Most bytes of `H` one input byte of a valid header stream decodes to, padding aside: the
/// chunk table holds an XXH3 sum (8 random bytes) in every 40-byte entry, the buffer table
/// strictly increasing offsets. Only the index's zero padding (at most
/// [`index::MAX_PADDING`]) compresses further, and is allowed for separately.
pub const MAX_RATIO: usize = 1024;
/// Input a header stream may take beyond twice what it has decoded to: one bz2 block
/// (900 000 bytes, at most about 1% larger compressed) is read whole before it yields a byte.
pub const INPUT_SLACK: usize = 4 << 20;
/// Memory the xz decoder may use (its dictionary): joblite writes at most 64 MiB (level 9).
const XZ_MEMLIMIT: u64 = 96 << 20;

enum Decoder {
    Bz2(bzip2::Decompress),
    Xz(liblzma::stream::Stream),
}

/// What the reader does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read until the stream has delivered this many bytes (from the dump's first byte),
    /// then feed them. Never past the end of a valid dump.
    Read(u64),
    /// The dump takes this many bytes (its index verified).
    Done(u64),
    /// Not a bz2 / xz format-2 dump (a joblib file, a whole dump compressed at once).
    NotADump,
}

/// The header stream of a bz2 / xz dump, decoded as its bytes arrive.
pub struct HeadStream {
    codec: Codec,
    decoder: Decoder,
    /// `H` decoded so far
    out: Vec<u8>,
    /// most bytes of `H` wanted: its fixed part until seen, then its declared length
    cap: usize,
    /// input bytes fed so far
    fed: u64,
    done: Option<Step>,
    /// the decoder's output space
    buf: Vec<u8>,
}

impl HeadStream {
    /// A decoder for the dump `first` (its first bytes) starts, or None when they do not
    /// open a bz2 / xz stream.
    pub fn new(first: &[u8]) -> Result<Option<HeadStream>, Error> {
        let damaged = |e: String| corrupt(format!("header stream is damaged ({e})"));
        let (codec, decoder) = match super::head::sniff(first) {
            Some(Codec::Bz2) => (Codec::Bz2, Decoder::Bz2(bzip2::Decompress::new(false))),
            Some(Codec::Xz) => {
                let s = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                    .map_err(|e| damaged(e.to_string()))?;
                (Codec::Xz, Decoder::Xz(s))
            }
            _ => return Ok(None),
        };
        Ok(Some(HeadStream {
            codec,
            decoder,
            out: Vec::new(),
            cap: H_PREFIX_LEN + index::FIXED_LEN,
            fed: 0,
            done: None,
            buf: vec![0u8; 64 << 10],
        }))
    }

    /// The codec of the dump.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Fewest bytes a valid dump holds after its header stream: at least one chunk (the
    /// pickle ends with STOP), each a whole stream of the codec; bz2's smallest stream is 14
    /// bytes (its 4-byte header and 10-byte end mark), xz's 32 (header, empty index, footer).
    fn min_after(&self) -> u64 {
        if self.codec == Codec::Bz2 {
            14
        } else {
            32
        }
    }

    /// Feeds the next bytes of the stream (those after everything fed before) and says what
    /// to do next. Bytes fed after the header stream ended are not looked at.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, Error> {
        if let Some(step) = self.done {
            return Ok(step);
        }
        let step = self.decode(input)?;
        if !matches!(step, Step::Read(_)) {
            self.done = Some(step);
        }
        Ok(step)
    }

    fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        let start = self.fed;
        let mut at = 0usize;
        loop {
            let room = (self.cap + 1)
                .saturating_sub(self.out.len())
                .clamp(1, self.buf.len());
            let (used, made, ended) = run(&mut self.decoder, &input[at..], &mut self.buf[..room])?;
            at += used;
            self.out.extend_from_slice(&self.buf[..made]);
            let taken = start as usize + at;
            let most = MAX_RATIO.saturating_mul(taken) + index::MAX_PADDING as usize + 4096;
            if self.out.len() > most {
                return Err(corrupt(
                    "the header stream decodes to far more than its size: no valid index does",
                ));
            }
            if self.cap == H_PREFIX_LEN + index::FIXED_LEN && self.out.len() >= self.cap {
                match self.bound_index()? {
                    Some(cap) => self.cap = cap,
                    None => return Ok(Step::NotADump),
                }
            }
            if ended {
                self.fed = taken as u64;
                return self.finish();
            }
            if self.out.len() > self.cap {
                return Err(corrupt(
                    "the header stream holds more than the index it declares",
                ));
            }
            if at == input.len() && made < room {
                break; // all taken, and no output left inside the decoder
            }
            if used == 0 && made == 0 {
                return Err(corrupt("header stream is damaged (the decoder is stuck)"));
            }
        }
        self.fed = start + input.len() as u64;
        if self.fed > (INPUT_SLACK + 2 * self.out.len()) as u64 {
            return Err(corrupt(
                "the header stream is longer than any valid header unit",
            ));
        }
        // the stream goes on (at least one more byte), then at least one chunk's stream
        Ok(Step::Read(self.fed + 1 + self.min_after()))
    }

    /// With the index's fixed part decoded: the most bytes `H` may take (its declared
    /// length, bounded by the tables the fixed part declares), or None when this is not a
    /// format-2 header of this codec.
    fn bound_index(&self) -> Result<Option<usize>, Error> {
        let out = &self.out;
        let fixed = &out[H_PREFIX_LEN..H_PREFIX_LEN + index::FIXED_LEN];
        if out[..3] != [0x80, 5, 0x8e] || fixed[..8] != index::MAGIC {
            return Ok(None);
        }
        if fixed[12] != self.codec as u8 {
            return Ok(None); // e.g. an uncompressed dump compressed at once by a compressor
        }
        let n = u64::from_le_bytes(out[3..11].try_into().expect("8 bytes"));
        index::header_len(n, fixed).map(Some)
    }

    /// The header stream ended: `H` must be whole, its index valid.
    fn finish(&self) -> Result<Step, Error> {
        let out = &self.out;
        if self.cap == H_PREFIX_LEN + index::FIXED_LEN {
            // ended before the index's fixed part: not a dump's header unit
            return Ok(Step::NotADump);
        }
        let h_len = self.cap;
        if out.len() != h_len || out[h_len - 1] != b'0' {
            return Err(corrupt(if out.len() < h_len {
                "the header stream ends inside the index it declares"
            } else {
                "header unit is malformed"
            }));
        }
        let index = &out[H_PREFIX_LEN..h_len - 1];
        let idx = Index::decode(index, self.codec, self.fed, u64::MAX)?;
        Ok(Step::Done(
            self.fed + idx.stored_len + self.codec.trailer_len(),
        ))
    }
}

/// One decoder call: (input used, output made, stream ended).
fn run(decoder: &mut Decoder, input: &[u8], dst: &mut [u8]) -> Result<(usize, usize, bool), Error> {
    let damaged = |e: String| corrupt(format!("header stream is damaged ({e})"));
    Ok(match decoder {
        Decoder::Bz2(d) => {
            let (i0, o0) = (d.total_in(), d.total_out());
            let st = d
                .decompress(input, dst)
                .map_err(|e| damaged(e.to_string()))?;
            (
                (d.total_in() - i0) as usize,
                (d.total_out() - o0) as usize,
                st == bzip2::Status::StreamEnd,
            )
        }
        Decoder::Xz(s) => {
            let (i0, o0) = (s.total_in(), s.total_out());
            let st = s
                .process(input, dst, liblzma::stream::Action::Run)
                .map_err(|e| damaged(e.to_string()))?;
            (
                (s.total_in() - i0) as usize,
                (s.total_out() - o0) as usize,
                st == liblzma::stream::Status::StreamEnd,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format2::head;

    /// A bz2 / xz dump's header stream for `index`, and a following chunk stream.
    fn dump(codec: Codec, h: &[u8]) -> Vec<u8> {
        let mut d = head::frame(codec, 6, h).unwrap();
        d.extend(head::frame(codec, 6, b"the first chunk").unwrap());
        d
    }

    fn header(codec: Codec, n_chunks: u64, stored_len: u64) -> Vec<u8> {
        let chunks = (0..n_chunks)
            .map(|i| index::Chunk {
                stored_off: i * (stored_len / n_chunks),
                stored_len: stored_len / n_chunks,
                raw_off: 0,
                raw_len: 1,
                xxh3: i,
            })
            .collect();
        let idx = Index {
            codec,
            flags: 0,
            raw_len: 0,
            stored_len,
            base: 0,
            trailer: 0,
            chunks,
            buffers: vec![],
        };
        let len = index::needed_len(n_chunks as usize, 0);
        head::raw_header(&idx.encode(len).unwrap())
    }

    /// Feeds `data` one read at a time as a careful reader would; the step it ends on and
    /// the bytes read.
    fn read_as_a_stream(data: &[u8]) -> (Result<Step, Error>, u64) {
        let Some(mut hs) = HeadStream::new(&data[..8]).unwrap() else {
            return (Ok(Step::NotADump), 0);
        };
        let mut have = 0usize;
        let mut want = 75usize;
        loop {
            let to = want.min(data.len());
            let step = hs.feed(&data[have..to]);
            have = to;
            match step {
                Ok(Step::Read(w)) if have < data.len() => want = w as usize,
                other => return (other, have as u64),
            }
        }
    }

    #[test]
    fn an_index_that_does_not_verify_is_refused_within_the_dump() {
        for codec in [Codec::Bz2, Codec::Xz] {
            // chunk entries that do not tile the stream: refused once the stream ended
            let d = dump(codec, &header(codec, 2, 1000));
            let (step, read) = read_as_a_stream(&d);
            assert!(step.is_err(), "{codec:?}");
            assert!(read <= d.len() as u64);
        }
    }

    #[test]
    fn a_header_stream_of_another_kind_is_no_dump() {
        for codec in [Codec::Bz2, Codec::Xz] {
            let not_h = vec![7u8; 4000];
            let d = dump(codec, &not_h);
            assert_eq!(read_as_a_stream(&d).0.unwrap(), Step::NotADump);
        }
        assert!(HeadStream::new(b"\x80\x05\x8e").unwrap().is_none());
    }

    #[test]
    fn a_lying_index_length_is_refused_at_the_fixed_part() {
        for codec in [Codec::Bz2, Codec::Xz] {
            let mut h = header(codec, 1, 100);
            h[3..11].copy_from_slice(&(1u64 << 40).to_le_bytes());
            let err = read_as_a_stream(&dump(codec, &h)).0.unwrap_err();
            assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
            let mut h = header(codec, 1, 100);
            let short = (index::needed_len(1, 0) + 4) as u64;
            h[3..11].copy_from_slice(&short.to_le_bytes());
            assert!(read_as_a_stream(&dump(codec, &h)).0.is_err());
        }
    }

    /// An xz stream of empty blocks (20 bytes each, no output): valid as far as it goes.
    fn xz_of_empty_blocks(n: usize) -> Vec<u8> {
        let mut d = b"\xfd7zXZ\x00\x00\x01".to_vec(); // check: CRC32
        d.extend_from_slice(&crc32fast::hash(&[0, 1]).to_le_bytes());
        let mut header = vec![2u8, 0, 0x21, 1, 0x16, 0, 0, 0]; // 12 bytes: one LZMA2 filter
        header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        for _ in 0..n {
            d.extend_from_slice(&header);
            d.extend_from_slice(&[0, 0, 0, 0]); // LZMA2 end mark, padding
            d.extend_from_slice(&crc32fast::hash(b"").to_le_bytes());
        }
        d
    }

    #[test]
    fn a_header_stream_that_takes_input_without_output_is_cut_short() {
        let d = xz_of_empty_blocks(300_000); // 6 MB that decode to nothing
        let mut hs = HeadStream::new(&d).unwrap().unwrap();
        // a careful reader's steps are small; the bound holds whatever the steps
        let mut at = 0;
        let err = loop {
            match hs.feed(&d[at..at + 4096]) {
                Ok(Step::Read(_)) => at += 4096,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("longer than any valid"), "{err}");
        assert!(at <= INPUT_SLACK + 4096, "{at}");
        // the same stream, shorter, is still being read
        let d = xz_of_empty_blocks(1000);
        let mut hs = HeadStream::new(&d).unwrap().unwrap();
        assert!(matches!(hs.feed(&d), Ok(Step::Read(_))));
    }

    #[test]
    fn a_bomb_of_a_header_stream_is_refused_early() {
        for codec in [Codec::Bz2, Codec::Xz] {
            // a fixed part declaring 2**30 chunks, then zeros: the tables never end
            let mut h = header(codec, 1, 100)[..H_PREFIX_LEN + index::FIXED_LEN].to_vec();
            let n = index::needed_len(1 << 30, 0) as u64;
            h[3..11].copy_from_slice(&n.to_le_bytes());
            h[H_PREFIX_LEN + 16..H_PREFIX_LEN + 24].copy_from_slice(&(1u64 << 30).to_le_bytes());
            h.resize(16 << 20, 0);
            let d = dump(codec, &h);
            let err = read_as_a_stream(&d).0.unwrap_err();
            assert!(err.to_string().contains("far more"), "{err}");
        }
    }
}
