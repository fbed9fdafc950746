//! Running a lookup: attempts, the TCP retry, address follow-ups, and
//! answering exactly once.
//!
//! [`lookup`] sends the SRV query ([`exchange`](super::exchange)) and shapes
//! the answer ([`answer::shape_message`]). Attempt `n` goes to nameserver
//! `n mod count`, `timeout / attempts` after the previous one, or at once
//! when the previous one failed (SERVFAIL, REFUSED, a closed port). Every
//! attempt keeps listening until the lookup ends, so a late reply to any of
//! them is taken; `attempts` is the number of queries sent. A UDP answer
//! with TC set goes on over TCP, within the same attempt. NXDOMAIN and "no
//! records" are an empty answer; anything else that ends without an answer
//! is a [`LookupError`]: the last attempt's failure, or a timeout when none
//! failed. The whole lookup is bounded by `timeout`.
//!
//! At most [`MAX_IN_FLIGHT`] lookups to the same nameservers talk to the
//! network at once; the others wait their turn within their own timeout.
//! Lookups to other nameservers have turns of their own, so a dead
//! nameserver holds up only the lookups that ask it.
//!
//! [`spawn_lookup`] runs a lookup on Caravan's runtime and delivers its
//! result exactly once, on the runtime's thread, unless the [`Lookup`]
//! handle it returns is cancelled or dropped first: that aborts the task at
//! once, freeing its turn and its sockets, and nothing is delivered.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use futures_util::stream::{self, FuturesUnordered, StreamExt};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio::time::{sleep_until, timeout_at};

use super::answer::{self, address_of, Answer};
use super::error::LookupError;
use super::exchange::{Failure, Outgoing, Received};
use super::options::{LookupOptions, Nameservers, Query, Transport};
use super::runtime;

/// Lookups to one set of nameservers allowed on the network at once. Bounds
/// file descriptors and memory under a burst: a lookup holds one socket per
/// attempt in flight (and a 4 KiB buffer each), more only while it looks up
/// addresses (see `ADDRESS_CONCURRENCY`).
pub const MAX_IN_FLIGHT: usize = 64;

/// Targets whose addresses (A and AAAA) are looked up at once for one SRV
/// answer. With the SRV query's, a lookup holds at most
/// `attempts * (1 + 2 * ADDRESS_CONCURRENCY)` sockets at a time.
const ADDRESS_CONCURRENCY: usize = 4;

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The turns of each set of nameservers in use. A set leaves when no lookup
/// holds or awaits one of its turns (each holds a clone of its `Arc`).
static TURNS: Mutex<Vec<(Vec<SocketAddr>, Arc<Semaphore>)>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update; the data is
    // whole either way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The turns for lookups to `servers`.
fn turns(servers: &[SocketAddr]) -> Arc<Semaphore> {
    let mut all = lock(&TURNS);
    all.retain(|(_, turns)| Arc::strong_count(turns) > 1);
    if let Some((_, turns)) = all.iter().find(|(set, _)| set == servers) {
        return turns.clone();
    }
    let turns = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    all.push((servers.to_vec(), turns.clone()));
    turns
}

/// Looks up the SRV records of `query` and shapes them (see the module
/// documentation).
pub async fn lookup(query: &Query, options: &LookupOptions) -> Result<Answer, LookupError> {
    let deadline = Instant::now() + options.timeout;
    let plan = Plan::new(query, options)?;
    // The semaphore is never closed, so a turn always comes, in time or not.
    let Ok(_turn) = timeout_at(deadline.into(), turns(&plan.servers).acquire_owned()).await else {
        return Err(plan.timeout(&format!("{} SRV", query.as_str())));
    };
    let reply = plan.ask(query.as_str(), RecordType::SRV, deadline).await?;
    let mut answer = answer::shape_message(&reply.message, options.max_records);
    answer.complete &= reply.complete();
    if options.resolve_addresses {
        plan.resolve_addresses(&mut answer, deadline).await;
    }
    Ok(answer)
}

/// One lookup, with its nameservers read and described.
struct Plan<'a> {
    options: &'a LookupOptions,
    servers: Vec<SocketAddr>,
    described: String,
}

