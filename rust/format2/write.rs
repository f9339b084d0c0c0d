//! Writing a format-2 dump: chunks compressed (or, uncompressed, checksummed) on the worker
//! pool while the calling thread writes them, then the header unit with the index.

use std::hash::Hasher;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

use super::chunk::{self, Stored};
use super::head;
use super::index::{self, Buffer, Chunk, Index};
use super::layout::Layout;
use super::{checksum, Codec, Error};

/// Cuts the concatenation of `parts` at `bounds` into per-chunk slice lists.
fn cut<'a>(parts: &[&'a [u8]], bounds: &[u64]) -> Result<Vec<Vec<&'a [u8]>>, Error> {
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    if bounds.first() != Some(&0) && total > 0 {
        return Err(Error::Invalid("the first chunk must start at 0".into()));
    }
    let mut chunks: Vec<Vec<&[u8]>> = Vec::with_capacity(bounds.len());
    let mut pos = 0u64;
    let mut b = 0usize;
    for part in parts {
        let mut p: &[u8] = part;
        while !p.is_empty() {
            while b < bounds.len() && bounds[b] <= pos {
                if bounds[b] < pos {
                    return Err(Error::Invalid("chunk bounds are not increasing".into()));
                }
                chunks.push(Vec::new());
                b += 1;
            }
            let room = match bounds.get(b) {
                Some(&next) => (next - pos) as usize,
                None => usize::MAX,
            };
            let take = room.min(p.len());
            let (head, tail) = p.split_at(take);
            chunks
                .last_mut()
                .ok_or_else(|| Error::Invalid("no chunk".into()))?
                .push(head);
            pos += take as u64;
            p = tail;
        }
    }
    if b != bounds.len() {
        return Err(Error::Invalid(
            "chunk bounds past the end of the data".into(),
        ));
    }
    Ok(chunks)
}

/// The XXH3 checksum of one uncompressed chunk (the concatenation of `parts`).
fn chunk_sum(parts: &[&[u8]]) -> u64 {
    match parts {
        [one] => checksum(one),
        _ => {
            let mut h = twox_hash::XxHash3_64::new();
            parts.iter().for_each(|p| h.write(p));
            h.finish()
        }
    }
}

fn write_parts<W: Write>(out: &mut W, parts: &[&[u8]]) -> Result<(), Error> {
    for p in parts {
        out.write_all(p)?;
    }
    Ok(())
}

/// How many written chunks may wait for their checksum before the writing thread takes the
/// oldest one itself (the core thread that should have is not running: a busy machine).
const LAG: usize = 2;

/// Writes the chunks of an uncompressed dump in order and returns their checksums.
///
/// The calling thread only writes and never waits: one core thread follows it and
/// checksums each chunk as soon as it is written, while its bytes are still in cache from
/// the copy into the file (memory is read about once, and no core waits on another's
/// checksum). When that thread falls [`LAG`] chunks behind (it is not getting a core), the
/// writing thread checksums the oldest waiting chunk itself, and it checksums whatever is
/// left once everything is written. With one core thread, or inside a pool, each chunk is
/// checksummed right after it is written, by the writing thread.
fn write_checksummed<W: Write + Send>(
    out: &mut W,
    chunks: &[Vec<&[u8]>],
) -> Result<Vec<u64>, Error> {
    let n = chunks.len();
    if n < 2 || crate::core_threads::limit() < 2 || rayon::current_thread_index().is_some() {
        let mut sums = Vec::with_capacity(n);
        for parts in chunks {
            write_parts(out, parts)?;
            sums.push(chunk_sum(parts));
        }
        return Ok(sums);
    }
    let sums: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    // the next chunk to checksum: each side claims a chunk by taking this number
    let next = AtomicUsize::new(0);
    // chunks written so far; `stop` is set when the writer gave up (the follower then stops)
    let written = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let follower: OnceLock<Thread> = OnceLock::new();
    let sum = |i: usize| sums[i].store(chunk_sum(&chunks[i]), Ordering::Relaxed);
    // the follower publishes its handle, then reads `written`; the writer stores `written`,
    // then reads the handle: with a SeqCst fence on each side, either the follower sees the
    // new count or the writer sees the handle and unparks it, so no wake-up is lost
    let wake = || {
        fence(Ordering::SeqCst);
        if let Some(t) = follower.get() {
            t.unpark();
        }
    };
    crate::core_threads::install(|| {
        rayon::in_place_scope(|s| {
            s.spawn(|_| {
                let _ = follower.set(std::thread::current());
                fence(Ordering::SeqCst);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    while written.load(Ordering::SeqCst) <= i {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::park();
                    }
                    sum(i);
                }
            });
            for (i, parts) in chunks.iter().enumerate() {
                if let Err(e) = write_parts(out, parts) {
                    stop.store(true, Ordering::SeqCst);
                    wake();
                    return Err(e);
                }
                written.store(i + 1, Ordering::SeqCst);
                wake();
                if next.load(Ordering::SeqCst) + LAG <= i + 1 {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    if j < n {
                        sum(j);
                    }
                }
            }
            // everything is written: checksum what the follower has not claimed
            loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                if j >= n {
                    return Ok(());
                }
                sum(j);
            }
        })
    })?;
    // the scope has ended: every chunk was claimed and its checksum stored
    Ok(sums.into_iter().map(AtomicU64::into_inner).collect())
}

