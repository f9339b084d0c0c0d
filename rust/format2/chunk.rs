//! One chunk with each codec: compress (the result is a self-contained unit of the codec's
//! format that can be concatenated with the others) and decode into an exactly sized output.

use std::io::Write;

use super::{corrupt, Codec, Error};

/// A compressed chunk and the running checksum the codec's trailer needs (adler32 for zlib,
/// crc32 for gzip, of the raw bytes).
pub struct Stored {
    pub bytes: Vec<u8>,
    pub raw_check: u32,
}

/// lz4 frame: version 01, independent blocks, no checksums, no content size; 4 MiB blocks.
pub const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const LZ4_FLG: u8 = 0x60;
const LZ4_BD: u8 = 0x70;
pub const LZ4_BLOCK_MAX: usize = 4 << 20;

pub fn lz4_header() -> [u8; 7] {
    let hc = (twox_hash::XxHash32::oneshot(0, &[LZ4_FLG, LZ4_BD]) >> 8) as u8;
    [
        LZ4_MAGIC[0],
        LZ4_MAGIC[1],
        LZ4_MAGIC[2],
        LZ4_MAGIC[3],
        LZ4_FLG,
        LZ4_BD,
        hc,
    ]
}

/// Compresses `raw` (the concatenation of `parts`) as one unit of `codec` at `level`.
pub fn compress(codec: Codec, level: i32, parts: &[&[u8]]) -> Result<Stored, Error> {
    let joined;
    let raw: &[u8] = if parts.len() == 1 {
        parts[0]
    } else {
        joined = parts.concat();
        &joined
    };
    let raw_check = match codec {
        Codec::Zlib => zlib_rs::adler32::adler32(1, raw),
        Codec::Gzip => crc32fast::hash(raw),
        _ => 0,
    };
    let bytes = match codec {
        Codec::None => raw.to_vec(),
        Codec::Zlib | Codec::Gzip => super::deflate::piece(raw, level)?,
        Codec::Lz4 => lz4_frame(raw),
        Codec::Zstd => zstd::bulk::compress(raw, level)?,
        Codec::Bz2 => {
            let lvl = bzip2::Compression::new(level.clamp(1, 9) as u32);
            let mut enc = bzip2::write::BzEncoder::new(Vec::with_capacity(raw.len() / 2), lvl);
            enc.write_all(raw)?;
            enc.finish()?
        }
        Codec::Xz => {
            let mut opts = liblzma::stream::LzmaOptions::new_preset(level.clamp(0, 9) as u32)
                .map_err(|e| Error::Invalid(format!("xz preset {level}: {e}")))?;
            // a chunk never refers further back than its own start
            let dict = (raw.len().next_power_of_two() as u32).clamp(1 << 16, 64 << 20);
            opts.dict_size(dict);
            let mut filters = liblzma::stream::Filters::new();
            filters.lzma2(&opts);
            let stream = liblzma::stream::Stream::new_stream_encoder(
                &filters,
                liblzma::stream::Check::Crc32,
            )
            .map_err(|e| Error::Invalid(format!("xz encoder: {e}")))?;
            let mut enc =
                liblzma::write::XzEncoder::new_stream(Vec::with_capacity(raw.len() / 2), stream);
            enc.write_all(raw)?;
            enc.finish()?
        }
    };
    Ok(Stored { bytes, raw_check })
}

