//! Reading segments: chunks read (and lz4-decoded) in parallel straight into their
//! destinations, each checked against its digest.

use rayon::prelude::*;

use crate::codec::{self, CodecError};
use crate::error::{invalid, Error, Result};

use super::layout::{Codec, Segment};
use super::sources::Source;

/// One segment to read: its table entry and where its raw bytes go.
pub struct ReadJob<'a> {
    pub segment: &'a Segment,
    pub dst: &'a mut [u8],
}

/// Reads (and decodes) the given lz4 or uncompressed segments into their destinations,
/// all chunks of all segments in parallel; with `verify`, checks every chunk's digest.
pub fn read_segments<S: Source + ?Sized>(
    src: &S,
    jobs: Vec<ReadJob<'_>>,
    verify: bool,
) -> Result<()> {
    let mut work: Vec<(&Segment, usize, &mut [u8])> = Vec::new();
    for job in jobs {
        let seg = job.segment;
        if job.dst.len() as u64 != seg.raw_len {
            return invalid(format!(
                "destination of {} bytes for a {}-byte segment",
                job.dst.len(),
                seg.raw_len
            ));
        }
        if !matches!(seg.codec, Codec::None | Codec::Lz4) {
            return Err(Error::InvalidArgument(format!(
                "codec {:?} is decoded in Python",
                seg.codec
            )));
        }
        let mut rest = job.dst;
        for (i, c) in seg.chunks.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(c.raw_len as usize);
            work.push((seg, i, head));
            rest = tail;
        }
    }
    crate::threads::install(|| {
        work.into_par_iter()
            .try_for_each(|(seg, i, dst)| read_chunk(src, seg, i, dst, verify))
    })
}

fn read_chunk<S: Source + ?Sized>(
    src: &S,
    seg: &Segment,
    i: usize,
    dst: &mut [u8],
    verify: bool,
) -> Result<()> {
    let c = &seg.chunks[i];
    let mismatch = || {
        Err(Error::Checksum(format!(
            "data failed its checksum (chunk {i} at byte {} of a {}-byte segment)",
            i as u64 * seg.chunk_size as u64,
            seg.raw_len
        )))
    };
    if seg.codec == Codec::None || c.stored_len == c.raw_len {
        src.read_exact_at(c.offset, dst)?;
        if verify && codec::digest(dst) != c.digest {
            return mismatch();
        }
    } else {
        // digests cover the stored bytes: checked before the decoder ever sees them.
        // The stored bytes go to a buffer taken out of this thread's scratch space (the
        // decoder may use that space again for unshuffling).
        let mut stored = codec::with_scratch(|_, b| std::mem::take(b));
        stored.resize(c.stored_len as usize, 0);
        let res = (|| {
            src.read_exact_at(c.offset, &mut stored)?;
            if verify && codec::digest(&stored) != c.digest {
                return mismatch();
            }
            codec::lz4_decompress_chunk(&stored, dst, seg.shuffle as usize)
                .map_err(|e: CodecError| Error::Corrupt(format!("chunk {i}: {e}")))
        })();
        codec::with_scratch(|_, b| *b = stored);
        res?;
    }
    Ok(())
}

/// Checks the digest of every stored chunk of `segments` without decoding anything, reading
/// each chunk into a scratch buffer (on all cores): run before the outputs are allocated, it
/// stops a damaged file whose chunks claim a large decoded size from costing that memory.
pub fn verify_stored_segments<S: Source + ?Sized>(src: &S, segments: &[&Segment]) -> Result<()> {
    let work: Vec<(&Segment, usize)> = segments
        .iter()
        .flat_map(|s| (0..s.chunks.len()).map(move |i| (*s, i)))
        .collect();
    crate::threads::install(|| {
        work.into_par_iter().try_for_each(|(seg, i)| {
            let c = &seg.chunks[i];
            codec::with_scratch(|buf, _| {
                buf.resize(c.stored_len as usize, 0);
                src.read_exact_at(c.offset, buf)?;
                if codec::digest(buf) != c.digest {
                    return Err(Error::Checksum(format!(
                        "data failed its checksum (chunk {i} at byte {} of a {}-byte segment)",
                        i as u64 * seg.chunk_size as u64,
                        seg.raw_len
                    )));
                }
                Ok(())
            })
        })
    })
}

/// Reads the stored bytes of chunk `i` of a segment (for decoders outside Rust), checking
/// its digest when `verify` is set.
pub fn read_stored_chunk<S: Source + ?Sized>(
    src: &S,
    seg: &Segment,
    i: usize,
    verify: bool,
) -> Result<Vec<u8>> {
    let c = seg
        .chunks
        .get(i)
        .ok_or_else(|| Error::Corrupt(format!("no chunk {i}")))?;
    let mut stored = vec![0u8; c.stored_len as usize];
    src.read_exact_at(c.offset, &mut stored)?;
    if verify && codec::digest(&stored) != c.digest {
        return Err(Error::Checksum(format!(
            "data failed its checksum (chunk {i})"
        )));
    }
    Ok(stored)
}

/// Checks every chunk digest of an uncompressed segment whose bytes are `data` (a memory
/// map, when asked to verify one). Returns a description of the first mismatch.
pub fn verify_segment(seg: &Segment, data: &[u8]) -> Result<()> {
    if seg.codec != Codec::None {
        return invalid("only uncompressed segments are verified from their raw bytes");
    }
    if data.len() as u64 != seg.raw_len {
        return invalid("segment has the wrong size");
    }
    let cs = seg.chunk_size as usize;
    let bad = crate::threads::install(|| {
        data.par_chunks(cs)
            .zip(seg.chunks.par_iter())
            .position_any(|(d, c)| codec::digest(d) != c.digest)
    });
    match bad {
        None => Ok(()),
        Some(i) => Err(Error::Checksum(format!(
            "data failed its checksum (chunk {i})"
        ))),
    }
}
