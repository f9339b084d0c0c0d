//! Chunked, multi-threaded lz4 compression of large buffers (lz4_flex), the byte-shuffle
//! filter, and blake3 chunk digests.
//!
//! Buffers are cut into fixed-size chunks (1 MiB by default) that are compressed, hashed and
//! decompressed independently, so every core can work on its own chunk and any chunk can be
//! read without the others.

use std::cell::RefCell;

use rayon::prelude::*;
use thiserror::Error;

/// Raw bytes per chunk used by the writer (the reader accepts any size up to [`MAX_CHUNK_SIZE`]).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Raw bytes per lz4 chunk. Every chunk starts with an empty 64 KiB match window, which
/// costs ratio at each boundary: with 1 MiB chunks files came out 0.1% larger than a
/// block-linked lz4 frame (joblib's `compress="lz4"`); 4 MiB chunks are on par with it and
/// still give dozens of parallel tasks per 256 MiB.
pub const DEFAULT_LZ4_CHUNK_SIZE: usize = 4 << 20;
/// Largest chunk size a reader accepts; bounds what one chunk may make us allocate.
pub const MAX_CHUNK_SIZE: usize = 64 << 20;
/// Size of a chunk digest (blake3, full length).
pub const DIGEST_LEN: usize = 32;

/// A chunk digest.
pub type Digest = [u8; DIGEST_LEN];

/// What went wrong while decoding a chunk.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("lz4 data is corrupt: {0}")]
    Lz4(String),
    #[error("chunk decompressed to {got} bytes, expected {expected}")]
    Size { got: usize, expected: usize },
}

/// blake3 of one chunk.
pub fn digest(data: &[u8]) -> Digest {
    *blake3::hash(data).as_bytes()
}

/// The digests of `data` cut into `chunk_size` chunks, computed on all cores.
pub fn chunk_digests(data: &[u8], chunk_size: usize) -> Vec<Digest> {
    crate::threads::install(|| data.par_chunks(chunk_size.max(1)).map(digest).collect())
}

/// Number of chunks a buffer of `len` bytes is cut into.
pub fn chunk_count(len: u64, chunk_size: u64) -> u64 {
    if chunk_size == 0 {
        return 0;
    }
    len.div_ceil(chunk_size)
}

/// Elements handled per block by (un)shuffle: the block's bytes stay in L1 cache while
/// they are spread over (or gathered from) the planes.
const SHUFFLE_BLOCK: usize = 2048;

/// Byte-shuffle (as blosc does): byte `j` of element `i` goes to `dst[j * n + i]`, so the
/// slowly varying high bytes of numbers end up next to each other. A trailing partial
/// element is copied unchanged.
pub fn shuffle(src: &[u8], dst: &mut [u8], elem: usize) {
    debug_assert_eq!(src.len(), dst.len());
    if elem <= 1 || src.len() < elem {
        dst.copy_from_slice(src);
        return;
    }
    let n = src.len() / elem;
    let body = n * elem;
    for start in (0..n).step_by(SHUFFLE_BLOCK) {
        let end = (start + SHUFFLE_BLOCK).min(n);
        let block = &src[start * elem..end * elem];
        for j in 0..elem {
            let plane = &mut dst[j * n + start..j * n + end];
            for (out, e) in plane.iter_mut().zip(block.chunks_exact(elem)) {
                *out = e[j];
            }
        }
    }
    dst[body..].copy_from_slice(&src[body..]);
}

/// Inverse of [`shuffle`].
pub fn unshuffle(src: &[u8], dst: &mut [u8], elem: usize) {
    debug_assert_eq!(src.len(), dst.len());
    if elem <= 1 || src.len() < elem {
        dst.copy_from_slice(src);
        return;
    }
    let n = src.len() / elem;
    let body = n * elem;
    for start in (0..n).step_by(SHUFFLE_BLOCK) {
        let end = (start + SHUFFLE_BLOCK).min(n);
        let block = &mut dst[start * elem..end * elem];
        for j in 0..elem {
            let plane = &src[j * n + start..j * n + end];
            for (e, &b) in block.chunks_exact_mut(elem).zip(plane) {
                e[j] = b;
            }
        }
    }
    dst[body..].copy_from_slice(&src[body..]);
}

thread_local! {
    /// Two scratch buffers per thread, reused from chunk to chunk: fresh multi-MiB buffers
    /// for every chunk cost a page fault per 4 KiB (measured: +60% on lz4 dumps).
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers (their contents are unspecified).
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (a, b) = &mut *bufs;
            f(a, b)
        }
        // re-entered on this thread (cannot happen today): use fresh buffers
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