/// Writes one dump at `out`'s current position; returns its length in bytes.
pub fn write<W: Write + Seek + Send>(
    out: &mut W,
    codec: Codec,
    level: i32,
    layout: &Layout<'_>,
) -> Result<u64, Error> {
    let start = out.stream_position()?;
    let parts = layout.parts();
    let chunks = cut(&parts, &layout.bounds)?;
    let h_len = layout.h_len as u64;
    let body_len = layout.body_len;
    let framed = head::framed_len(codec, layout.h_len);
    let mut stored_chunks: Vec<Option<Vec<u8>>> = Vec::new();
    if let Some(base) = framed {
        out.seek(SeekFrom::Start(start + base as u64))?;
    }
    let mut entries: Vec<Chunk> = Vec::with_capacity(chunks.len());
    let mut checks: Vec<u32> = Vec::with_capacity(chunks.len());
    let (mut stored_pos, mut raw_pos) = (0u64, h_len);
    if codec == Codec::None {
        let sums = write_checksummed(out, &chunks)?;
        for (parts, xxh3) in chunks.iter().zip(sums) {
            let raw_len: u64 = parts.iter().map(|s| s.len() as u64).sum();
            entries.push(Chunk {
                stored_off: stored_pos,
                stored_len: raw_len,
                raw_off: raw_pos,
                raw_len,
                xxh3,
            });
            checks.push(0);
            stored_pos += raw_len;
            raw_pos += raw_len;
        }
    } else {
        let mut sink = |i: usize, res: Result<(Stored, u64), Error>| -> Result<(), Error> {
            let (st, sum) = res?;
            let raw_len: u64 = chunks[i].iter().map(|s| s.len() as u64).sum();
            let stored_len = st.bytes.len() as u64;
            if framed.is_some() {
                out.write_all(&st.bytes)?;
            } else {
                stored_chunks.push(Some(st.bytes));
            }
            entries.push(Chunk {
                stored_off: stored_pos,
                stored_len,
                raw_off: raw_pos,
                raw_len,
                xxh3: sum,
            });
            checks.push(st.raw_check);
            stored_pos += stored_len;
            raw_pos += raw_len;
            Ok(())
        };
        let map = |parts: &Vec<&[u8]>| -> Result<(Stored, u64), Error> {
            let st = chunk::compress(codec, level, parts)?;
            let sum = checksum(&st.bytes);
            Ok((st, sum))
        };
        let window = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 2;
        crate::core_threads::map_ordered(&chunks, window, map, &mut sink)?;
    }
    let buffers = layout
        .buffers
        .iter()
        .map(|b| Buffer {
            record_off: b.record_off + h_len,
            data_off: b.data_off + h_len,
            data_len: b.data_len,
        })
        .collect();
    let mut idx = Index {
        codec,
        flags: 0,
        raw_len: h_len + body_len,
        stored_len: stored_pos,
        base: framed.unwrap_or(0) as u64,
        trailer: 0,
        chunks: entries,
        buffers,
    };
    let index_len = layout
        .h_len
        .checked_sub(head::H_OVERHEAD)
        .filter(|&n| n >= index::needed_len(idx.chunks.len(), idx.buffers.len()))
        .ok_or_else(|| Error::Invalid("header length too small for the index".into()))?;
    // the index keeps the body's checksum (adler32 / crc32 of everything after H), so that a
    // reader can check the trailer against it and H without reading the data
    let lens: Vec<u64> = idx.chunks.iter().map(|c| c.raw_len).collect();
    idx.trailer = u64::from(combine(codec, None, &checks, &lens));
    let h = head::raw_header(&idx.encode(index_len)?);
    let trailer = trailer_bytes(codec, &h, idx.trailer as u32, body_len);
    let unit = head::frame(codec, level, &h)?;
    if let Some(base) = framed {
        debug_assert_eq!(unit.len(), base);
        out.seek(SeekFrom::Start(start))?;
        out.write_all(&unit)?;
        out.seek(SeekFrom::Start(start + base as u64 + stored_pos))?;
    } else {
        out.write_all(&unit)?;
        for bytes in stored_chunks.into_iter().flatten() {
            out.write_all(&bytes)?;
        }
    }
    out.write_all(&trailer)?;
    let end = out.stream_position()?;
    Ok(end - start)
}

/// The running checksum of the codec's trailer over `first` (if any) then chunks with
/// checks `checks` and raw lengths `lens`.
pub fn combine(codec: Codec, first: Option<&[u8]>, checks: &[u32], lens: &[u64]) -> u32 {
    match codec {
        Codec::Zlib => {
            let mut adler = first.map_or(1, |h| zlib_rs::adler32::adler32(1, h));
            for (c, n) in checks.iter().zip(lens) {
                adler = zlib_rs::adler32::adler32_combine(adler, *c, *n);
            }
            adler
        }
        Codec::Gzip => {
            let mut crc = crc32fast::Hasher::new();
            if let Some(h) = first {
                crc.update(h);
            }
            for (c, n) in checks.iter().zip(lens) {
                crc.combine(&crc32fast::Hasher::new_with_initial_len(*c, *n));
            }
            crc.finalize()
        }
        _ => 0,
    }
}