impl<'a> Plan<'a> {
    fn new(query: &Query, options: &'a LookupOptions) -> Result<Self, LookupError> {
        let (servers, source) = match &options.nameservers {
            Nameservers::Explicit(list) => (list.clone(), ""),
            Nameservers::System => (system_nameservers(query)?, " from /etc/resolv.conf"),
        };
        let list: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
        let described = format!(
            "{}{source} ({})",
            list.join(", "),
            options.transport.describe()
        );
        Ok(Plan {
            options,
            servers,
            described,
        })
    }

    /// Asks for `record_type` of `host` (no trailing dot) until an answer
    /// comes, every attempt has failed, or `deadline` passes.
    async fn ask(
        &self,
        host: &str,
        record_type: RecordType,
        deadline: Instant,
    ) -> Result<Received, LookupError> {
        let question = format!("{host} {record_type}");
        let name = Name::from_ascii(format!("{host}."))
            .map_err(|e| self.internal(&question, &format!("could not encode the name: {e}")))?;
        let mut pending = FuturesUnordered::new();
        let mut sent = 0;
        let mut next_at = Instant::now();
        let mut failed = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if sent < self.options.attempts && now >= next_at {
                let server = self.servers[usize::from(sent) % self.servers.len()];
                pending.push(self.attempt(server, &name, record_type, &question));
                sent += 1;
                next_at = Instant::now() + self.options.attempt_timeout();
            }
            let more = sent < self.options.attempts;
            if !more && pending.is_empty() {
                break;
            }
            let wake_at = if more {
                next_at.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                Some(result) = pending.next() => match result {
                    Ok(reply) => return Ok(reply),
                    Err(e) => {
                        failed = Some(e);
                        next_at = Instant::now();
                    }
                },
                () = sleep_until(wake_at.into()) => if Instant::now() >= deadline {
                    break;
                },
            }
        }
        Err(failed.unwrap_or_else(|| self.timeout(&question)))
    }

    /// One attempt: the query to `server` over the configured transport,
    /// and over TCP after a truncated UDP answer.
    async fn attempt(
        &self,
        server: SocketAddr,
        name: &Name,
        record_type: RecordType,
        question: &str,
    ) -> Result<Received, LookupError> {
        let outgoing = Outgoing::new(name, record_type)
            .map_err(|e| self.internal(question, &format!("could not build the query: {e}")))?;
        let first = match self.options.transport {
            Transport::Udp => outgoing.udp(server).await,
            Transport::Tcp => outgoing.tcp(server).await,
        };
        let reply = match first {
            // The answer did not fit UDP: the same attempt goes on over TCP,
            // and a TCP that cannot be reached ends it in the truncation.
            Err(Failure::Truncated) => match outgoing.tcp(server).await {
                Err(Failure::Io(_)) => Err(Failure::Malformed(
                    "it came back truncated over UDP and no whole answer came over TCP \
                     (check that the nameserver takes TCP)"
                        .into(),
                )),
                other => other,
            },
            other => other,
        };
        let reply = self.settle(reply, question)?;
        if reply.message.metadata.truncation {
            return Err(self.malformed(question, "it was truncated even over TCP"));
        }
        Ok(reply)
    }

    /// A reply with a final response code (NOERROR or NXDOMAIN), or the
    /// error that it or its failure means.
    fn settle(
        &self,
        reply: Result<Received, Failure>,
        question: &str,
    ) -> Result<Received, LookupError> {
        let (question, servers) = (question.to_owned(), self.described.clone());
        let reply = match reply {
            Ok(reply) => reply,
            Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(self.timeout(&question))
            }
            Err(Failure::Io(e)) => {
                return Err(LookupError::Unreachable {
                    question,
                    servers,
                    detail: e.to_string(),
                })
            }
            Err(Failure::Malformed(detail)) => return Err(self.malformed(&question, &detail)),
            Err(Failure::Local(e)) => {
                return Err(self.internal(&question, &format!("could not open a socket: {e}")))
            }
            // Only UDP replies are judged truncated, and `attempt` retries
            // those over TCP.
            Err(Failure::Truncated) => return Err(self.malformed(&question, "it was truncated")),
        };
        match reply.message.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(reply),
            ResponseCode::Refused => Err(LookupError::Refused { question, servers }),
            ResponseCode::ServFail => Err(LookupError::ServFail { question, servers }),
            code => Err(LookupError::ServerError {
                question,
                servers,
                rcode: code.to_string(),
            }),
        }
    }

    /// Looks up A and AAAA for the targets that have no address yet, within
    /// `deadline`. A target whose lookups find no address and at least one
    /// of which failed is marked `unresolved`; NXDOMAIN or no records means
    /// it has none.
    async fn resolve_addresses(&self, answer: &mut Answer, deadline: Instant) {
        let wanted: Vec<(usize, String)> = answer
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.addresses.is_empty())
            .map(|(i, t)| (i, t.host.clone()))
            .collect();
        let found: Vec<(usize, Result<Vec<IpAddr>, LookupError>)> = stream::iter(wanted)
            .map(|(i, host)| async move { (i, self.addresses(&host, deadline).await) })
            .buffer_unordered(ADDRESS_CONCURRENCY)
            .collect()
            .await;
        for (i, found) in found {
            match found {
                Ok(addresses) => answer::set_addresses(&mut answer.targets[i], addresses),
                Err(e) => {
                    answer.targets[i].unresolved = true;
                    answer.unresolved += 1;
                    answer.unresolved_example.get_or_insert(e.to_string());
                }
            }
        }
    }

    async fn addresses(&self, host: &str, deadline: Instant) -> Result<Vec<IpAddr>, LookupError> {
        let (v4, v6) = tokio::join!(
            self.ask(host, RecordType::A, deadline),
            self.ask(host, RecordType::AAAA, deadline)
        );
        let mut addresses = Vec::new();
        let mut failed = None;
        for result in [v4, v6] {
            match result {
                Ok(reply) => addresses.extend(
                    reply
                        .message
                        .answers
                        .iter()
                        .filter_map(|r| address_of(&r.data)),
                ),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) if addresses.is_empty() => Err(e),
            _ => Ok(addresses),
        }
    }

    fn timeout(&self, question: &str) -> LookupError {
        LookupError::Timeout {
            question: question.to_owned(),
            servers: self.described.clone(),
            timeout: self.options.timeout,
            attempts: self.options.attempts,
        }
    }

    fn malformed(&self, question: &str, detail: &str) -> LookupError {
        LookupError::Malformed {
            question: question.to_owned(),
            servers: self.described.clone(),
            detail: detail.to_owned(),
        }
    }

    fn internal(&self, question: &str, detail: &str) -> LookupError {
        LookupError::Internal {
            question: question.to_owned(),
            detail: format!("{detail} (asking {})", self.described),
        }
    }
}

