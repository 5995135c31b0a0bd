//! The thread pool the kernels run on.
//!
//! One rayon pool, built lazily. Its size comes from `ALPHANET_FAST_NUM_THREADS`,
//! else rayon's own default (`RAYON_NUM_THREADS`, else the number of CPUs), and can
//! be changed with [`set_num_threads`]. The pool remembers the process that built
//! it: a child made by `fork` (torch DataLoader workers, multiprocessing, Dask
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
}

static POOL: Mutex<Option<PoolState>> = Mutex::new(None);
static REQUESTED: Mutex<Option<usize>> = Mutex::new(None);

fn requested_threads() -> usize {
    if let Some(n) = *REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) {
        return n;
    }
    std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
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
    let pool = ThreadPoolBuilder::new()
        .num_threads(requested_threads())
        .thread_name(|i| format!("alphanet-fast-{i}"))
        .build()
        .or_else(|_| ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread pool can always be built");
    let pool = Arc::new(pool);
    *state = Some(PoolState {
        pid,
        threads: pool.current_num_threads(),
        pool: Arc::clone(&pool),
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

/// Set the number of threads (0 restores the default). Takes effect at the next
/// kernel call; calls already running keep their pool.
pub fn set_num_threads(n: usize) {
    *REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) = if n == 0 { None } else { Some(n) };
    let mut state = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = state.take() {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
}
