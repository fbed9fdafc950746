//! Running an SRV lookup with hickory-resolver, and answering exactly once.
//!
//! [`lookup`] asks the nameservers, turns hickory's errors into a
//! [`LookupError`] (NXDOMAIN and "no records" are an empty success), and
//! hands the answer to [`answer::shape_message`].
//! [`spawn_lookup`] runs it on Caravan's runtime and guarantees that its
//! callback runs exactly once, on a runtime thread, whatever happens.
//!
//! The SRV query goes through hickory's name server pool (with its retries,
//! UDP-then-TCP on truncation) without the resolver's answer-cache layer;
//! a full resolver is kept only for the optional A/AAAA follow-ups. Both are
//! built once per set of nameservers and options and reused (at most
//! `MAX_RESOLVERS`, 8, kept), so a TCP connection survives between polls. No
//! answer is ever cached. At most [`MAX_IN_FLIGHT`] lookups talk to the
//! network at once; the others wait their turn within their own timeout.
//!
//! [`spawn_lookup`] sends a lookup's first UDP query from the caller's
//! thread when it can (one nameserver, UDP, a turn free) and hands the
//! runtime a task that its reply wakes (see [`first_attempt`]), so the
//! runtime's thread wakes once per lookup instead of twice. Any answer that
//! attempt cannot settle goes on through hickory as above.
//!
//! [`spawn_lookup`] also joins identical lookups: one started while an
//! identical one (same query, same options) is in flight waits for that
//! one's result instead of asking and shaping the same answer again, as
//! hickory already does for the network query alone. A finished lookup is
//! never joined, so this caches nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{self, StreamExt};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::RetryDnsHandle;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::op::{DnsRequestOptions, Message, Query as DnsQuery};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, Resolver, TlsConfig};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::answer::{self, address_of, Answer};
use super::connection::{Provider, MAX_ACTIVE_REQUESTS};
use super::error::LookupError;
use super::first_attempt;
use super::options::{LookupOptions, Nameservers, Query, Transport, EDNS_PAYLOAD};
use super::runtime::{self, Deferred};

/// Lookups allowed on the network at once (each holds a resolver and at most
/// a couple of sockets); the rest queue, small, within their own timeout.
/// Bounds file descriptors and memory under a burst: 2,000 concurrent
/// lookups leave the process about 5 MiB larger, not 12.
pub const MAX_IN_FLIGHT: usize = 64;

/// Address lookups (A and AAAA) run at once for one SRV answer.
const ADDRESS_CONCURRENCY: usize = 16;

const RESOLV_CONF: &str = "/etc/resolv.conf";

static IN_FLIGHT: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);

/// Resolvers kept for reuse, most recently used last. Building one per
/// lookup cost a new connection pool each time: a fresh TCP connection for
/// every large answer, and setup work on every small one. A strategy polls
/// with the same nameservers and options forever, so a handful is plenty.
static RESOLVERS: Mutex<Vec<(ResolverKey, Resolvers)>> = Mutex::new(Vec::new());
const MAX_RESOLVERS: usize = 8;

/// What a resolver is built from: two lookups with equal keys share one.
#[derive(Clone, PartialEq, Eq)]
struct ResolverKey {
    servers: Vec<SocketAddr>,
    transport: Transport,
    attempt_timeout: Duration,
    attempts: u8,
}

type TokioResolver = Resolver<Provider>;

/// hickory's name server pool with its retries: what `Resolver` wraps, minus
/// the answer cache layer, which copies and sorts every record of every
/// answer even when it caches nothing (the largest cost of a 500-record
/// answer in a profile).
type SrvClient = RetryDnsHandle<NameServerPool<Provider>>;

/// The SRV client, and a full resolver for the rare A/AAAA follow-ups.
#[derive(Clone)]
struct Resolvers {
    srv: SrvClient,
    resolver: TokioResolver,
}

/// Looks up the SRV records of `query` and shapes them.
///
/// The whole lookup (waiting for a turn, every attempt, the TCP retry,
/// address lookups) is bounded by `options.timeout`.
pub async fn lookup(query: &Query, options: &LookupOptions) -> Result<Answer, LookupError> {
    lookup_after(query, options, None, Instant::now()).await
}

