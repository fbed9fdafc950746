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
//!
//! Waking the runtime's thread costs tens of microseconds on a small VM, so
//! a caller that can set up its I/O itself (see `first_attempt`) hands the
//! runtime a [`Deferred`] task instead: it is spawned only when its waker
//! fires (its socket became readable) or its [`Alarm`] rings, so the thread
//! wakes once, when there is work for it. Alarms are kept by one sweeper task
//! that sleeps until the earliest; arming one that falls after the
//! sweeper's next look wakes nothing (only the first alarm after a quiet
//! spell, when the sweeper has nothing to look at, wakes it).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Wake, Waker};
use std::time::Instant;

use tokio::runtime::{Builder, Handle};
use tokio::sync::Notify;

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
    handle.spawn(sweep());
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

/// A task handed to the runtime only when its waker fires (see the module
/// documentation). Made with [`Deferred::new`]; its waker is
/// `Waker::from(deferred.clone())`; the task is given by [`Deferred::set_task`],
/// before or after the waker fires.
pub struct Deferred {
    state: Mutex<DeferredState>,
}

type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

enum DeferredState {
    /// Neither the task nor a wake yet.
    Waiting { alarm: Option<Alarm> },
    /// The task, waiting for a wake.
    Ready { task: Task, alarm: Option<Alarm> },
    /// Woken before the task was given: spawn it as soon as it is.
    Woken,
    /// Spawned; later wakes do nothing.
    Spawned,
}

