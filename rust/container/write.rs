//! Writing a container (header, segments compressed on the pool, table, trailer) and the
//! one in-place update a file ever gets: the writable-map mark.

use std::io::{self, Write};

use rayon::prelude::*;

use crate::codec::{self, Digest, MAX_CHUNK_SIZE};
use crate::error::{invalid, Result};

use super::layout::*;
use super::sources::FileSource;

/// lz4 chunks in flight while writing (compressed on the pool, written in order): bounds memory.
const WRITE_WINDOW_CHUNKS: usize = 8;
/// Below this size a buffer is hashed on the writing thread (a thread costs more).
const PARALLEL_HASH_MIN: usize = 4 << 20;

/// How one segment is to be written.
pub enum SegmentData<'a> {
    /// Raw bytes, stored as they are or compressed here with lz4; `shuffle` is the element
    /// size a byte-shuffle may use (0: never), applied only where a sample shows it helps.
    Raw {
        data: &'a [u8],
        codec: Codec,
        shuffle: u32,
    },
    /// Raw bytes whose chunks the caller already compressed (zlib, bz2, lzma); a chunk that
    /// did not get smaller is stored raw.
    Precompressed {
        data: &'a [u8],
        codec: Codec,
        chunks: Vec<&'a [u8]>,
    },
}

/// An upper bound of the bytes [`write_container`] writes for `segments` (every chunk is stored
/// at most raw-sized), to size an output buffer once.
pub fn max_output_len(
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
) -> usize {
    let smallest_chunk = chunk_size.min(lz4_chunk_size).max(1);
    let segs: usize = segments
        .iter()
        .map(|s| {
            let n = match s {
                SegmentData::Raw { data, .. } | SegmentData::Precompressed { data, .. } => {
                    data.len()
                }
            };
            n + ALIGN as usize + ENTRY_FIXED_LEN + n.div_ceil(smallest_chunk) * MAX_CHUNK_ENTRY_LEN
        })
        .sum();
    HEADER_LEN as usize + segs + 8 + TRAILER_LEN as usize
}

/// Writes a container to `w`: header, then the segments (segment 0 must be the pickle
/// stream), then table and trailer. Returns the number of bytes written.
/// `chunk_size` applies to uncompressed and zlib/bz2/lzma segments, `lz4_chunk_size` to
/// lz4 ones (larger, because each lz4 chunk starts without history; see codec.rs).
pub fn write_container<W: Write>(
    w: &mut W,
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
) -> Result<u64> {
    write_container_named(w, segments, chunk_size, lz4_chunk_size, None)
}