/// A first UDP attempt already sent from the caller's thread, with the turn
/// it holds (see [`first_attempt`]).
struct Started {
    sent: first_attempt::Sent,
    turn: SemaphorePermit<'static>,
}

/// [`lookup`] begun at `since`, continuing from a first attempt when one
/// was `started`.
async fn lookup_after(
    query: &Query,
    options: &LookupOptions,
    started: Option<Started>,
    since: Instant,
) -> Result<Answer, LookupError> {
    let plan = Plan::new(query, options)?;
    let deadline = since + options.timeout;
    let run = async {
        let (_turn, sent) = match started {
            Some(Started { sent, turn }) => (turn, Some(sent)),
            None => {
                let turn = IN_FLIGHT
                    .acquire()
                    .await
                    .map_err(|_| plan.internal("the lookup queue is closed"))?;
                (turn, None)
            }
        };
        // Boxed, so that a lookup waiting for its turn holds a few hundred
        // bytes, not hickory's whole state machine: a burst of thousands of
        // queued lookups stays small.
        match sent {
            Some(sent) => Box::pin(plan.run_after(sent, deadline)).await,
            None => Box::pin(plan.run(options.transport)).await,
        }
    };
    match tokio::time::timeout_at(deadline.into(), run).await {
        Ok(result) => result,
        Err(_elapsed) => Err(plan.timeout()),
    }
}

/// What a lookup ends in, shared by the lookups that joined it.
pub type Outcome = Arc<Result<Answer, LookupError>>;

/// Lookups in flight that an identical one may join, by query and options.
/// An entry leaves when its lookup ends (see [`Joined`]).
static JOINABLE: LazyLock<Mutex<HashMap<(Query, LookupOptions), InFlight>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

type InFlight = Shared<BoxFuture<'static, Outcome>>;

/// Starts a lookup, or joins an identical one in flight (see the module
/// documentation). Runs on the caller's thread: a new lookup's first UDP
/// query leaves from here when it can (see [`first_attempt`]). Every joiner
/// gets the same [`Outcome`] by awaiting [`Joined::outcome`]. When a first
/// attempt was sent, the caller's task must go to the returned [`Deferred`].
fn start_or_join(query: Query, options: LookupOptions) -> (Joined, Option<Arc<Deferred>>) {
    let since = Instant::now();
    let key = (query, options);
    if let Some(joined) = join(&key) {
        return (joined, None);
    }
    // Sent outside the lock. Two identical lookups started at the same
    // instant may both send; the second then joins the first and its
    // datagram goes unread.
    let started = start_first_attempt(&key.0, &key.1);
    // Armed before the lock too (arming may wake the runtime's sweeper). If
    // an identical lookup won the race, it is dropped unused: its alarm
    // then rings for nothing.
    let deferred = started.as_ref().map(|s| s.sent.deferred());
    let mut joinable = JOINABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(in_flight) = unfinished(&joinable, &key) {
        return (Joined { key, in_flight }, None);
    }
    let (query, options) = key.clone();
    let in_flight = async move { Arc::new(lookup_after(&query, &options, started, since).await) }
        .boxed()
        .shared();
    joinable.insert(key.clone(), in_flight.clone());
    (Joined { key, in_flight }, deferred)
}

/// The identical lookup in flight that `key` can join, if any.
fn join(key: &(Query, LookupOptions)) -> Option<Joined> {
    // A poisoned lock only means a panic elsewhere mid-update; the map is
    // still whole.
    let joinable = JOINABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let in_flight = unfinished(&joinable, key)?;
    Some(Joined {
        key: key.clone(),
        in_flight,
    })
}

/// The lookup for `key` in `joinable` if it has not finished: only such a
/// one is joined, so no result outlives its lookup.
fn unfinished(
    joinable: &HashMap<(Query, LookupOptions), InFlight>,
    key: &(Query, LookupOptions),
) -> Option<InFlight> {
    joinable.get(key).filter(|f| f.peek().is_none()).cloned()
}