/// The nameservers of `/etc/resolv.conf`, read at each lookup so that a
/// changed file is honoured.
fn system_nameservers(query: &Query) -> Result<Vec<SocketAddr>, LookupError> {
    let bytes =
        std::fs::read(RESOLV_CONF).map_err(|e| format!("could not read {RESOLV_CONF} ({e})"));
    bytes
        .and_then(resolv_conf_nameservers)
        .map_err(|detail| LookupError::NoNameservers {
            question: format!("{} SRV", query.as_str()),
            detail,
        })
}

/// The nameservers a `resolv.conf` names, in order, without repeats.
fn resolv_conf_nameservers(bytes: Vec<u8>) -> Result<Vec<SocketAddr>, String> {
    let config = resolv_conf::Config::parse(&bytes)
        .map_err(|e| format!("could not parse {RESOLV_CONF} ({e})"))?;
    let mut servers: Vec<SocketAddr> = Vec::new();
    for ns in config.nameservers {
        // resolv.conf names addresses only: port 53, as every resolver reads it.
        let addr = SocketAddr::new(ns.into(), 53);
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err(format!("{RESOLV_CONF} names no nameserver"));
    }
    Ok(servers)
}

/// What receives a lookup's result.
type Deliver = Box<dyn FnOnce(&Result<Answer, LookupError>) + Send>;

