//! The task pool: the worker threads that run `Parallel(backend="threading")`'s tasks.
//!
//! Not to be confused with [`crate::core_threads`], the pool on which the core's own
//! data-parallel loops (hashing, compression, checksums) run. This one is a fixed number of
//! threads fed by one shared FIFO job queue; its size is the `n_jobs` the user asked for.
//!
//! Jobs carry a group tag so that one caller can withdraw the jobs it queued
//! (cancellation) without touching other callers' work. The worker loop is
//! supplied by the owner of the pool: the Python binding runs a loop that stays
//! attached to the interpreter and only releases the GIL while it waits here.

use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A job queue shared by the workers of one pool.
pub struct JobQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    jobs: VecDeque<(u64, T)>,
    closed: bool,
}

/// What [`JobQueue::try_pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPop<T> {
    /// A job and its group.
    Job(u64, T),
    /// No job queued, the queue still open.
    Empty,
    /// The queue was closed.
    Closed,
}

/// Returned when a job is pushed to a pool that was shut down.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the thread pool has been shut down")]
pub struct PoolClosed;

impl<T> Default for JobQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JobQueue<T> {
    /// An empty, open queue.
    pub fn new() -> Self {
        JobQueue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // A poisoned lock only means a thread panicked while holding it; the queue
        // itself (a VecDeque and a flag) is always left consistent, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues every job of `jobs` under `group`; returns how many were queued.
    pub fn push_many<I: IntoIterator<Item = T>>(
        &self,
        group: u64,
        jobs: I,
    ) -> Result<usize, PoolClosed> {
        let mut state = self.lock();
        if state.closed {
            return Err(PoolClosed);
        }
        let before = state.jobs.len();
        state.jobs.extend(jobs.into_iter().map(|job| (group, job)));
        let added = state.jobs.len() - before;
        drop(state);
        if added == 1 {
            self.ready.notify_one();
        } else if added > 1 {
            self.ready.notify_all();
        }
        Ok(added)
    }

    /// Queues one job under `group`.
    pub fn push(&self, group: u64, job: T) -> Result<(), PoolClosed> {
        self.push_many(group, std::iter::once(job)).map(|_| ())
    }

    /// Blocks until a job is available and takes it; `None` once the queue is closed.
    pub fn pop(&self) -> Option<(u64, T)> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Takes a queued job without waiting: [`TryPop::Empty`] when none is queued.
    pub fn try_pop(&self) -> TryPop<T> {
        let mut state = self.lock();
        if state.closed {
            return TryPop::Closed;
        }
        match state.jobs.pop_front() {
            Some((group, job)) => TryPop::Job(group, job),
            None => TryPop::Empty,
        }
    }

    /// Removes the queued (not yet started) jobs of `group` and hands them back.
    pub fn cancel_group(&self, group: u64) -> Vec<T> {
        let mut state = self.lock();
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(state.jobs.len());
        for (g, job) in state.jobs.drain(..) {
            if g == group {
                removed.push(job);
            } else {
                kept.push_back((g, job));
            }
        }
        state.jobs = kept;
        removed
    }

    /// Closes the queue: workers stop after their current job, pushes fail, and the
    /// jobs still queued are handed back unrun.
    pub fn close(&self) -> Vec<T> {
        let mut state = self.lock();
        state.closed = true;
        let left = state.jobs.drain(..).map(|(_, job)| job).collect();
        drop(state);
        self.ready.notify_all();
        left
    }

    /// Number of queued jobs not yet taken by a worker.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether no job is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`JobQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// The task pool: a fixed number of worker threads taking jobs of type `T` from one queue.
pub struct TaskPool<T> {
    queue: Arc<JobQueue<T>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    n_threads: usize,
}

/// A plain Rust job: any closure to run once on a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

impl<T: Send + 'static> TaskPool<T> {
    /// Starts `n_threads` threads named `name-<i>`, each running `worker` on the
    /// shared queue. `worker` must return once [`JobQueue::pop`] returns `None`.
    pub fn with_worker<W>(n_threads: usize, name: &str, worker: W) -> io::Result<Self>
    where
        W: Fn(&JobQueue<T>) + Send + Sync + 'static,
    {
        if n_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a thread pool needs at least one thread",
            ));
        }
        let queue = Arc::new(JobQueue::new());
        let worker = Arc::new(worker);
        let mut handles = Vec::with_capacity(n_threads);
        for i in 0..n_threads {
            let worker_queue = Arc::clone(&queue);
            let worker = Arc::clone(&worker);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&worker_queue));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(err) => {
                    // Do not leave the threads already started waiting forever.
                    queue.close();
                    for handle in handles {
                        let _ = handle.join();
                    }
                    return Err(err);
                }
            }
        }
        Ok(TaskPool {
            queue,
            handles: Mutex::new(handles),
            n_threads,
        })
    }

    /// A pool whose `n_threads` workers are started by its owner, not here: each one
    /// loops on [`JobQueue::pop`] (or [`JobQueue::try_pop`]) of [`TaskPool::queue`].
    /// The Python binding does this so that its workers are Python daemon threads,
    /// which the interpreter may abandon at exit while they run a task.
    pub fn without_threads(n_threads: usize) -> io::Result<Self> {
        if n_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a thread pool needs at least one thread",
            ));
        }
        Ok(TaskPool {
            queue: Arc::new(JobQueue::new()),
            handles: Mutex::new(Vec::new()),
            n_threads,
        })
    }

    /// Number of worker threads.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// The queue the workers take jobs from.
    pub fn queue(&self) -> &JobQueue<T> {
        &self.queue
    }

    /// Queues one job under `group`.
    pub fn submit(&self, group: u64, job: T) -> Result<(), PoolClosed> {
        self.queue.push(group, job)
    }

    /// Queues many jobs under `group` with one lock round-trip.
    pub fn submit_many<I: IntoIterator<Item = T>>(
        &self,
        group: u64,
        jobs: I,
    ) -> Result<usize, PoolClosed> {
        self.queue.push_many(group, jobs)
    }

    /// Withdraws the queued jobs of `group` and hands them back unrun.
    pub fn cancel_group(&self, group: u64) -> Vec<T> {
        self.queue.cancel_group(group)
    }

    /// Closes the queue and hands back the jobs that never started; workers stop
    /// after their current job. Call [`TaskPool::join`] to wait for them.
    pub fn close(&self) -> Vec<T> {
        self.queue.close()
    }

    /// Waits for every worker thread to end (call after [`TaskPool::close`]).
    pub fn join(&self) {
        let handles: Vec<_> = {
            let mut guard = self.handles.lock().unwrap_or_else(|e| e.into_inner());
            guard.drain(..).collect()
        };
        for handle in handles {
            // A worker that panicked has already stopped; nothing more to do for it.
            let _ = handle.join();
        }
    }
}