/// Sends the first attempt of a lookup with `options` when it applies and a
/// turn is free at once; otherwise the lookup starts on the runtime.
fn start_first_attempt(query: &Query, options: &LookupOptions) -> Option<Started> {
    let server = first_attempt::server(options)?;
    let turn = IN_FLIGHT.try_acquire().ok()?;
    let sent = first_attempt::send(query, server, options.attempt_timeout())?;
    Some(Started { sent, turn })
}

/// A lookup started or joined. It leaves [`JOINABLE`] when a joiner is done
/// with it, even by a panic, so that a lookup that panicked is never joined
/// again.
struct Joined {
    key: (Query, LookupOptions),
    in_flight: InFlight,
}

impl Joined {
    /// Waits for the lookup's outcome.
    async fn outcome(self) -> Outcome {
        self.in_flight.clone().await
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut joinable = JOINABLE.lock().unwrap_or_else(PoisonError::into_inner);
        if joinable
            .get(&self.key)
            .is_some_and(|entry| entry.ptr_eq(&self.in_flight))
        {
            joinable.remove(&self.key);
        }
    }
}

/// Runs [`lookup`] on Caravan's runtime and calls `deliver` with its result,
/// exactly once, on a runtime thread (never on the caller's thread). An
/// identical lookup already in flight is joined rather than repeated.
///
/// If the task ends without answering (a panic, or the runtime dropping it),
/// `deliver` gets [`LookupError::Internal`]. If the lookup cannot be started
/// at all (the runtime cannot start), this returns the error and `deliver` is
/// never called: either way the caller hears exactly once.
pub fn spawn_lookup<F>(query: Query, options: LookupOptions, deliver: F) -> Result<(), LookupError>
where
    F: FnOnce(&Result<Answer, LookupError>) + Send + 'static,
{
    let name = query.as_str().to_owned();
    let reply = Reply::new(&name, deliver);
    let state = reply.state.clone();
    // The runtime first: a lookup it cannot run sends nothing.
    let spawned = runtime::handle().and_then(|_| {
        let (joined, deferred) = start_or_join(query, options);
        let task = async move {
            let mut reply = reply;
            let outcome = joined.outcome().await;
            reply.send(&outcome);
        };
        match deferred {
            Some(deferred) => {
                deferred.set_task(task);
                Ok(())
            }
            None => runtime::spawn(task),
        }
    });
    let internal = |detail: String| LookupError::Internal {
        query: name.clone(),
        detail,
    };
    if let Err(e) = spawned {
        return Err(internal(format!(
            "Caravan's DNS runtime could not start: {e}"
        )));
    }
    match state.compare_exchange(SPAWNING, SPAWNED, Ordering::AcqRel, Ordering::Acquire) {
        Err(DROPPED_WHILE_SPAWNING) => Err(internal(
            "Caravan's DNS runtime refused the task (it is shutting down)".into(),
        )),
        _ => Ok(()),
    }
}

const SPAWNING: u8 = 0;
const SPAWNED: u8 = 1;
const DROPPED_WHILE_SPAWNING: u8 = 2;

/// Delivers a result exactly once: by [`Reply::send`], or on drop.
///
/// A reply dropped unsent on the thread that is still spawning it (the
/// runtime refused the task) must not call `deliver` there: that thread is
/// the caller's (a BEAM scheduler). It marks the state instead, and
/// [`spawn_lookup`] reports the failure synchronously.
pub struct Reply<F>
where
    F: FnOnce(&Result<Answer, LookupError>),
{
    deliver: Option<F>,
    query: String,
    spawner: ThreadId,
    state: Arc<AtomicU8>,
}

impl<F> Reply<F>
where
    F: FnOnce(&Result<Answer, LookupError>),
{
    /// A reply for a lookup of `query`, about to be spawned from this thread.
    pub fn new(query: &str, deliver: F) -> Self {
        Reply {
            deliver: Some(deliver),
            query: query.to_owned(),
            spawner: thread::current().id(),
            state: Arc::new(AtomicU8::new(SPAWNING)),
        }
    }

    /// Delivers `result`; later calls and the drop do nothing.
    pub fn send(&mut self, result: &Result<Answer, LookupError>) {
        if let Some(deliver) = self.deliver.take() {
            deliver(result);
        }
    }
}

