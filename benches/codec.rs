//! Criterion benches of the persistence core without Python: lz4 chunk codec (with and
//! without byte-shuffle), blake3 chunk digests, and whole-container write/read in memory.
//! The data mimics the Python benchmarks: normal floats rounded to 3 decimals, and
//! low-entropy int32.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use joblite_core::codec;
use joblite_core::container::{self, Codec, ReadJob, SegmentData};
use std::hint::black_box;

const SIZE: usize = 64 << 20;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Roughly normal (sum of 4 uniforms) values rounded to 3 decimals, as f64 bytes.
fn floats() -> Vec<u8> {
    let mut s = 0x9E3779B97F4A7C15u64;
    (0..SIZE / 8)
        .flat_map(|_| {
            let u: f64 = (0..4)
                .map(|_| (xorshift(&mut s) >> 11) as f64 / (1u64 << 53) as f64)
                .sum();
            let v = ((u - 2.0) * 1.7 * 1000.0).round() / 1000.0;
            v.to_le_bytes()
        })
        .collect()
}

/// Integers in 0..16 as little-endian i32.
fn ints() -> Vec<u8> {
    let mut s = 0x2545F4914F6CDD1Du64;
    (0..SIZE / 4)
        .flat_map(|_| ((xorshift(&mut s) % 16) as i32).to_le_bytes())
        .collect()
}

fn bench_codec(c: &mut Criterion) {
    let inputs = [("floats", floats(), 8usize), ("ints", ints(), 4usize)];
    let mut g = c.benchmark_group("lz4 chunks (all cores)");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    for (name, data, elem) in &inputs {
        for shuffle in [0, *elem] {
            let chunks: Vec<&[u8]> = data.chunks(codec::DEFAULT_LZ4_CHUNK_SIZE).collect();
            let id = format!("{name} shuffle={shuffle}");
            g.bench_function(BenchmarkId::new("compress", &id), |b| {
                b.iter(|| black_box(codec::lz4_compress_chunks(&chunks, shuffle)))
            });
            let done = codec::lz4_compress_chunks(&chunks, shuffle);
            let stored: usize = done.iter().map(|c| c.stored.len()).sum();
            eprintln!(
                "{id}: compressed to {:.4} of raw",
                stored as f64 / SIZE as f64
            );
            let mut out = vec![0u8; SIZE];
            g.bench_function(BenchmarkId::new("decompress", &id), |b| {
                b.iter(|| {
                    use rayon::prelude::*;
                    out.par_chunks_mut(codec::DEFAULT_LZ4_CHUNK_SIZE)
                        .zip(done.par_iter())
                        .for_each(|(dst, c)| {
                            codec::lz4_decompress_chunk(&c.stored, dst, shuffle)
                                .expect("valid chunk")
                        })
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("blake3 chunk digests (all cores)");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    let data = &inputs[0].1;
    g.bench_function("1 MiB chunks", |b| {
        b.iter(|| black_box(codec::chunk_digests(data, codec::DEFAULT_CHUNK_SIZE)))
    });
    g.bench_function("single thread", |b| {
        b.iter(|| {
            black_box(
                data.chunks(codec::DEFAULT_CHUNK_SIZE)
                    .map(codec::digest)
                    .count(),
            )
        })
    });
    g.finish();
}

fn bench_container(c: &mut Criterion) {
    let data = floats();
    let mut g = c.benchmark_group("container in memory");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    for (name, codec, shuffle) in [("none", Codec::None, 0), ("lz4", Codec::Lz4, 8)] {
        let segs = [
            SegmentData::Raw {
                data: b"pickle",
                codec,
                shuffle: 0,
            },
            SegmentData::Raw {
                data: &data,
                codec,
                shuffle,
            },
        ];
        let write = || {
            let mut out = Vec::with_capacity(SIZE + (1 << 20));
            container::write_container(
                &mut out,
                &segs,
                codec::DEFAULT_CHUNK_SIZE,
                codec::DEFAULT_LZ4_CHUNK_SIZE,
            )
            .expect("write to memory");
            out
        };
        g.bench_function(BenchmarkId::new("write", name), |b| {
            b.iter(|| black_box(write()))
        });
        let file = write();
        let mut dst = vec![0u8; SIZE];
        g.bench_function(BenchmarkId::new("read+verify", name), |b| {
            b.iter(|| {
                let table = container::read_table(file.as_slice()).expect("valid");
                let jobs = vec![ReadJob {
                    segment: &table.segments[1],
                    dst: dst.as_mut_slice(),
                }];
                container::read_segments(file.as_slice(), jobs, true).expect("valid")
            })
        });
    }
    g.finish();
}

/// Format 2: one chunk of each codec compressed and decoded (single core), and XXH3.
fn bench_format2(c: &mut Criterion) {
    use joblite_core::format2::{self, chunk, Codec as F2};
    let data = floats();
    let one = &data[..1 << 20];
    let mut g = c.benchmark_group("format2 chunk 1 MiB floats");
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("xxh3", |b| b.iter(|| format2::checksum(black_box(one))));
    for codec in [F2::Zlib, F2::Lz4, F2::Zstd] {
        let level = if codec == F2::Zstd { 1 } else { 3 };
        g.bench_function(BenchmarkId::new("compress", codec.name()), |b| {
            b.iter(|| chunk::compress(codec, level, &[black_box(one)]).map(|s| s.bytes.len()))
        });
        let stored = chunk::compress(codec, level, &[one])
            .map(|s| s.bytes)
            .unwrap_or_default();
        let mut out = vec![0u8; one.len()];
        g.bench_function(BenchmarkId::new("decode", codec.name()), |b| {
            b.iter(|| {
                let mut s = stored.clone();
                chunk::decode(codec, &mut s, &mut out).is_ok()
            })
        });
    }
    g.finish();
}

criterion_group!(group, bench_codec, bench_container, bench_format2);
criterion_main!(group);