impl Deferred {
    /// A deferred task with nothing set yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Deferred {
            state: Mutex::new(DeferredState::Waiting { alarm: None }),
        })
    }

    /// Also wakes it at `at`, whatever else happens: the bound on its wait.
    pub fn wake_at(self: &Arc<Self>, at: Instant) {
        let alarm = Alarm::new(at, Waker::from(self.clone()));
        let mut state = self.lock();
        match &mut *state {
            DeferredState::Waiting { alarm: slot } | DeferredState::Ready { alarm: slot, .. } => {
                *slot = Some(alarm);
            }
            // Already woken: the alarm is dropped (cancelled) on return.
            DeferredState::Woken | DeferredState::Spawned => {}
        }
    }

    /// Gives the task (once per `Deferred`): spawned now if the waker
    /// already fired.
    pub fn set_task<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task: Task = Box::pin(task);
        let mut state = self.lock();
        if let DeferredState::Waiting { alarm } = &mut *state {
            let alarm = alarm.take();
            *state = DeferredState::Ready { task, alarm };
        } else {
            // Woken already.
            *state = DeferredState::Spawned;
            drop(state);
            spawn_task(task);
        }
    }

    fn fire(&self) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, DeferredState::Spawned) {
            DeferredState::Waiting { alarm } => {
                *state = DeferredState::Woken;
                drop(state);
                drop(alarm);
            }
            DeferredState::Ready { task, alarm } => {
                drop(state);
                drop(alarm);
                spawn_task(task);
            }
            other @ (DeferredState::Woken | DeferredState::Spawned) => *state = other,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeferredState> {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // state is one of the values above either way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Deferred {
    fn wake(self: Arc<Self>) {
        self.fire();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fire();
    }
}

/// Spawns on the runtime (which exists: a deferred task is only made once
/// [`handle`] has succeeded). From the runtime's own thread, as when a
/// socket's readiness fires the waker, this queues the task locally.
fn spawn_task(task: Task) {
    if let Some(handle) = HANDLE.get() {
        handle.spawn(task);
    }
}

/// A waker to wake at an instant; cancelled when dropped.
pub struct Alarm {
    key: (Instant, u64),
}

struct Alarms {
    due: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// When the sweeper will next look; `None` while it waits for an alarm.
    sweeper_wakes_at: Option<Instant>,
    /// The latest instant of the alarms armed since the sweeper last looked,
    /// cancelled ones included.
    latest_armed: Option<Instant>,
}

static ALARMS: Mutex<Alarms> = Mutex::new(Alarms {
    due: BTreeMap::new(),
    next_id: 0,
    sweeper_wakes_at: None,
    latest_armed: None,
});
static SWEEP: Notify = Notify::const_new();

fn alarms() -> std::sync::MutexGuard<'static, Alarms> {
    ALARMS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Alarm {
    /// Wakes `waker` at `at` on the runtime. The sweeper is woken only if it
    /// would otherwise look later than `at`.
    pub fn new(at: Instant, waker: Waker) -> Alarm {
        let (key, earlier) = {
            let mut alarms = alarms();
            let key = (at, alarms.next_id);
            alarms.next_id += 1;
            alarms.due.insert(key, waker);
            alarms.latest_armed = alarms.latest_armed.max(Some(at));
            let earlier = alarms.sweeper_wakes_at.is_none_or(|t| at < t);
            if earlier {
                alarms.sweeper_wakes_at = Some(at);
            }
            (key, earlier)
        };
        if earlier {
            SWEEP.notify_one();
        }
        Alarm { key }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // Taken out under the lock, dropped after it (a waker's drop may
        // drop its task).
        let waker = alarms().due.remove(&self.key);
        drop(waker);
    }
}

/// The sweeper: wakes due alarms, then sleeps until the next one (or until
/// an earlier one is armed).
///
/// When no alarm is left, it still sleeps until the latest one armed since
/// it last looked, if that is still ahead: alarms are nearly all cancelled
/// (their reply came), and the next ones, armed with the same timeout, fall
/// after that instant, so arming them wakes nothing. Only after a quiet
/// spell does it wait for an alarm with no deadline, and the first alarm
/// after that wakes it.
async fn sweep() {
    loop {
        let (due, next) = {
            let mut alarms = alarms();
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = alarms.due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let latest_armed = alarms.latest_armed.take().filter(|&at| at > now);
            let next = alarms.due.keys().next().map(|(at, _)| *at).or(latest_armed);
            alarms.sweeper_wakes_at = next;
            (due, next)
        };
        for waker in due {
            waker.wake();
        }
        match next {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), SWEEP.notified()).await;
            }
            None => SWEEP.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A waker that reports each wake, with its instant, on a channel.
    struct Report(Mutex<mpsc::Sender<Instant>>);

    impl Wake for Report {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(Instant::now());
        }
    }

    fn reporter() -> (Waker, mpsc::Receiver<Instant>) {
        let (tx, rx) = mpsc::channel();
        (Waker::from(Arc::new(Report(Mutex::new(tx)))), rx)
    }

    #[test]
    fn an_alarm_wakes_at_its_instant_and_a_dropped_one_never_does() {
        handle().unwrap();
        let start = Instant::now();
        let (kept, kept_rx) = reporter();
        let (dropped, dropped_rx) = reporter();
        let _kept = Alarm::new(start + Duration::from_millis(60), kept);
        // Earlier than the kept one: the sweeper is woken for it, and must
        // then still honour the later one.
        drop(Alarm::new(start + Duration::from_millis(20), dropped));
        let rang = kept_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            rang >= start + Duration::from_millis(60),
            "not before its instant"
        );
        assert!(dropped_rx.recv_timeout(Duration::from_millis(100)).is_err());
        assert!(kept_rx.try_recv().is_err(), "once");
    }

    /// Runs a deferred task that reports the thread it ran on.
    async fn task(tx: mpsc::Sender<Option<String>>) {
        let _ = tx.send(std::thread::current().name().map(str::to_owned));
    }

    #[test]
    fn a_deferred_task_runs_once_on_the_runtime_whether_woken_before_or_after_it_is_given() {
        handle().unwrap();
        for woken_first in [false, true] {
            let (tx, rx) = mpsc::channel();
            let deferred = Deferred::new();
            let waker = Waker::from(deferred.clone());
            if woken_first {
                waker.wake_by_ref();
                deferred.set_task(task(tx));
            } else {
                deferred.set_task(task(tx));
                assert!(
                    rx.recv_timeout(Duration::from_millis(50)).is_err(),
                    "not before its wake"
                );
                waker.wake_by_ref();
            }
            waker.wake();
            let ran_on = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(ran_on.as_deref(), Some(THREAD_NAME));
            assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "once");
        }
    }

    #[test]
    fn a_deferred_task_never_woken_runs_at_its_alarm() {
        handle().unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let deferred = Deferred::new();
        deferred.wake_at(start + Duration::from_millis(40));
        deferred.set_task(task(tx));
        let ran_on = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(ran_on.as_deref(), Some(THREAD_NAME));
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
