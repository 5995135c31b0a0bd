//! The thread pool the kernels run on.
//!
//! One rayon pool, built lazily. Its size comes from `ALPHANET_FAST_NUM_THREADS`,
//! else `RAYON_NUM_THREADS`, else the number of CPUs, and can be changed with
//! [`set_num_threads`]; it never exceeds [`max_threads`]. The pool remembers
//! the process that built it: a child made by `fork` (torch DataLoader workers, multiprocessing, Dask
//! nannies) inherits the parent's pool object but none of its threads, so the
//! child builds a fresh pool instead of waiting forever on threads that do not
//! exist. The pool's two locks are taken by a `pthread_atfork` handler before
//! every fork and released after it on both sides, so a fork that happens while
//! another thread is looking the pool up cannot leave the child with a lock that
//! nobody will release. Results never depend on the pool size: kernels split
//! work at shape-determined boundaries.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

pub const THREADS_ENV: &str = "ALPHANET_FAST_NUM_THREADS";

struct PoolState {
    pid: u32,
    threads: usize,
    pool: Arc<ThreadPool>,
    /// Why the pool's size differs from a setting, until the binding reports it.
    note: Option<String>,
}

static POOL: Mutex<Option<PoolState>> = Mutex::new(None);
static REQUESTED: Mutex<Option<usize>> = Mutex::new(None);

/// Threads per available CPU at most: the kernels are compute- or
/// bandwidth-bound, so threads beyond the CPUs only add switching and stacks; a
/// few per CPU still leaves room to oversubscribe on purpose.
const THREADS_PER_CPU: usize = 4;

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads the pool starts: [`THREADS_PER_CPU`] x the CPUs this process
/// may use. A larger request (a typo such as `100000`) would otherwise spawn
/// threads until the machine stalls.
pub fn max_threads() -> usize {
    THREADS_PER_CPU * available_cpus()
}

/// The pool size and, when a setting had to be overridden, a sentence saying so.
/// `set_num_threads` wins, then `ALPHANET_FAST_NUM_THREADS`, then
/// `RAYON_NUM_THREADS`, else one thread per available CPU.
fn resolve_threads() -> (usize, Option<String>) {
    let cap = max_threads();
    if let Some(n) = *REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) {
        return (n.min(cap), None);
    }
    for var in [THREADS_ENV, "RAYON_NUM_THREADS"] {
        let Ok(text) = std::env::var(var) else {
            continue;
        };
        match text.trim().parse::<usize>() {
            Ok(0) => {}
            Ok(n) if n > cap => {
                let note = format!(
                    "{var}={n} is more threads than the {cap} allowed ({THREADS_PER_CPU} per \
                     available CPU, {} CPUs); using {cap}",
                    available_cpus()
                );
                return (cap, Some(note));
            }
            Ok(n) => return (n, None),
            Err(_) if text.trim().is_empty() => {}
            Err(_) => {
                let note = format!(
                    "{var}={text:?} is not a whole number of threads; using one per available CPU"
                );
                return (available_cpus(), Some(note));
            }
        }
    }
    (available_cpus(), None)
}

/// Holds the pool's locks across `fork` (Unix): taken in the forking thread just
/// before, released in the parent and in the child just after. Lock order as
/// everywhere else: `POOL`, then `REQUESTED`.
#[cfg(unix)]
mod fork_guard {
    use std::cell::RefCell;
    use std::sync::{MutexGuard, Once};

    use super::{PoolState, POOL, REQUESTED};

    type Held = (
        MutexGuard<'static, Option<PoolState>>,
        MutexGuard<'static, Option<usize>>,
    );

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    extern "C" fn before_fork() {
        let pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let requested = REQUESTED.lock().unwrap_or_else(|e| e.into_inner());
        HELD.with(|held| *held.borrow_mut() = Some((pool, requested)));
    }

    extern "C" fn after_fork() {
        // Dropping the guards unlocks; in the child this thread is the only one.
        HELD.with(|held| drop(held.borrow_mut().take()));
    }

    pub fn register() {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            // SAFETY: the handlers are plain functions that live as long as the
            // process; they only lock and unlock the pool's mutexes.
            unsafe {
                libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
            }
        });
    }
}

fn current_pool() -> Arc<ThreadPool> {
    #[cfg(unix)]
    fork_guard::register();
    let pid = std::process::id();
    let mut state = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = state.as_ref() {
        if s.pid == pid {
            return Arc::clone(&s.pool);
        }
    }
    if let Some(old) = state.take() {
        if old.pid != pid {
            // Inherited across fork: its worker threads do not exist here, and
            // dropping it would wait on them. Leak it on purpose.
            std::mem::forget(old);
        }
    }
    let (threads, note) = resolve_threads();
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("alphanet-fast-{i}"))
        .build()
        .or_else(|_| ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread pool can always be built");
    let pool = Arc::new(pool);
    *state = Some(PoolState {
        pid,
        threads: pool.current_num_threads(),
        pool: Arc::clone(&pool),
        note,
    });
    pool
}

/// Run `f` inside the kernels' pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    current_pool().install(f)
}

/// Number of threads the kernels use.
pub fn num_threads() -> usize {
    let pid = std::process::id();
    {
        let state = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = state.as_ref() {
            if s.pid == pid {
                return s.threads;
            }
        }
    }
    current_pool().current_num_threads()
}

/// The note left by the last pool build (a setting that was overridden), once.
pub fn take_note() -> Option<String> {
    let mut state = POOL.lock().unwrap_or_else(|e| e.into_inner());
    state.as_mut().and_then(|s| s.note.take())
}

/// Set the number of threads (0 restores the default; at most [`max_threads`]).
/// Takes effect at the next kernel call; calls already running keep their pool.
pub fn set_num_threads(n: usize) {
    let n = n.min(max_threads());
    *REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) = if n == 0 { None } else { Some(n) };
    let mut state = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = state.take() {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
}