/// One lz4 frame: header, 4 MiB blocks (stored raw where lz4 does not shrink them), end mark.
pub fn lz4_frame(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 2 + 64);
    out.extend_from_slice(&lz4_header());
    for block in raw.chunks(LZ4_BLOCK_MAX) {
        let bound = lz4_flex::block::get_maximum_output_size(block.len());
        let at = out.len();
        out.resize(at + 4 + bound, 0);
        let n = lz4_flex::block::compress_into(block, &mut out[at + 4..]).unwrap_or(usize::MAX);
        if n < block.len() {
            out.truncate(at + 4 + n);
            out[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
        } else {
            out.truncate(at);
            out.extend_from_slice(&(block.len() as u32 | 0x8000_0000).to_le_bytes());
            out.extend_from_slice(block);
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// Decodes one stored chunk into `dst`, which must come out exactly full. For zlib/gzip
/// `stored` must have two spare bytes after the chunk (`stored_with_room`), where a final
/// empty block is put to make it a complete deflate stream.
pub fn decode(codec: Codec, stored: &mut Vec<u8>, dst: &mut [u8]) -> Result<(), Error> {
    let want = dst.len();
    let got = match codec {
        Codec::None => {
            if stored.len() != want {
                return Err(corrupt("stored chunk length differs from its raw length"));
            }
            dst.copy_from_slice(stored);
            want
        }
        Codec::Zlib | Codec::Gzip => {
            stored.extend_from_slice(&[0x03, 0x00]);
            let mut d = libdeflater::Decompressor::new();
            d.deflate_decompress(stored, dst)
                .map_err(|e| corrupt(format!("deflate data is damaged ({e:?})")))?
        }
        Codec::Lz4 => lz4_decode(stored, dst)?,
        Codec::Zstd => {
            let mut d = zstd::bulk::Decompressor::new()?;
            d.decompress_to_buffer(stored.as_slice(), dst)
                .map_err(|e| corrupt(format!("zstd data is damaged ({e})")))?
        }
        Codec::Bz2 => {
            let mut d = bzip2::Decompress::new(false);
            let st = d
                .decompress(stored, dst)
                .map_err(|e| corrupt(format!("bz2 data is damaged ({e})")))?;
            if st != bzip2::Status::StreamEnd || d.total_in() as usize != stored.len() {
                return Err(corrupt("bz2 chunk does not end where its entry says"));
            }
            d.total_out() as usize
        }
        Codec::Xz => {
            // the writer's dictionaries are at most 64 MiB
            let mut s = liblzma::stream::Stream::new_stream_decoder(96 << 20, 0)
                .map_err(|e| corrupt(format!("xz decoder: {e}")))?;
            let st = s
                .process(stored, dst, liblzma::stream::Action::Finish)
                .map_err(|e| corrupt(format!("xz data is damaged ({e})")))?;
            if st != liblzma::stream::Status::StreamEnd || s.total_in() as usize != stored.len() {
                return Err(corrupt("xz chunk does not end where its entry says"));
            }
            s.total_out() as usize
        }
    };
    if got != want {
        return Err(corrupt(format!(
            "a chunk decoded to {got} bytes, its entry says {want}"
        )));
    }
    Ok(())
}

fn lz4_decode(stored: &[u8], dst: &mut [u8]) -> Result<usize, Error> {
    if stored.len() < 11 || stored[..7] != lz4_header() {
        return Err(corrupt(
            "lz4 chunk does not start with joblite's frame header",
        ));
    }
    let mut pos = 7;
    let mut out = 0usize;
    loop {
        let word = stored
            .get(pos..pos + 4)
            .ok_or_else(|| corrupt("lz4 chunk is truncated"))?;
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        pos += 4;
        if word == 0 {
            break;
        }
        let n = (word & 0x7fff_ffff) as usize;
        let block = stored
            .get(pos..pos + n)
            .ok_or_else(|| corrupt("lz4 block is truncated"))?;
        pos += n;
        let room = dst.len() - out;
        let cap = room.min(LZ4_BLOCK_MAX);
        if word & 0x8000_0000 != 0 {
            if n > cap {
                return Err(corrupt("lz4 chunk decodes to more than its entry says"));
            }
            dst[out..out + n].copy_from_slice(block);
            out += n;
        } else {
            let k = lz4_flex::block::decompress_into(block, &mut dst[out..out + cap])
                .map_err(|e| corrupt(format!("lz4 data is damaged ({e})")))?;
            out += k;
        }
    }
    if pos != stored.len() {
        return Err(corrupt("lz4 chunk has bytes after its end mark"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            Codec::None,
            Codec::Zlib,
            Codec::Gzip,
            Codec::Bz2,
            Codec::Xz,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let st = compress(codec, 3, &[&raw[..1000], &raw[1000..]]).unwrap();
            let mut stored = st.bytes.clone();
            let mut out = vec![0u8; raw.len()];
            decode(codec, &mut stored, &mut out).unwrap();
            assert_eq!(out, raw, "{codec:?}");
            let mut short = vec![0u8; raw.len() - 1];
            let mut stored = st.bytes.clone();
            assert!(decode(codec, &mut stored, &mut short).is_err(), "{codec:?}");
        }
    }
}
