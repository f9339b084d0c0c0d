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
}