fn sized(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

/// One compressed chunk: its stored bytes (raw when lz4 did not make it smaller) and the
/// digest of those stored bytes (half the hashing work of the raw bytes, and checked before
/// the decoder reads them).
pub struct CompressedChunk {
    pub stored: Vec<u8>,
    pub digest: Digest,
}

/// Compresses one chunk with lz4 (block format, no size prefix), after an optional
/// byte-shuffle with element size `shuffle_elem` (0 or 1: none). Keeps the raw bytes when
/// compression does not make the chunk smaller, so `stored.len() == raw.len()` means "raw".
pub fn lz4_compress_chunk(raw: &[u8], shuffle_elem: usize) -> CompressedChunk {
    let stored = with_scratch(|shuffled, out| {
        let input: &[u8] = if shuffle_elem > 1 {
            let buf = sized(shuffled, raw.len());
            shuffle(raw, buf, shuffle_elem);
            buf
        } else {
            raw
        };
        let out = sized(out, lz4_flex::block::get_maximum_output_size(input.len()));
        match lz4_flex::block::compress_into(input, out) {
            Ok(n) if n < raw.len() => out[..n].to_vec(),
            _ => raw.to_vec(),
        }
    });
    CompressedChunk {
        digest: digest(&stored),
        stored,
    }
}

/// Decides whether byte-shuffling with element size `elem` makes lz4 output smaller for
/// `data`, by compressing one sample chunk (the middle one) both ways. Returns `elem` when
/// it does, 0 otherwise. Shuffle wins big on low-entropy integers and smooth series, and
/// loses on floats whose low mantissa bytes are noise (lz4 then finds whole repeated values).
pub fn choose_shuffle(data: &[u8], chunk_size: usize, elem: usize) -> usize {
    if elem <= 1 || data.len() < 2 * elem || chunk_size == 0 {
        return 0;
    }
    let n = data.len().div_ceil(chunk_size);
    let start = (n / 2) * chunk_size;
    let sample = &data[start..data.len().min(start + chunk_size)];
    let (plain, shuffled) = crate::threads::install(|| {
        rayon::join(
            || lz4_compress_chunk(sample, 0).stored.len(),
            || lz4_compress_chunk(sample, elem).stored.len(),
        )
    });
    // a clear win only: shuffling costs a pass over the data both ways
    if shuffled * 10 < plain * 9 {
        elem
    } else {
        0
    }
}

/// Compresses `chunks` on all cores.
pub fn lz4_compress_chunks(chunks: &[&[u8]], shuffle_elem: usize) -> Vec<CompressedChunk> {
    crate::threads::install(|| {
        chunks
            .par_iter()
            .map(|c| lz4_compress_chunk(c, shuffle_elem))
            .collect()
    })
}

/// Decompresses one chunk written by [`lz4_compress_chunk`] into `dst` (whose length is the
/// chunk's raw size), undoing the shuffle.
pub fn lz4_decompress_chunk(
    stored: &[u8],
    dst: &mut [u8],
    shuffle_elem: usize,
) -> Result<(), CodecError> {
    if stored.len() == dst.len() {
        dst.copy_from_slice(stored);
        return Ok(());
    }
    if shuffle_elem > 1 {
        with_scratch(|tmp, _| {
            let tmp = sized(tmp, dst.len());
            decompress_exact(stored, tmp)?;
            unshuffle(tmp, dst, shuffle_elem);
            Ok(())
        })
    } else {
        decompress_exact(stored, dst)
    }
}

fn decompress_exact(stored: &[u8], dst: &mut [u8]) -> Result<(), CodecError> {
    let got = lz4_flex::block::decompress_into(stored, dst)
        .map_err(|e| CodecError::Lz4(e.to_string()))?;
    if got != dst.len() {
        return Err(CodecError::Size {
            got,
            expected: dst.len(),
        });
    }
    Ok(())
}

/// Decompresses an lz4 *frame* stream (what joblib's `compress="lz4"` writes) entirely.
pub fn lz4_frame_decompress(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    use std::io::Read;
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Lz4(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i >> 9) as u8)
            .collect()
    }

    #[test]
    fn shuffle_roundtrip_with_tail() {
        for elem in [1, 2, 4, 8, 3] {
            let src = sample(1003);
            let mut s = vec![0; src.len()];
            let mut back = vec![0; src.len()];
            shuffle(&src, &mut s, elem);
            unshuffle(&s, &mut back, elem);
            assert_eq!(src, back, "elem {elem}");
        }
    }

    #[test]
    fn shuffle_groups_bytes_by_position() {
        let src = [1u8, 2, 3, 4, 5, 6];
        let mut dst = [0u8; 6];
        shuffle(&src, &mut dst, 2);
        assert_eq!(dst, [1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn lz4_roundtrip_compressible_and_random() {
        let zeros = vec![0u8; 100_000];
        let c = lz4_compress_chunk(&zeros, 8);
        assert!(c.stored.len() < 1000);
        let mut out = vec![1u8; zeros.len()];
        lz4_decompress_chunk(&c.stored, &mut out, 8).unwrap();
        assert_eq!(out, zeros);

        // incompressible data is stored raw
        let mut x: u64 = 12345;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let c = lz4_compress_chunk(&noise, 0);
        assert_eq!(c.stored, noise);
        assert_eq!(c.digest, digest(&noise));
    }

    #[test]
    fn lz4_rejects_wrong_size_and_garbage() {
        let data = sample(10_000);
        let c = lz4_compress_chunk(&data, 0);
        assert!(c.stored.len() < data.len());
        let mut short = vec![0u8; data.len() - 1];
        assert!(lz4_decompress_chunk(&c.stored, &mut short, 0).is_err());
        let mut out = vec![0u8; data.len()];
        let garbage = vec![0xffu8; 50];
        assert!(lz4_decompress_chunk(&garbage, &mut out, 0).is_err());
    }

    #[test]
    fn shuffle_is_chosen_only_when_it_helps() {
        // slowly growing integers: high bytes constant, shuffle wins
        let ints: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i / 3).to_le_bytes())
            .collect();
        assert_eq!(choose_shuffle(&ints, 65536, 4), 4);
        // bytes with no structure across elements: keep plain
        let mut x: u64 = 99;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(choose_shuffle(&noise, 65536, 4), 0);
        assert_eq!(choose_shuffle(&ints, 65536, 1), 0);
    }

    #[test]
    fn chunk_digests_cover_every_chunk() {
        let data = sample(2500);
        let d = chunk_digests(&data, 1000);
        assert_eq!(d.len(), 3);
        assert_eq!(d[2], digest(&data[2000..]));
        assert_eq!(chunk_count(2500, 1000), 3);
        assert_eq!(chunk_count(0, 1000), 0);
    }
}
