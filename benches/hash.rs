//! criterion benches of the Rust hasher on raw buffers: blake3 (single- and multi-threaded
//! through the Encoder), md5, sha1, and the strided gather used for non-contiguous arrays.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use joblite_core::hash::{digest_bytes, feed_strided, Algorithm, Encoder};

fn contiguous(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash/contiguous");
    group.sample_size(10);
    for size in [64 << 10, 16 << 20, 256 << 20] {
        let data = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for (name, algorithm) in [
            ("blake3", Algorithm::Blake3),
            ("md5", Algorithm::Md5),
            ("sha1", Algorithm::Sha1),
        ] {
            if size > (16 << 20) && algorithm != Algorithm::Blake3 {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(name, size), &data, |b, d| {
                b.iter(|| digest_bytes(algorithm, d))
            });
        }
        group.bench_with_input(BenchmarkId::new("blake3-1thread", size), &data, |b, d| {
            b.iter(|| blake3::hash(d))
        });
        group.bench_with_input(BenchmarkId::new("memcpy", size), &data, |b, d| {
            let mut out = vec![0u8; d.len()];
            b.iter(|| out.copy_from_slice(d))
        });
    }
    group.finish();
}

fn strided(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash/strided");
    group.sample_size(10);
    // a (4096, 8192) float64 matrix, every other column: 128 MiB read as a 2-D view
    let rows = 4096usize;
    let cols = 8192usize;
    let data = vec![1u8; rows * cols * 8];
    let shape = [rows, cols / 2];
    let strides = [(cols * 8) as isize, 16];
    group.throughput(Throughput::Bytes((rows * cols / 2 * 8) as u64));
    group.bench_function("every-other-column", |b| {
        b.iter(|| {
            let mut enc = Encoder::new(Algorithm::Blake3);
            feed_strided(&mut enc, &data, 0, &shape, &strides, 8).expect("valid layout");
            enc.finish()
        })
    });
    group.finish();
}

criterion_group!(group, contiguous, strided);
criterion_main!(group);