/// The bytes after the last chunk: the final empty deflate block and the zlib / gzip
/// trailer, for raw header `h` and a body of `body_len` bytes with checksum `body`.
pub fn trailer_bytes(codec: Codec, h: &[u8], body: u32, body_len: u64) -> Vec<u8> {
    let mut t = Vec::new();
    match codec {
        Codec::Zlib => {
            let a = zlib_rs::adler32::adler32(1, h);
            let all = zlib_rs::adler32::adler32_combine(a, body, body_len);
            t.extend_from_slice(&[0x03, 0x00]);
            t.extend_from_slice(&all.to_be_bytes());
        }
        Codec::Gzip => {
            let mut crc = crc32fast::Hasher::new();
            crc.update(h);
            crc.combine(&crc32fast::Hasher::new_with_initial_len(body, body_len));
            t.extend_from_slice(&[0x03, 0x00]);
            t.extend_from_slice(&crc.finalize().to_le_bytes());
            t.extend_from_slice(&((h.len() as u64 + body_len) as u32).to_le_bytes());
        }
        _ => {}
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format2::read::Source;
    use std::io::Cursor;

    #[test]
    fn writes_what_the_reader_reads() {
        // PROTO 5, EMPTY_LIST, NEXT_BUFFER (a 1000-byte buffer), APPEND, STOP
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let stream: &[u8] = b"\x80\x05]\x97a.";
        for codec in [
            Codec::None,
            Codec::Zlib,
            Codec::Gzip,
            Codec::Lz4,
            Codec::Zstd,
            Codec::Bz2,
            Codec::Xz,
        ] {
            let layout = crate::format2::layout::plan(&[stream], &[&data], codec, 0).unwrap();
            let mut cur = Cursor::new(Vec::new());
            let n = write(&mut cur, codec, 3, &layout).unwrap();
            let bytes = cur.into_inner();
            assert_eq!(n as usize, bytes.len());
            let src: &[u8] = &bytes;
            let plan = crate::format2::read::open(&src, 0)
                .unwrap()
                .unwrap_or_else(|| panic!("{codec:?} {:?}", &bytes[..40]))
                .plan;
            assert_eq!(plan.index.codec, codec);
            let (stream, small) = plan.stream(&src as &dyn Source, true).unwrap();
            assert_eq!(stream.to_vec(), b"\x80\x05]\x97a.");
            let mut out = vec![0u8; 1000];
            if codec == Codec::None {
                assert!(small[0].is_none()); // every uncompressed buffer owns its chunks
                plan.read_buffers(&src, vec![(0, &mut out[..])], true)
                    .unwrap();
            } else {
                out.copy_from_slice(small[0].as_deref().unwrap());
            }
            assert_eq!(out, data, "{codec:?}");
        }
    }

    /// A file that fails once `limit` bytes were written.
    struct Failing {
        inner: Cursor<Vec<u8>>,
        limit: u64,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.inner.position() + buf.len() as u64 > self.limit {
                return Err(std::io::Error::other("disk full"));
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Failing {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn uncompressed_chunks_are_checksummed_while_written() {
        // a 5.5 MiB buffer: several chunks, checksummed by the follower thread
        let data: Vec<u8> = (0..(11u32 << 19))
            .map(|i| (i * 7 + i / 4099) as u8)
            .collect();
        let stream: &[u8] = b"\x80\x05]\x97a.";
        let layout = crate::format2::layout::plan(&[stream], &[&data], Codec::None, 0).unwrap();
        let mut cur = Cursor::new(Vec::new());
        write(&mut cur, Codec::None, 0, &layout).unwrap();
        let bytes = cur.into_inner();
        let src: &[u8] = &bytes;
        let plan = crate::format2::read::open(&src, 0).unwrap().unwrap().plan;
        assert!(plan.index.chunks.len() >= 6, "{}", plan.index.chunks.len());
        for c in &plan.index.chunks {
            let at = (plan.index.base + c.stored_off) as usize;
            let want = checksum(&bytes[at..at + c.stored_len as usize]);
            assert_eq!(c.xxh3, want);
        }
        let mut out = vec![0u8; data.len()];
        plan.read_buffers(&src, vec![(0, &mut out[..])], true)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_failed_write_stops_the_checksums_and_returns_the_error() {
        let data = vec![5u8; 4 << 20];
        let stream: &[u8] = b"\x80\x05]\x97a.";
        let layout = crate::format2::layout::plan(&[stream], &[&data], Codec::None, 0).unwrap();
        for limit in [0u64, 100, 3 << 20, (4 << 20) + 100] {
            let mut out = Failing {
                inner: Cursor::new(Vec::new()),
                limit,
            };
            let err = write(&mut out, Codec::None, 0, &layout).unwrap_err();
            assert!(err.to_string().contains("disk full"), "{limit}: {err}");
        }
    }
}