/// [`write_container`], naming in the header the external codec that the
/// [`Codec::External`] segments (compressed by the caller) use.
pub fn write_container_named<W: Write>(
    w: &mut W,
    segments: &[SegmentData<'_>],
    chunk_size: usize,
    lz4_chunk_size: usize,
    codec_name: Option<&str>,
) -> Result<u64> {
    let uses_external = segments.iter().any(|s| {
        matches!(
            s,
            SegmentData::Precompressed {
                codec: Codec::External,
                ..
            }
        )
    });
    if uses_external && codec_name.is_none() {
        return invalid("external-codec segments need the codec's name");
    }
    for c in [chunk_size, lz4_chunk_size] {
        if c == 0 || c > MAX_CHUNK_SIZE {
            return invalid(format!("invalid chunk size {c}"));
        }
    }
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    // files without an external codec stay readable by 1.0 readers
    let minor = if codec_name.is_some() {
        VERSION_MINOR
    } else {
        0
    };
    header[10..12].copy_from_slice(&minor.to_le_bytes());
    if let Some(name) = codec_name {
        encode_codec_name(&mut header, name)?;
    }
    w.write_all(&header)?;
    let mut pos = HEADER_LEN;
    let mut table = Vec::new();
    table.extend_from_slice(&(segments.len() as u64).to_le_bytes());
    for (i, seg) in segments.iter().enumerate() {
        let pad = (ALIGN - pos % ALIGN) % ALIGN;
        w.write_all(&[0u8; ALIGN as usize][..pad as usize])?;
        pos += pad;
        let kind = if i == 0 {
            SegmentKind::Pickle
        } else {
            SegmentKind::Buffer
        };
        let size = match seg {
            SegmentData::Raw {
                codec: Codec::Lz4, ..
            } => lz4_chunk_size,
            _ => chunk_size,
        };
        let entry = write_segment(w, seg, kind, pos, size)?;
        pos += entry.stored_len;
        encode_segment(&mut table, &entry);
    }
    let digest = table_digest(&header, &table);
    w.write_all(&table)?;
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(&pos.to_le_bytes());
    trailer.extend_from_slice(&(table.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&digest);
    trailer.extend_from_slice(&END_MAGIC);
    w.write_all(&trailer)?;
    w.flush()?;
    Ok(pos + table.len() as u64 + TRAILER_LEN)
}

fn write_segment<W: Write>(
    w: &mut W,
    seg: &SegmentData<'_>,
    kind: SegmentKind,
    offset: u64,
    chunk_size: usize,
) -> Result<Segment> {
    let mut chunks = Vec::new();
    let mut shuffle_used = 0u32;
    let (data, codec, shuffle) = match seg {
        SegmentData::Raw { data, codec, .. } | SegmentData::Precompressed { data, codec, .. } => (
            *data,
            *codec,
            if let SegmentData::Raw { shuffle, .. } = seg {
                *shuffle
            } else {
                0
            },
        ),
    };
    let raw_chunks: Vec<&[u8]> = data.chunks(chunk_size).collect();
    let mut pos = offset;
    let mut push = |chunks: &mut Vec<ChunkEntry>, stored: u64, raw: u64, digest: Digest| {
        chunks.push(ChunkEntry {
            offset: pos,
            stored_len: stored,
            raw_len: raw,
            digest,
        });
        pos += stored;
    };
    match (seg, codec) {
        (SegmentData::Raw { .. }, Codec::None) => {
            let digests = if data.len() < PARALLEL_HASH_MIN {
                w.write_all(data)?;
                data.chunks(chunk_size).map(codec::digest).collect()
            } else {
                // hash on the other cores while this thread copies the buffer to the file
                let (digests, written) = std::thread::scope(|s| {
                    let hasher = s.spawn(|| codec::chunk_digests(data, chunk_size));
                    let written = w.write_all(data);
                    (hasher.join(), written)
                });
                written?;
                digests.map_err(|_| io::Error::other("hashing thread panicked"))?
            };
            for (c, d) in raw_chunks.iter().zip(digests) {
                push(&mut chunks, c.len() as u64, c.len() as u64, d);
            }
        }
        (SegmentData::Raw { .. }, Codec::Lz4) => {
            let shuffle = codec::choose_shuffle(data, chunk_size, shuffle as usize) as u32;
            shuffle_used = shuffle;
            // the pool compresses (and digests) the next chunks while this thread writes the
            // finished ones in order; a bounded window keeps memory at a few chunks
            crate::threads::map_ordered(
                &raw_chunks,
                WRITE_WINDOW_CHUNKS,
                |raw| codec::lz4_compress_chunk(raw, shuffle as usize),
                |i, c| -> Result<()> {
                    w.write_all(&c.stored)?;
                    push(
                        &mut chunks,
                        c.stored.len() as u64,
                        raw_chunks[i].len() as u64,
                        c.digest,
                    );
                    Ok(())
                },
            )?;
        }
        (
            SegmentData::Precompressed { chunks: pre, .. },
            Codec::Zlib | Codec::Bz2 | Codec::Lzma | Codec::External,
        ) => {
            if pre.len() != raw_chunks.len() {
                return invalid(format!(
                    "{} compressed chunks given for {} raw chunks",
                    pre.len(),
                    raw_chunks.len()
                ));
            }
            let stored: Vec<&[u8]> = pre
                .iter()
                .zip(&raw_chunks)
                .map(|(p, raw)| {
                    if p.is_empty() || p.len() >= raw.len() {
                        *raw
                    } else {
                        *p
                    }
                })
                .collect();
            let digests: Vec<Digest> =
                crate::threads::install(|| stored.par_iter().map(|c| codec::digest(c)).collect());
            for ((c, raw), d) in stored.iter().zip(&raw_chunks).zip(digests) {
                w.write_all(c)?;
                push(&mut chunks, c.len() as u64, raw.len() as u64, d);
            }
        }
        _ => return invalid(format!("codec {codec:?} cannot be written this way")),
    }
    Ok(Segment {
        kind,
        codec,
        shuffle: shuffle_used,
        offset,
        stored_len: pos - offset,
        raw_len: data.len() as u64,
        chunk_size: chunk_size as u32,
        chunks,
    })
}

/// Marks a container as mapped writable (one 4-byte positioned write of
/// [`mapped_writable_mark`] into the header's flags word), so later loads stop verifying
/// uncompressed data that a writable memory map may change. A file carrying joblite 0.1.0's
/// mark gets the new one.
pub fn mark_mapped_writable(path: &std::path::Path) -> Result<()> {
    let src = FileSource::open(path)?;
    let table = read_table(&src)?;
    if table.flags & FLAG_MAPPED_WRITABLE != 0 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let flags = mapped_writable_mark(&table.digest).to_le_bytes();
    #[cfg(unix)]
    std::os::unix::fs::FileExt::write_all_at(&file, &flags, FLAGS_OFFSET as u64)?;
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        if file.seek_write(&flags, FLAGS_OFFSET as u64)? != flags.len() {
            return Err(io::Error::other("short write").into());
        }
    }
    Ok(())
}