impl TaskPool<Job> {
    /// A pool running plain closures; a panicking job does not take its worker down.
    pub fn new(n_threads: usize) -> io::Result<Self> {
        Self::with_worker(n_threads, "joblite-task", |queue: &JobQueue<Job>| {
            while let Some((_, job)) = queue.pop() {
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })
    }
}

impl<T> Drop for TaskPool<T> {
    fn drop(&mut self) {
        // Never join here: the last owner may be one of the workers itself.
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_every_job_once() {
        let pool = TaskPool::new(3).expect("pool");
        let counter = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let jobs: Vec<Job> = (0..1000)
            .map(|i| {
                let counter = Arc::clone(&counter);
                let tx = tx.clone();
                Box::new(move || {
                    counter.fetch_add(i, Ordering::SeqCst);
                    tx.send(()).expect("send");
                }) as Job
            })
            .collect();
        assert_eq!(pool.submit_many(0, jobs), Ok(1000));
        for _ in 0..1000 {
            rx.recv_timeout(Duration::from_secs(10)).expect("job ran");
        }
        assert_eq!(counter.load(Ordering::SeqCst), (0..1000).sum::<usize>());
        pool.close();
        pool.join();
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(TaskPool::<Job>::new(0).is_err());
        assert!(TaskPool::<Job>::without_threads(0).is_err());
    }

    #[test]
    fn try_pop_reports_job_empty_and_closed() {
        let pool = TaskPool::<u32>::without_threads(2).expect("pool");
        assert_eq!(pool.n_threads(), 2);
        assert_eq!(pool.queue().try_pop(), TryPop::Empty);
        pool.submit(7, 1).expect("submit");
        pool.submit(8, 2).expect("submit");
        assert_eq!(pool.queue().try_pop(), TryPop::Job(7, 1));
        assert_eq!(pool.close(), vec![2]);
        assert_eq!(pool.queue().try_pop(), TryPop::Closed);
        assert_eq!(pool.queue().pop(), None);
        pool.join(); // no thread to wait for
    }

    #[test]
    fn cancel_group_removes_only_that_group() {
        let pool = TaskPool::new(1).expect("pool");
        // Block the only worker so that later jobs stay queued.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.submit(
            0,
            Box::new(move || {
                started_tx.send(()).expect("send");
                let _ = release_rx.recv();
            }),
        )
        .expect("submit");
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("started");
        let ran = Arc::new(AtomicUsize::new(0));
        for group in [1, 2, 1, 2, 1] {
            let ran = Arc::clone(&ran);
            pool.submit(
                group,
                Box::new(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .expect("submit");
        }
        assert_eq!(pool.cancel_group(1).len(), 3);
        assert_eq!(pool.queue().len(), 2);
        release_tx.send(()).expect("release");
        for _ in 0..1000 {
            if ran.load(Ordering::SeqCst) == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        pool.close();
        pool.join();
    }

    #[test]
    fn closed_pool_refuses_jobs_and_returns_pending() {
        let pool = TaskPool::new(1).expect("pool");
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.submit(
            0,
            Box::new(move || {
                started_tx.send(()).expect("send");
                let _ = release_rx.recv();
            }),
        )
        .expect("submit");
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("started");
        pool.submit(0, Box::new(|| {})).expect("submit");
        assert_eq!(pool.close().len(), 1);
        assert_eq!(pool.submit(0, Box::new(|| {})), Err(PoolClosed));
        release_tx.send(()).expect("release");
        pool.join();
        assert!(pool.queue().is_closed());
    }

    #[test]
    fn panicking_job_keeps_worker_alive() {
        let pool = TaskPool::new(1).expect("pool");
        let (tx, rx) = mpsc::channel();
        pool.submit(0, Box::new(|| panic!("boom"))).expect("submit");
        pool.submit(0, Box::new(move || tx.send(7).expect("send")))
            .expect("submit");
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
        pool.close();
        pool.join();
    }
}
