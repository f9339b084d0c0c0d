//! Reading lz4 *frame* streams: what joblib's `compress="lz4"` writes (joblite's own lz4
//! dumps are format 2, `rust/format2/`), piece by piece so that a reader can stop at the end
//! of the pickle instead of decoding everything first.

use std::io::Read;

use lz4_flex::frame::FrameDecoder;

use crate::error::{Error, Result};

/// A reader that counts the bytes it has handed out (to tell "the stream ended where a
/// frame would start" from "an empty frame").
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// A stream of concatenated lz4 frames, decoded on demand from the compressed bytes `R`
/// yields as they are needed (a file is read as it is decoded, never whole). Memory:
/// lz4_flex keeps one block of input and one or two of output, each at most the frame's
/// declared block size (4 MiB at most; a block declaring more is an error), and allocates
/// nothing from the content size a frame declares.
pub struct FrameReader<R: Read> {
    /// None once the stream ended
    decoder: Option<FrameDecoder<Counted<R>>>,
    /// Frames fully decoded so far.
    frames: usize,
    /// Compressed bytes consumed when the current frame's decoder was made.
    frame_start: u64,
}

impl<R: Read> FrameReader<R> {
    /// A reader over the compressed stream `source`.
    pub fn new(source: R) -> FrameReader<R> {
        FrameReader {
            decoder: Some(FrameDecoder::new(Counted {
                inner: source,
                count: 0,
            })),
            frames: 0,
            frame_start: 0,
        }
    }

    /// Decodes up to `dst.len()` bytes into `dst`; returns how many (0 at the end of the
    /// stream). Concatenated frames are read one after the other; bytes after the last frame
    /// that do not start another valid frame end the stream (like the bytes after a pickle's
    /// STOP, they are never interpreted). A damaged first frame is an error; so is an
    /// error of the source itself (`Error::Io`, whatever frame it happens in).
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            match decoder.read(dst) {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(e) if is_source_error(&e) => return Err(Error::Io(e)),
                Err(e) if self.frames == 0 => {
                    return Err(Error::Corrupt(format!("lz4 data is corrupt: {e}")))
                }
                Err(_) => {
                    self.decoder = None;
                    return Ok(0);
                }
            }
            // the next frame starts where this one ended (the decoder reads exact sizes)
            let Some(rest) = self.decoder.take().map(FrameDecoder::into_inner) else {
                return Ok(0);
            };
            if rest.count == self.frame_start {
                return Ok(0); // no byte left where another frame would start
            }
            self.frames += 1;
            self.frame_start = rest.count;
            self.decoder = Some(FrameDecoder::new(rest));
        }
    }
}

/// Errors the source raised (a failing disk, a Python file object's exception), as opposed
/// to lz4_flex's verdicts on the bytes (`InvalidData`) and a stream that ends early
/// (`UnexpectedEof`).
fn is_source_error(e: &std::io::Error) -> bool {
    !matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    ) && !e
        .get_ref()
        .is_some_and(|inner| inner.is::<lz4_flex::frame::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all<R: Read>(r: &mut FrameReader<R>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn whole_stream_round_trips_from_a_borrowed_buffer_and_garbage_is_corrupt() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let stream = frame(&data);
        assert_eq!(read_all(&mut FrameReader::new(&stream[..])).unwrap(), data);
        assert!(matches!(
            read_all(&mut FrameReader::new(&b"not lz4 at all"[..])),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_block_larger_than_the_frame_allows_is_refused_before_it_is_read() {
        // a 64 KiB-block frame whose first block declares 2 GiB - 1: refused, nothing
        // allocated from it (the stream holds a few bytes)
        let mut stream = frame(b"x");
        stream.truncate(7); // magic, FLG, BD, HC
        assert_eq!(stream[5] & 0x70, 0x40, "64 KiB blocks");
        stream.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
        stream.extend_from_slice(b"tiny");
        assert!(read_all(&mut FrameReader::new(&stream[..])).is_err());
    }

    #[test]
    fn reader_reads_concatenated_frames_and_stops_at_junk() {
        let mut stream = frame(b"hello ");
        stream.extend(frame(b"world"));
        stream.extend(b"junk after the frames");
        let mut r = FrameReader::new(&stream[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"hello world");
        let junk = b"junk that is no lz4 frame".to_vec();
        assert!(FrameReader::new(&junk[..]).read(&mut buf).is_err());
    }

    #[test]
    fn an_empty_frame_between_frames_and_a_failing_source_after_the_first() {
        let mut stream = frame(b"hello ");
        stream.extend(frame(b""));
        stream.extend(frame(b"world"));
        assert_eq!(
            read_all(&mut FrameReader::new(&stream[..])).unwrap(),
            b"hello world"
        );

        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = self.0.read(buf)?;
                Ok(n)
            }
        }
        let one = frame(b"hello ");
        let got = read_all(&mut FrameReader::new(Failing(&one)));
        assert!(matches!(got, Err(Error::Io(_))), "{got:?}");
    }
}
