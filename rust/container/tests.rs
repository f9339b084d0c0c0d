//! Unit tests of the container format.

use super::layout::*;
use super::read::*;
use super::write::*;
use crate::error::Error;

fn floats(n: usize) -> Vec<u8> {
    let mut x: u64 = 88172645463325252;
    (0..n)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = ((x % 20000) as f64 - 10000.0) / 1000.0;
            v.to_le_bytes()
        })
        .collect()
}

fn build(codec: Codec, shuffle: u32, chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let pickle = b"pickle stream".to_vec();
    let a = floats(4_000);
    let b = vec![7u8; 3];
    let empty: Vec<u8> = Vec::new();
    let segs = vec![
        SegmentData::Raw {
            data: &pickle,
            codec,
            shuffle: 0,
        },
        SegmentData::Raw {
            data: &a,
            codec,
            shuffle,
        },
        SegmentData::Raw {
            data: &b,
            codec,
            shuffle: 0,
        },
        SegmentData::Raw {
            data: &empty,
            codec,
            shuffle: 0,
        },
    ];
    let mut out = Vec::new();
    let n = write_container(&mut out, &segs, chunk, chunk).unwrap();
    assert_eq!(n as usize, out.len());
    (out, vec![pickle, a, b, empty])
}

fn read_all(file: &[u8], verify: bool) -> Result<Vec<Vec<u8>>, Error> {
    let table = read_table(file)?;
    let mut bufs: Vec<Vec<u8>> = table
        .segments
        .iter()
        .map(|s| vec![0u8; s.raw_len as usize])
        .collect();
    let jobs = table
        .segments
        .iter()
        .zip(bufs.iter_mut())
        .map(|(segment, dst)| ReadJob {
            segment,
            dst: dst.as_mut_slice(),
        })
        .collect();
    read_segments(file, jobs, verify)?;
    Ok(bufs)
}

#[test]
fn roundtrip_every_codec_path() {
    for (codec, shuffle) in [(Codec::None, 0), (Codec::Lz4, 0), (Codec::Lz4, 8)] {
        let (file, want) = build(codec, shuffle, 4096);
        let table = read_table(file.as_slice()).unwrap();
        for s in &table.segments {
            assert_eq!(s.offset % ALIGN, 0);
        }
        assert_eq!(read_all(&file, true).unwrap(), want);
    }
}

#[test]
fn no_single_byte_flip_gives_wrong_data() {
    let (file, want) = build(Codec::Lz4, 8, 16384);
    let table_offset = le_u64(&file[file.len() - TRAILER_LEN as usize..]) as usize;
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x10;
        let structure = i < HEADER_LEN as usize || i >= table_offset;
        match read_all(&bad, true) {
            Err(e) if e.is_bad_data() => {}
            // data flips lz4 decodes to the same bytes (or padding) are harmless
            Ok(got) => {
                assert!(
                    !structure,
                    "flip at {i} in header/table/trailer not detected"
                );
                assert_eq!(got, want, "flip at {i} gave wrong data");
            }
            Err(e) => panic!("flip at {i}: unexpected error {e}"),
        }
    }
}

#[test]
fn external_codec_name_roundtrips_and_is_checked() {
    let raw = vec![7u8; 10_000];
    let pickle = b"pickle stream".to_vec();
    // "compressed" by the caller: any bytes shorter than the raw chunk
    let pre: Vec<&[u8]> = vec![&raw[..100]; 3];
    let segs = [
        SegmentData::Raw {
            data: &pickle,
            codec: Codec::None,
            shuffle: 0,
        },
        SegmentData::Precompressed {
            data: &raw,
            codec: Codec::External,
            chunks: pre,
        },
    ];
    let mut out = Vec::new();
    assert!(matches!(
        write_container(&mut out, &segs, 4096, 4096),
        Err(Error::InvalidArgument(_))
    ));
    let mut file = Vec::new();
    write_container_named(&mut file, &segs, 4096, 4096, Some("zstd-ish")).unwrap();
    let table = read_table(file.as_slice()).unwrap();
    assert_eq!(table.codec_name.as_deref(), Some("zstd-ish"));
    assert_eq!(table.version, (VERSION_MAJOR, 1));
    assert_eq!(table.segments[1].codec, Codec::External);
    assert_eq!(table.segments[1].chunks[0].stored_len, 100);
    let stored = read_stored_chunk(file.as_slice(), &table.segments[1], 2, true).unwrap();
    assert_eq!(stored, raw[..100].to_vec());
    // files without one keep version 1.0 and no name
    let (plain, _) = build(Codec::Lz4, 0, 4096);
    let t = read_table(plain.as_slice()).unwrap();
    assert_eq!((t.version, t.codec_name), ((VERSION_MAJOR, 0), None));
    // a name that is too long is refused before anything is written
    let long = "x".repeat(MAX_CODEC_NAME_LEN + 1);
    let mut out = Vec::new();
    assert!(write_container_named(&mut out, &segs, 4096, 4096, Some(&long)).is_err());
    assert!(out.is_empty());
    // a header whose name length runs past the reserved bytes is corrupt
    let mut bad = file.clone();
    bad[CODEC_NAME_OFFSET] = (MAX_CODEC_NAME_LEN + 1) as u8;
    assert!(matches!(read_table(bad.as_slice()), Err(Error::Corrupt(_))));
}

