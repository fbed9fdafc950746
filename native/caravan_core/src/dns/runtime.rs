//! The one tokio runtime Caravan owns.
//!
//! It starts on the first lookup and then lives as long as the process: a
//! current-thread runtime driven by one thread of its own, named
//! [`THREAD_NAME`]. DNS work is network I/O, so one thread carries thousands
//! of concurrent lookups, and no lookup ever gets a thread of its own. The
//! blocking pool is capped at one thread and nothing in Caravan uses it
//! (sockets are non-blocking, nameservers are addresses, never names).

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::runtime::{Builder, Handle};
use tokio::task::AbortHandle;

/// The name of the runtime's thread, as `ps -T` and `/proc/<pid>/task/*/comm` show it.
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
    let runtime = Builder::new_current_thread()
        .max_blocking_threads(1)
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

/// Runs `future` on the runtime; the handle aborts it.
pub fn spawn<F>(future: F) -> std::io::Result<AbortHandle>
where
    F: Future<Output = ()> + Send + 'static,
{
    Ok(handle()?.spawn(future).abort_handle())
}

/// True on the runtime's own thread.
pub fn on_runtime_thread() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
}