/// The one delivery of a lookup, taken by whichever comes first: its
/// result, its task's end, or a cancel.
type Outbox = Arc<Mutex<Option<Deliver>>>;

/// Runs [`lookup`] on Caravan's runtime and calls `deliver` with its result,
/// exactly once, on the runtime's thread (never on the caller's), unless
/// the returned [`Lookup`] is cancelled or dropped first.
///
/// If the task ends without answering (a panic), `deliver` gets
/// [`LookupError::Internal`]. If the runtime cannot start, this returns the
/// error and `deliver` is never called.
pub fn spawn_lookup<F>(
    query: Query,
    options: LookupOptions,
    deliver: F,
) -> Result<Lookup, LookupError>
where
    F: FnOnce(&Result<Answer, LookupError>) + Send + 'static,
{
    let question = format!("{} SRV", query.as_str());
    let reply = Reply::new(&question, deliver);
    let outbox = reply.outbox.clone();
    let task = runtime::spawn(async move {
        let result = lookup(&query, &options).await;
        reply.send(&result);
    })
    .map_err(|e| LookupError::Internal {
        question,
        detail: format!("Caravan's DNS runtime could not start: {e}"),
    })?;
    Ok(Lookup { outbox, task })
}

/// A lookup in flight. [`Lookup::cancel`], or dropping it, aborts the
/// lookup at once; its result is then never delivered.
pub struct Lookup {
    outbox: Outbox,
    task: AbortHandle,
}

impl Lookup {
    /// Aborts the lookup. Once this returns, its result is either delivered
    /// already or never will be: the delivery runs under the same lock,
    /// which is contended only when a cancel meets the delivery itself.
    pub fn cancel(&self) {
        let deliver = lock(&self.outbox).take();
        drop(deliver);
        self.task.abort();
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The task's side of a lookup's one delivery: [`Reply::send`], or on drop
/// (see below).
pub struct Reply {
    outbox: Outbox,
    question: String,
}

impl Reply {
    /// A reply to the lookup asking `question` (as in `likes.service.consul SRV`).
    pub fn new<F>(question: &str, deliver: F) -> Self
    where
        F: FnOnce(&Result<Answer, LookupError>) + Send + 'static,
    {
        Reply {
            outbox: Arc::new(Mutex::new(Some(Box::new(deliver)))),
            question: question.to_owned(),
        }
    }

    /// Delivers `result`; later calls and the drop do nothing.
    pub fn send(&self, result: &Result<Answer, LookupError>) {
        let mut outbox = lock(&self.outbox);
        if let Some(deliver) = outbox.take() {
            deliver(result);
        }
    }
}

impl Drop for Reply {
    /// Unsent: the task panicked (or the runtime dropped it). The closure
    /// may only run on the runtime's thread; the runtime drops a task
    /// elsewhere only while the process exits, and then nobody waits.
    fn drop(&mut self) {
        if runtime::on_runtime_thread() {
            let question = std::mem::take(&mut self.question);
            self.send(&Err(LookupError::Internal {
                question,
                detail: "the lookup task stopped before answering (a panic)".into(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order_without_repeats() {
        let conf = b"# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 10.0.0.2\noptions timeout:1\n";
        let servers = resolv_conf_nameservers(conf.to_vec()).unwrap();
        let shown: Vec<String> = servers.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.2:53", "[::1]:53"]);
    }

    #[test]
    fn a_resolv_conf_without_nameservers_is_an_error() {
        let err = resolv_conf_nameservers(b"search example.com\n".to_vec()).unwrap_err();
        assert!(err.contains("no nameserver"), "{err}");
    }

    #[test]
    fn unused_sets_of_nameservers_give_their_turns_back() {
        let set = ["192.0.2.1:53".parse().unwrap()];
        let held = turns(&set);
        assert!(Arc::ptr_eq(&held, &turns(&set)), "one set, one semaphore");
        drop(held);
        let _other = turns(&["192.0.2.2:53".parse().unwrap()]);
        assert!(lock(&TURNS).iter().all(|(s, _)| s != &set));
    }
}
