//! Reading lz4 *frame* streams: what joblib's `compress="lz4"` writes (joblite's own lz4
//! dumps are format 2, `rust/format2/`). Whole streams, or piece by piece so that a reader
//! can stop at the end of the pickle instead of decoding everything first.

use std::io::{Cursor, Read};

use crate::error::{Error, Result};

/// Decompresses a whole lz4 frame stream.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| Error::Corrupt(format!("lz4 data is corrupt: {e}")))?;
    Ok(out)
}

type FrameDecoder = lz4_flex::frame::FrameDecoder<Cursor<Vec<u8>>>;

/// A stream of concatenated lz4 frames, decoded on demand.
pub struct FrameReader {
    decoder: FrameDecoder,
    /// Frames fully decoded so far.
    frames: usize,
}

impl FrameReader {
    /// A reader over the compressed bytes `data`.
    pub fn new(data: Vec<u8>) -> FrameReader {
        FrameReader {
            decoder: FrameDecoder::new(Cursor::new(data)),
            frames: 0,
        }
    }

    /// Decodes up to `dst.len()` bytes into `dst`; returns how many (0 at the end of the
    /// stream). Concatenated frames are read one after the other; bytes after the last frame
    /// that do not start another valid frame end the stream (like the bytes after a pickle's
    /// STOP, they are never interpreted). A damaged first frame is an error.
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            match self.decoder.read(dst) {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(e) if self.frames == 0 => {
                    return Err(Error::Corrupt(format!("lz4 data is corrupt: {e}")))
                }
                Err(_) => return Ok(0),
            }
            self.frames += 1;
            let cursor = self.decoder.get_ref();
            let pos = cursor.position();
            if pos >= cursor.get_ref().len() as u64 {
                return Ok(0);
            }
            let placeholder = FrameDecoder::new(Cursor::new(Vec::new()));
            let mut rest = std::mem::replace(&mut self.decoder, placeholder).into_inner();
            rest.set_position(pos);
            self.decoder = FrameDecoder::new(rest);
        }
    }
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

    #[test]
    fn whole_stream_round_trips_and_garbage_is_corrupt() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(decompress(&frame(&data)).unwrap(), data);
        assert!(matches!(
            decompress(b"not lz4 at all"),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn reader_reads_concatenated_frames_and_stops_at_junk() {
        let mut stream = frame(b"hello ");
        stream.extend(frame(b"world"));
        stream.extend(b"junk after the frames");
        let mut r = FrameReader::new(stream);
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
        assert!(FrameReader::new(junk).read(&mut buf).is_err());
    }
}
