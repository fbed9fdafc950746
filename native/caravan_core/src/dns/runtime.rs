//! The one tokio runtime Caravan owns.
//!
//! It starts on the first lookup and then lives as long as the process. It
//! is a current-thread runtime driven by [`WORKER_THREADS`] thread of its
//! own, named [`THREAD_NAME`]; DNS work is network I/O, so one thread carries
//! thousands of concurrent lookups. The blocking pool is capped at
//! [`MAX_BLOCKING_THREADS`] and nothing in Caravan uses it (sockets are
//! non-blocking, nameservers are addresses, never names), so in practice the
//! runtime adds exactly one OS thread. No lookup ever gets a thread of its
//! own.

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::runtime::{Builder, Handle};

/// Threads driving the runtime: all lookups run on this one.
pub const WORKER_THREADS: usize = 1;
/// The blocking pool's cap (unused by Caravan; bounded all the same).
pub const MAX_BLOCKING_THREADS: usize = 1;
/// The name of the runtime's threads, as `ps -T` and `/proc/<pid>/task/*/comm` show it.
pub const THREAD_NAME: &str = "caravan-dns";

static HANDLE: OnceLock<Handle> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The runtime's handle, starting the runtime on first use.
///
/// Fails only if the OS refuses to create the thread; a later call tries again.
pub fn handle() -> std::io::Result<&'static Handle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    // A current-thread runtime driven by one thread of its own, rather than
    // a multi-thread runtime with one worker: the same single thread, but a
    // task woken on it is queued locally, with no eventfd write and no
    // extra trip through epoll (three of each per lookup before).
    let runtime = Builder::new_current_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name(THREAD_NAME)
        .enable_io()
        .enable_time()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(HANDLE.get_or_init(|| handle))
}
/// True once the runtime has started.
pub fn started() -> bool {
    HANDLE.get().is_some()
}

/// Runs `future` on the runtime.
pub fn spawn<F>(future: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    handle()?.spawn(future);
    Ok(())
}
