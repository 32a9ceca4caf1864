//! The threads that run the model's kernels: the calling thread plus `threads - 1` helpers that
//! spin between jobs. A decode step is ~300 short parallel kernels with a few microseconds of
//! sequential work between them; rayon's workers went to sleep between them and were woken
//! through the kernel many times per token, each wake a context switch (figures in
//! docs/PERFORMANCE.md). Like llama.cpp's pool, ours keeps spinning for a while ([`SPIN`])
//! after a job and only then parks.
//!
//! One job at a time: a second thread that asks while a job runs does its work alone (tests run
//! in parallel threads; the model never nests jobs).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks: longer than the gaps inside a decode step,
/// short enough that an idle process stops using the CPU at once (longer spins measured no
/// faster; docs/PERFORMANCE.md).
const SPIN: Duration = Duration::from_micros(200);

/// Runs `f(0)`, ..., `f(n - 1)` on the pool (each index once, in no particular order) and
/// returns when all have finished. A panic in any task is raised again here.
pub fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    global().run(n, f)
}

/// Runs `f(i, chunk)` for each `size`-long chunk of `data` (the last may be shorter) on the
/// pool, as `run` does.
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    size: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    assert!(size > 0, "chunks of size 0");
    let len = data.len();
    let base = SendPtr(data.as_mut_ptr());
    run(len.div_ceil(size), &|i| {
        let start = i * size;
        let end = (start + size).min(len);
        // SAFETY: every index `i` runs once, so the chunks handed out are disjoint parts of
        // `data`, which stays mutably borrowed until `run` returns.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(i, chunk);
    });
}

/// A raw pointer that may cross threads: the users above hand out disjoint parts.
struct SendPtr<T>(*mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: only used to hand disjoint chunks of one slice to the pool's threads.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// Sets the pool's size; effective only before the first job (later calls return false).
pub fn set_threads(n: usize) -> bool {
    let mut set = false;
    POOL.get_or_init(|| {
        set = true;
        Pool::new(n.max(1))
    });
    set
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn global() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1);
        Pool::new(n)
    })
}

/// Runs of consecutive tasks claimed at once, per thread: a thread works through neighbouring
/// tasks (neighbouring weight rows, read as one stream the prefetcher follows) and the load
/// still balances when one thread is late or slow.
const RUNS_PER_THREAD: usize = 4;

/// One published job: the tasks, the next unclaimed run of them, and whether one panicked.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    run: usize,
    next: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Claims and runs runs of tasks until none are left.
    fn work(&self) {
        loop {
            let first = self.next.fetch_add(1, SeqCst).saturating_mul(self.run);
            if first >= self.n {
                return;
            }
            for i in first..(first + self.run).min(self.n) {
                if catch_unwind(AssertUnwindSafe(|| (self.f)(i))).is_err() {
                    self.panicked.store(true, SeqCst);
                }
            }
        }
    }
}

struct Shared {
    /// The job being run, or null. Helpers read it only between `active += 1` and
    /// `active -= 1`; the caller nulls it and then waits for `active == 0` before the job goes
    /// out of scope, so a helper never sees a job that no longer exists.
    job: AtomicPtr<Job<'static>>,
    /// Helpers inside a job.
    active: AtomicUsize,
    /// Incremented for every job.
    epoch: AtomicUsize,
    /// Helpers parked on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    /// Held while a job runs.
    busy: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            active: AtomicUsize::new(0),
            epoch: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut started = 1;
        for i in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gen-worker-{i}"))
                .spawn(move || helper(&s));
            // Without a thread the pool is smaller, not broken.
            if spawned.is_ok() {
                started += 1;
            }
        }
        Self {
            threads: started,
            shared,
            busy: Mutex::new(()),
        }
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let guard = if n > 1 && self.threads > 1 {
            self.busy.try_lock().ok()
        } else {
            None
        };
        let job = Job {
            f,
            n,
            run: n.div_ceil(RUNS_PER_THREAD * self.threads).max(1),
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        if guard.is_some() {
            let s = &self.shared;
            // SAFETY: the pointer is only dereferenced by helpers between `active += 1` and
            // `active -= 1` while it is non-null; it is nulled and `active` drained below,
            // before `job` goes out of scope. The lifetime is erased for the shared slot only.
            let ptr = &job as *const Job<'_> as *mut Job<'static>;
            s.job.store(ptr, SeqCst);
            s.epoch.fetch_add(1, SeqCst);
            if s.sleeping.load(SeqCst) > 0 {
                let _lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.wake.notify_all();
            }
            job.work();
            s.job.store(std::ptr::null_mut(), SeqCst);
            while s.active.load(SeqCst) > 0 {
                std::hint::spin_loop();
            }
        } else {
            job.work();
        }
        drop(guard);
        if job.panicked.load(SeqCst) {
            resume_unwind(Box::new("a parallel task panicked"));
        }
    }
}

fn helper(s: &Shared) {
    let mut seen = s.epoch.load(SeqCst);
    loop {
        // Spin for the next job, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(SeqCst) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                let mut lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleeping.fetch_add(1, SeqCst);
                while s.epoch.load(SeqCst) == seen {
                    lock = s.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
                }
                s.sleeping.fetch_sub(1, SeqCst);
                break;
            }
        }
        seen = s.epoch.load(SeqCst);
        s.active.fetch_add(1, SeqCst);
        let ptr = s.job.load(SeqCst);
        if !ptr.is_null() {
            // SAFETY: see `Shared::job`: non-null while we are counted in `active`.
            unsafe { (*ptr).work() };
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        for n in [0, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            run(n, &|i| {
                hits[i].fetch_add(1, SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "n={n}");
        }
    }

    #[test]
    fn concurrent_callers_each_finish() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..200 {
                        run(16, &|_| {
                            total.fetch_add(1, SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(SeqCst), 4 * 200 * 16);
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let r = catch_unwind(|| run(8, &|i| assert!(i != 5, "task 5")));
        assert!(r.is_err());
        // The pool still works afterwards.
        let count = AtomicUsize::new(0);
        run(8, &|_| {
            count.fetch_add(1, SeqCst);
        });
        assert_eq!(count.load(SeqCst), 8);
    }
}