impl<F> Drop for Reply<F>
where
    F: FnOnce(&Result<Answer, LookupError>),
{
    fn drop(&mut self) {
        if self.deliver.is_none() {
            return;
        }
        if thread::current().id() == self.spawner
            && self
                .state
                .compare_exchange(
                    SPAWNING,
                    DROPPED_WHILE_SPAWNING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.deliver = None;
            return;
        }
        let query = std::mem::take(&mut self.query);
        self.send(&Err(LookupError::Internal {
            query,
            detail:
                "the lookup task stopped before answering (a panic or the runtime shutting down)"
                    .into(),
        }));
    }
}

/// One lookup, with its nameservers resolved and described.
struct Plan<'a> {
    query: &'a Query,
    options: &'a LookupOptions,
    servers: Vec<SocketAddr>,
    described: String,
}

impl<'a> Plan<'a> {
    fn new(query: &'a Query, options: &'a LookupOptions) -> Result<Self, LookupError> {
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
            query,
            options,
            servers,
            described,
        })
    }

    /// Asks through hickory over `transport` (the configured one, or TCP
    /// after a first attempt came back truncated).
    async fn run(&self, transport: Transport) -> Result<Answer, LookupError> {
        let resolvers = self.resolvers(transport)?;
        let name = self.name(&self.query.fqdn())?;
        let response = resolvers
            .srv
            .lookup(
                DnsQuery::query(name, RecordType::SRV),
                self.request_options(),
            )
            .first_answer()
            .await;
        match response {
            Ok(response) => Ok(self.finish(&response).await),
            Err(e) if e.is_no_records_found() => Ok(Answer::empty()),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// Takes the answer to a first attempt, or goes on through hickory:
    /// straight to TCP after a truncated answer (as hickory itself would),
    /// from the start on anything else, unless the lookup's `deadline` has
    /// passed (then nothing more is sent).
    async fn run_after(
        &self,
        sent: first_attempt::Sent,
        deadline: Instant,
    ) -> Result<Answer, LookupError> {
        let reply = sent.reply().await;
        if !matches!(reply, first_attempt::Reply::Answer(_)) && Instant::now() >= deadline {
            return Err(self.timeout());
        }
        match reply {
            first_attempt::Reply::Answer(message) => Ok(self.finish(&message).await),
            // TCP that cannot be reached then ends as it does in hickory:
            // in the truncation.
            first_attempt::Reply::Truncated => {
                self.run(Transport::Tcp).await.map_err(|e| match e {
                    LookupError::Unreachable { .. } => self.truncated(),
                    other => other,
                })
            }
            first_attempt::Reply::Fallback => self.run(self.options.transport).await,
        }
    }

    /// Shapes an answer and, when asked, looks up its targets' addresses.
    async fn finish(&self, message: &Message) -> Answer {
        let mut answer = answer::shape_message(message, self.options.max_records);
        if self.options.resolve_addresses {
            let resolver = self.resolvers(self.options.transport).map(|r| r.resolver);
            if let Ok(resolver) = resolver {
                self.resolve_addresses(&resolver, &mut answer).await;
            }
        }
        answer
    }

    fn request_options(&self) -> DnsRequestOptions {
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = true;
        options.use_edns = true;
        options.edns_payload_len = EDNS_PAYLOAD;
        options
    }

    /// Looks up A and AAAA for targets that have no address yet. A target
    /// whose lookup fails keeps an empty list: the SRV answer stands.
    async fn resolve_addresses(&self, resolver: &TokioResolver, answer: &mut Answer) {
        let wanted: Vec<(usize, String)> = answer
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.addresses.is_empty())
            .map(|(i, t)| (i, format!("{}.", t.host)))
            .collect();
        let found: Vec<(usize, Vec<IpAddr>)> = stream::iter(wanted)
            .map(|(i, host)| async move {
                let Ok(name) = Name::from_ascii(&host) else {
                    return (i, Vec::new());
                };
                let (v4, v6) = tokio::join!(
                    resolver.lookup(name.clone(), RecordType::A),
                    resolver.lookup(name, RecordType::AAAA)
                );
                let addresses = [v4, v6]
                    .into_iter()
                    .flatten()
                    .flat_map(|l| {
                        l.answers()
                            .iter()
                            .filter_map(|r| address_of(&r.data))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (i, addresses)
            })
            .buffer_unordered(ADDRESS_CONCURRENCY)
            .collect()
            .await;
        for (i, addresses) in found {
            answer::set_addresses(&mut answer.targets[i], addresses);
        }
    }

    /// The client and resolver for this plan's nameservers and options,
    /// reused from [`RESOLVERS`] when built for the same key.
    fn resolvers(&self, transport: Transport) -> Result<Resolvers, LookupError> {
        let key = ResolverKey {
            servers: self.servers.clone(),
            transport,
            attempt_timeout: self.options.attempt_timeout(),
            attempts: self.options.attempts,
        };
        // A poisoned lock only means another lookup panicked mid-update of a
        // cache: the entries are still whole, so keep using them.
        let mut cache = RESOLVERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            let entry = cache.remove(i);
            let resolvers = entry.1.clone();
            cache.push(entry);
            return Ok(resolvers);
        }
        let (servers, opts) = self.config(transport);
        let tls = TlsConfig::new()
            .map_err(|e| self.internal(&format!("could not set up the client: {e}")))?;
        let pool = NameServerPool::from_config(
            servers,
            Arc::new(PoolContext::new(opts.clone(), tls)),
            Provider::default(),
        );
        let resolvers = Resolvers {
            srv: RetryDnsHandle::new(pool, opts.attempts),
            resolver: self.build_resolver(transport)?,
        };
        if cache.len() >= MAX_RESOLVERS {
            cache.remove(0);
        }
        cache.push((key, resolvers.clone()));
        Ok(resolvers)
    }

    /// hickory's configuration for this plan over `transport`: the
    /// nameservers (UDP then TCP, or TCP only) and the options.
    fn config(&self, transport: Transport) -> (Vec<NameServerConfig>, ResolverOpts) {
        let servers = self
            .servers
            .iter()
            .map(|addr| {
                let mut connections = Vec::with_capacity(2);
                if transport == Transport::Udp {
                    connections.push(with_port(ConnectionConfig::udp(), addr.port()));
                }
                connections.push(with_port(ConnectionConfig::tcp(), addr.port()));
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = self.options.attempt_timeout();
        // hickory counts retries after the first try.
        opts.attempts = usize::from(self.options.attempts - 1);
        opts.edns0 = true;
        opts.edns_payload_len = EDNS_PAYLOAD;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = false;
        opts.max_active_requests = MAX_ACTIVE_REQUESTS;
        (servers, opts)
    }

    fn build_resolver(&self, transport: Transport) -> Result<TokioResolver, LookupError> {
        let (servers, opts) = self.config(transport);
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            Provider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|e| self.internal(&format!("could not build the resolver: {e}")))
    }

    fn name(&self, text: &str) -> Result<Name, LookupError> {
        Name::from_ascii(text)
            .map_err(|e| self.internal(&format!("could not encode the name {text:?}: {e}")))
    }

    /// Turns hickory's error into Caravan's reason and message.
    fn classify(&self, error: NetError) -> LookupError {
        let query = self.query.as_str().to_owned();
        let servers = self.described.clone();
        match error {
            NetError::Timeout => self.timeout(),
            NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => self.timeout(),
            NetError::Io(e) => LookupError::Unreachable {
                query,
                servers,
                detail: e.to_string(),
            },
            NetError::NoConnections => LookupError::Unreachable {
                query,
                servers,
                detail: "no connection could be made".into(),
            },
            NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => {
                LookupError::Refused { query, servers }
            }
            NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
                LookupError::ServFail { query, servers }
            }
            NetError::Dns(DnsError::ResponseCode(code)) => LookupError::ServerError {
                query,
                servers,
                rcode: code.to_string(),
            },
            NetError::Proto(e) => LookupError::Malformed {
                query,
                servers,
                detail: format!("it could not be decoded ({e})"),
            },
            NetError::Truncated => self.truncated(),
            e @ (NetError::QueryCaseMismatch | NetError::ForeignClassRecord { .. }) => {
                LookupError::Malformed {
                    query,
                    servers,
                    detail: e.to_string(),
                }
            }
            other => self.internal(&other.to_string()),
        }
    }

    /// A truncated answer that TCP did not make whole.
    fn truncated(&self) -> LookupError {
        let detail = match self.options.transport {
            Transport::Tcp => "it was truncated even over TCP",
            Transport::Udp => {
                "it came back truncated over UDP and no whole answer came over TCP \
                 (check that the nameserver takes TCP)"
            }
        };
        LookupError::Malformed {
            query: self.query.as_str().to_owned(),
            servers: self.described.clone(),
            detail: detail.into(),
        }
    }

    fn timeout(&self) -> LookupError {
        LookupError::Timeout {
            query: self.query.as_str().to_owned(),
            servers: self.described.clone(),
            timeout: self.options.timeout,
            attempts: self.options.attempts,
        }
    }

    fn internal(&self, detail: &str) -> LookupError {
        LookupError::Internal {
            query: self.query.as_str().to_owned(),
            detail: format!("{detail} (asking {})", self.described),
        }
    }
}

fn with_port(mut connection: ConnectionConfig, port: u16) -> ConnectionConfig {
    connection.port = port;
    connection
}

/// The nameservers of `/etc/resolv.conf`, read at each lookup so that a
/// changed file is honoured.
fn system_nameservers(query: &Query) -> Result<Vec<SocketAddr>, LookupError> {
    let bytes =
        std::fs::read(RESOLV_CONF).map_err(|e| format!("could not read {RESOLV_CONF} ({e})"));
    bytes
        .and_then(resolv_conf_nameservers)
        .map_err(|detail| LookupError::NoNameservers {
            query: query.as_str().to_owned(),
            detail,
        })
}

/// The nameservers a `resolv.conf` names, in order, without repeats.
fn resolv_conf_nameservers(bytes: Vec<u8>) -> Result<Vec<SocketAddr>, String> {
    let (config, _opts) = hickory_resolver::system_conf::parse_resolv_conf(bytes)
        .map_err(|e| format!("could not parse {RESOLV_CONF} ({e})"))?;
    let mut servers: Vec<SocketAddr> = Vec::new();
    for ns in config.name_servers() {
        let port = ns.connections.first().map_or(53, |c| c.port);
        let addr = SocketAddr::new(ns.ip, port);
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err(format!("{RESOLV_CONF} names no nameserver"));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
        assert!(err.contains("no nameservers"), "{err}");
    }

    #[test]
    fn a_reply_dropped_unsent_on_another_thread_delivers_internal() {
        let (tx, rx) = mpsc::channel();
        let reply = Reply::new("q.consul", move |r| tx.send(r.clone()).unwrap());
        reply.state.store(SPAWNED, Ordering::Release);
        thread::spawn(move || drop(reply)).join().unwrap();
        let got = rx.recv().unwrap().unwrap_err();
        assert_eq!(got.reason(), "internal");
        assert!(rx.try_recv().is_err(), "exactly one delivery");
    }

    #[test]
    fn a_reply_sent_then_dropped_delivers_once() {
        let (tx, rx) = mpsc::channel();
        let mut reply = Reply::new("q.consul", move |r| tx.send(r.clone()).unwrap());
        reply.send(&Ok(Answer::empty()));
        reply.send(&Ok(Answer::empty()));
        drop(reply);
        assert_eq!(rx.recv().unwrap(), Ok(Answer::empty()));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_reply_dropped_while_spawning_on_the_spawner_thread_does_not_deliver() {
        let (tx, rx) = mpsc::channel::<Result<Answer, LookupError>>();
        let reply = Reply::new("q.consul", move |r| tx.send(r.clone()).unwrap());
        let state = reply.state.clone();
        drop(reply);
        assert_eq!(state.load(Ordering::Acquire), DROPPED_WHILE_SPAWNING);
        assert!(rx.try_recv().is_err());
    }
}
