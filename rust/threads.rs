//! The worker threads behind every data-parallel loop of the core (hashing, compression,
//! checksums), made safe across `fork()`.
//!
//! rayon's global pool is created once per process; after a `fork()` (the multiprocessing
//! start method on Linux) the child inherits the pool's bookkeeping but none of its threads, and
//! the first parallel loop waits forever for workers that do not exist. [`install`] instead runs
//! work on a pool owned by the current process id: a forked child builds its own on first use.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn current_pool() -> Option<Arc<ThreadPool>> {
    let pid = std::process::id();
    let mut guard = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return Some(Arc::clone(pool));
        }
        // Inherited from the parent through fork(): its threads do not exist here. Dropping it
        // would signal those threads, so it is leaked on purpose (once per fork).
        if let Some((_, inherited)) = guard.take() {
            std::mem::forget(inherited);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("joblite-core-{i}"))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    *guard = Some((pid, Arc::clone(&pool)));
    Some(pool)
}

/// Runs `work` on this process's worker pool: rayon calls inside it (`par_iter`, `join`,
/// blake3's `update_rayon`) use that pool. If no pool can be created, `work` runs on the calling
/// thread (rayon then runs everything sequentially), never failing.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match current_pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// Maps `map` over `items` on this process's worker pool, at most `window` items in flight,
/// and hands each result to `sink` on the calling thread in the order of `items`, while the
/// workers go on with the next ones (compress on the pool while this thread writes).
///
/// Stops at the first error of `sink` (items in flight are finished and dropped) and returns
/// it. A panic in `map` is re-raised on the calling thread once the items in flight are done.
/// Must not be called from inside [`install`]: the calling thread waits on a channel and would
/// hold one of the workers.
pub fn map_ordered<T, R, E>(
    items: &[T],
    window: usize,
    map: impl Fn(&T) -> R + Sync,
    mut sink: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
{
    let pool = match current_pool() {
        Some(pool) if items.len() > 1 && pool.current_thread_index().is_none() => pool,
        _ => {
            for (i, item) in items.iter().enumerate() {
                sink(i, map(item))?;
            }
            return Ok(());
        }
    };
    type Outcome<R> = std::thread::Result<R>;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Outcome<R>)>();
    let map = &map;
    let mut panic = None;
    let result = pool.in_place_scope_fifo(|s| {
        let spawn = |i: usize| {
            let tx = tx.clone();
            let item = &items[i];
            s.spawn_fifo(move |_| {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map(item)));
                // the receiver is gone only after an error: the result is not wanted then
                let _ = tx.send((i, out));
            });
        };
        let window = window.max(1);
        let mut next = 0;
        while next < items.len() && next < window {
            spawn(next);
            next += 1;
        }
        let mut ready: std::collections::BTreeMap<usize, R> = std::collections::BTreeMap::new();
        let mut done = 0;
        while done < items.len() {
            // every spawned item sends exactly once (panics are caught), so this cannot
            // wait on an item that will never come
            let Ok((i, out)) = rx.recv() else { break };
            match out {
                Ok(r) => {
                    ready.insert(i, r);
                }
                Err(payload) => {
                    panic = Some(payload);
                    return Ok(());
                }
            }
            while let Some(r) = ready.remove(&done) {
                sink(done, r)?;
                done += 1;
                if next < items.len() {
                    spawn(next);
                    next += 1;
                }
            }
        }
        Ok(())
    });
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn work_runs_on_the_joblite_pool() {
        let names: Vec<String> = install(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(
            names.iter().all(|n| n.starts_with("joblite-core-")),
            "{names:?}"
        );
    }

    #[test]
    fn map_ordered_keeps_order_and_runs_on_the_pool() {
        let items: Vec<u64> = (0..200).collect();
        let mut seen = Vec::new();
        let res: Result<(), ()> = map_ordered(
            &items,
            4,
            |x| {
                // uneven work, so results finish out of order
                std::thread::sleep(std::time::Duration::from_micros((x % 7) * 50));
                let name = std::thread::current().name().unwrap_or("").to_string();
                (x * 3, name)
            },
            |i, (v, name)| {
                assert!(name.starts_with("joblite-core-"), "{name}");
                seen.push((i, v));
                Ok(())
            },
        );
        assert!(res.is_ok());
        let want: Vec<(usize, u64)> = (0..200).map(|i| (i as usize, i * 3)).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn map_ordered_stops_at_the_first_sink_error() {
        let items: Vec<u32> = (0..100).collect();
        let mut calls = 0;
        let res = map_ordered(
            &items,
            3,
            |x| *x,
            |i, _| {
                calls += 1;
                if i == 10 {
                    Err(format!("stop at {i}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(res, Err("stop at 10".to_string()));
        assert_eq!(calls, 11);
    }

    #[test]
    fn map_ordered_reraises_a_panic_of_map() {
        let items: Vec<u32> = (0..50).collect();
        let caught = std::panic::catch_unwind(|| {
            let _ = map_ordered(
                &items,
                4,
                |x| {
                    if *x == 17 {
                        panic!("boom at 17");
                    }
                    *x
                },
                |_, _| Ok::<(), ()>(()),
            );
        });
        let payload = caught.expect_err("the panic must reach the caller");
        let msg = payload.downcast_ref::<&str>().copied().unwrap_or("");
        assert_eq!(msg, "boom at 17");
    }
}