#[test]
fn max_output_len_bounds_every_output() {
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let zeros = vec![0u8; 30_000];
    for codec in [Codec::None, Codec::Lz4] {
        for chunk in [64usize, 4096, 1 << 20] {
            let segs = [
                SegmentData::Raw {
                    data: &zeros[..100],
                    codec,
                    shuffle: 0,
                },
                SegmentData::Raw {
                    data: &noise,
                    codec,
                    shuffle: 0,
                },
                SegmentData::Raw {
                    data: &[],
                    codec,
                    shuffle: 0,
                },
                SegmentData::Raw {
                    data: &zeros,
                    codec,
                    shuffle: 4,
                },
            ];
            let mut out = Vec::new();
            write_container(&mut out, &segs, chunk, chunk).unwrap();
            assert!(
                out.len() <= max_output_len(&segs, chunk, chunk),
                "{codec:?} {chunk}"
            );
        }
    }
}

#[test]
fn truncation_is_detected_at_every_length() {
    let (file, _) = build(Codec::None, 0, 4096);
    for n in 0..file.len() {
        assert!(matches!(read_all(&file[..n], true), Err(e) if e.is_bad_data()));
    }
}

#[test]
fn precompressed_chunks_are_written_and_verified() {
    let pickle = b"p".to_vec();
    let data = vec![1u8; 10_000];
    let fake = vec![0xAAu8; 10];
    let chunks: Vec<&[u8]> = vec![&fake, &fake, &[]];
    let segs = vec![
        SegmentData::Raw {
            data: &pickle,
            codec: Codec::None,
            shuffle: 0,
        },
        SegmentData::Precompressed {
            data: &data,
            codec: Codec::Zlib,
            chunks,
        },
    ];
    let mut out = Vec::new();
    write_container(&mut out, &segs, 4096, 4096).unwrap();
    let table = read_table(out.as_slice()).unwrap();
    let seg = &table.segments[1];
    assert_eq!(seg.chunks[0].stored_len, 10);
    assert_eq!(seg.chunks[2].stored_len, seg.chunks[2].raw_len); // empty -> raw
    assert_eq!(
        read_stored_chunk(out.as_slice(), seg, 0, true).unwrap(),
        fake
    );
    assert_eq!(
        read_stored_chunk(out.as_slice(), seg, 2, true).unwrap(),
        &data[8192..]
    );
    let mut bad = out.clone();
    bad[seg.chunks[1].offset as usize] ^= 1;
    assert!(read_stored_chunk(bad.as_slice(), seg, 1, true).is_err());
    assert!(read_stored_chunk(bad.as_slice(), seg, 1, false).is_ok());
}

#[test]
fn huge_declared_length_is_rejected_without_allocating() {
    let (mut file, _) = build(Codec::None, 0, 4096);
    // rewrite the first buffer's raw/stored length to 2^60 and fix the table digest
    let size = file.len();
    let t_off = le_u64(&file[size - 56..]) as usize;
    let t_len = le_u64(&file[size - 48..]) as usize;
    let entry1 = t_off + 8 + ENTRY_FIXED_LEN + 32; // after the pickle entry and its digest
    file[entry1 + 16..entry1 + 24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    file[entry1 + 24..entry1 + 32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let d = table_digest(&file[..64], &file[t_off..t_off + t_len]);
    file[size - 40..size - 8].copy_from_slice(&d);
    let err = read_table(file.as_slice()).unwrap_err().to_string();
    assert!(err.contains("segment 1"), "{err}");
}

#[test]
fn no_flip_of_the_flags_word_marks_a_file_mapped_writable() {
    let (file, _) = build(Codec::None, 0, 4096);
    let table = read_table(file.as_slice()).unwrap();
    assert_eq!(table.flags, 0);
    let mark = mapped_writable_mark(&table.digest);
    for word in [0u32, mark] {
        for bit in 0..32 {
            let mut bad = file.clone();
            bad[12..16].copy_from_slice(&(word ^ (1 << bit)).to_le_bytes());
            match read_table(bad.as_slice()) {
                Err(e) => assert!(e.is_bad_data(), "{e}"),
                // only joblite 0.1.0's mark (word 1) is accepted, and it keeps verification on
                Ok(t) => assert_eq!(t.flags, FLAG_LEGACY_MAPPED, "word {word:#x} bit {bit}"),
            }
        }
    }
    let mut marked = file.clone();
    marked[12..16].copy_from_slice(&mark.to_le_bytes());
    assert_eq!(
        read_table(marked.as_slice()).unwrap().flags,
        FLAG_MAPPED_WRITABLE
    );
    // the mark of one file does not fit another
    let (other, _) = build(Codec::Lz4, 0, 4096);
    let mut moved = other.clone();
    moved[12..16].copy_from_slice(&mark.to_le_bytes());
    assert!(read_table(moved.as_slice()).is_err());
}
