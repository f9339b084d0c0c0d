//! The core threads: the worker threads behind every data-parallel loop of the core
//! (hashing, compression, checksums), their limit, and their safety across `fork()`.
//!
//! Not to be confused with [`crate::task_pool`], which runs `Parallel`'s tasks. This pool's
//! size is the *core thread limit*, like the thread limit of a BLAS library:
//! [`set_limit`] when given (Python: `joblite.thread_limits`), else the environment variable
//! `JOBLITE_NUM_THREADS`, else `OMP_NUM_THREADS` (which joblib, loky and job schedulers set in
//! their workers), else every CPU the process may use. Process workers of joblite get
//! `JOBLITE_NUM_THREADS` = their share of the cores, so `n` workers never start `n` times all
//! cores of native threads. The environment is read once per process; a new limit builds a
//! new pool for the next loops (the old pool's threads exit once their work is done).
//!
//! rayon's global pool is created once per process; after a `fork()` (the multiprocessing
//! start method on Linux) the child inherits the pool's bookkeeping but none of its threads, and
//! the first parallel loop waits forever for workers that do not exist. [`install`] instead runs
//! work on a pool owned by the current process id: a forked child builds its own on first use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

/// The variable giving the core thread limit (`OMP_NUM_THREADS` is the fallback).
pub const LIMIT_VAR: &str = "JOBLITE_NUM_THREADS";
const FALLBACK_VAR: &str = "OMP_NUM_THREADS";

/// (owner pid, number of threads, the pool)
static POOL: Mutex<Option<(u32, usize, Arc<ThreadPool>)>> = Mutex::new(None);
/// Limit given by [`set_limit`]; 0: none given.
static EXPLICIT: AtomicUsize = AtomicUsize::new(0);
/// (pid, limit from the environment or the CPU count) of the process that read it.
static DEFAULT: Mutex<Option<(u32, usize)>> = Mutex::new(None);

/// Parses a thread count as the environment gives it: a positive integer, else `None`.
pub fn parse_limit(text: &str) -> Option<usize> {
    text.trim().parse::<usize>().ok().filter(|n| *n > 0)
}

/// The limit used when none was set: `JOBLITE_NUM_THREADS`, else `OMP_NUM_THREADS`, else
/// the CPUs this process may use (read once per process).
pub fn default_limit() -> usize {
    let pid = std::process::id();
    let mut guard = DEFAULT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, value)) = *guard {
        if owner == pid {
            return value;
        }
    }
    let from_env = |name: &str| std::env::var(name).ok().as_deref().and_then(parse_limit);
    let value = from_env(LIMIT_VAR)
        .or_else(|| from_env(FALLBACK_VAR))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    *guard = Some((pid, value));
    value
}

/// The core thread limit in force: the one set with [`set_limit`], else [`default_limit`].
pub fn limit() -> usize {
    match EXPLICIT.load(Ordering::Relaxed) {
        0 => default_limit(),
        n => n,
    }
}

/// Sets the core thread limit (`None`: back to [`default_limit`]); gives the previous
/// explicit limit. Loops already running finish on the threads they have.
pub fn set_limit(limit: Option<usize>) -> Option<usize> {
    let previous = EXPLICIT.swap(limit.unwrap_or(0), Ordering::Relaxed);
    (previous != 0).then_some(previous)
}

fn current_pool() -> Option<Arc<ThreadPool>> {
    let pid = std::process::id();
    let threads = limit();
    // POOL is held only to read or swap the slot, never while threads start: another
    // thread's fork() while it is held leaves it locked for good in the child (whose hashing
    // and compression would then wait forever).
    {
        let mut guard = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((owner, size, pool)) = guard.as_ref() {
            if *owner == pid && *size == threads {
                return Some(Arc::clone(pool));
            }
            if *owner != pid {
                // Inherited from the parent through fork(): its threads do not exist here.
                // Dropping it would signal those threads, so it is leaked on purpose (once
                // per fork).
                if let Some((_, _, inherited)) = guard.take() {
                    std::mem::forget(inherited);
                }
            }
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("joblite-core-{i}"))
        .build()
        .ok()?;
    let built = Arc::new(built);
    let (chosen, replaced) = {
        let mut guard = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_ref() {
            // another thread built one meanwhile: use it, drop ours (its threads exit)
            Some((owner, size, pool)) if *owner == pid && *size == threads => {
                (Arc::clone(pool), None)
            }
            _ => (
                Arc::clone(&built),
                guard.replace((pid, threads, Arc::clone(&built))),
            ),
        }
    };
    // Same process, another limit: the old pool is dropped here, out of the lock (when the
    // last loop using it ends, its threads exit).
    drop(replaced);
    drop(built);
    Some(chosen)
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
    fn parse_limit_takes_positive_integers_only() {
        assert_eq!(parse_limit(" 4 "), Some(4));
        assert_eq!(parse_limit("0"), None);
        assert_eq!(parse_limit("-2"), None);
        assert_eq!(parse_limit("four"), None);
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn a_limit_sizes_the_pool_and_none_restores_the_default() {
        // The only test that changes the limit: tests run in parallel in one process.
        let before = set_limit(Some(3));
        let seen: std::collections::HashSet<String> = install(|| {
            (0..256)
                .into_par_iter()
                .map(|_| {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    std::thread::current().name().unwrap_or("").to_string()
                })
                .collect()
        });
        assert_eq!(limit(), 3);
        assert!(seen.len() <= 3, "{seen:?}");
        assert_eq!(install(rayon::current_num_threads), 3);
        assert_eq!(set_limit(before), Some(3));
        assert_eq!(limit(), before.unwrap_or_else(default_limit));
    }

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
