//! Per-job overhead of the task pool (the threading backend's workers): queue many tiny jobs,
//! wait for all.
use std::sync::mpsc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use joblite_core::task_pool::{Job, TaskPool};

fn tiny_jobs(c: &mut Criterion) {
    let pool = TaskPool::new(2).expect("pool");
    let n = 10_000u64;
    let mut group = c.benchmark_group("pool");
    group.throughput(Throughput::Elements(n));
    group.bench_function("10k tiny jobs, batch submit", |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::channel();
            let jobs: Vec<Job> = (0..n)
                .map(|i| {
                    let tx = tx.clone();
                    Box::new(move || {
                        let _ = tx.send(i);
                    }) as Job
                })
                .collect();
            pool.submit_many(0, jobs).expect("submit");
            drop(tx);
            rx.iter().count()
        })
    });
    group.finish();
    pool.close();
    pool.join();
}

criterion_group!(group, tiny_jobs);
criterion_main!(group);
