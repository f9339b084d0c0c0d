//! Criterion benches of the file format's core without Python: one chunk of each format-2
//! codec compressed and decoded, and the XXH3 chunk checksum. The data mimics the Python
//! benchmarks: normal floats rounded to 3 decimals.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

criterion_group!(group, bench_format2);
criterion_main!(group);
