//! What keeps the NIF safe, shown on the core side: a panic on Caravan's
//! runtime thread still answers the caller exactly once (the `Reply` drop
//! guard), from the runtime thread, and the runtime carries on afterwards.

use std::sync::mpsc;
use std::time::Duration;

use caravan_core::dns::lookup::Reply;
use caravan_core::dns::{runtime, Answer};

fn thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// Threads of this process named like the runtime's.
fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == runtime::THREAD_NAME)
        .count()
}

#[test]
fn a_panic_on_the_runtime_thread_still_answers_exactly_once() {
    let (tx, rx) = mpsc::channel();
    // Exactly what spawn_lookup does, with a task that panics mid-lookup.
    let reply = Reply::new("likes.service.consul SRV", move |result| {
        tx.send((thread_name(), result.clone())).unwrap();
    });
    runtime::spawn(async move {
        let _reply = reply;
        tokio::task::yield_now().await;
        panic!("a bug in the lookup");
    })
    .unwrap();

    let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(thread.as_deref(), Some(runtime::THREAD_NAME));
    let err = result.unwrap_err();
    assert_eq!(err.reason(), "internal");
    assert!(err.to_string().contains("likes.service.consul"), "{err}");
    assert!(err.to_string().contains("a panic"), "{err}");
    // Exactly once: the sender was consumed, so the channel is now closed.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(200)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));

    // The runtime survives the panic: same single thread, still answering.
    let (tx, rx) = mpsc::channel();
    let reply = Reply::new("after.service.consul SRV", move |result| {
        tx.send((thread_name(), result.clone())).unwrap();
    });
    runtime::spawn(async move { reply.send(&Ok(Answer::empty())) }).unwrap();
    let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(thread.as_deref(), Some(runtime::THREAD_NAME));
    assert_eq!(result, Ok(Answer::empty()));
    assert_eq!(runtime_threads(), 1);
}
