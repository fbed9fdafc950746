//! NIFs for `caravan_core::dns`: decode terms, start, cancel or shape a
//! lookup, encode the answer.
//!
//! `dns_lookup/4` returns a handle at once; the answer is sent later as
//! `{ref, result}` from Caravan's runtime thread (never a scheduler thread:
//! `OwnedEnv::send_and_clear` must not run on one). The core guarantees
//! exactly one message, even when the lookup task panics, unless the lookup
//! is cancelled: by `dns_cancel/1`, or when the handle is garbage (its
//! caller died), which frees its turn and sockets at once.

use std::net::{IpAddr, SocketAddr};

use caravan_core::dns::answer::{self, Glue, SrvRecord};
use caravan_core::dns::nameserver::{self, Port};
use caravan_core::dns::{
    spawn_lookup, Answer, Lookup, LookupError, LookupOptions, Nameservers, Query, Transport,
};
use rustler::types::tuple::get_tuple;
use rustler::{
    Atom, Binary, Encoder, Env, LocalPid, NifMap, NifUnitEnum, NifUntaggedEnum, OwnedEnv,
    ResourceArc, Term,
};

use crate::terms::Ip;

mod atoms {
    rustler::atoms! {
        ok,
        internal,
        bad_nameserver,
        bad_option,
    }
}

/// The error's fixed reason tag as an atom (a tag from `LookupError::reason`,
/// never input).
fn reason(env: Env, error: &LookupError) -> Atom {
    Atom::from_str(env, error.reason()).unwrap_or_else(|_| atoms::internal())
}

/// `dns_nameserver(entry) :: {ip_tuple, port} | {:error, :bad_nameserver, message}`
///
/// `entry` is `"IP:PORT"`, `{host, port}` with `host` a binary or an IP
/// tuple and `port` an integer or a binary. The message states the rule and
/// the fix; the caller prefixes the entry as written.
#[rustler::nif]
fn dns_nameserver<'a>(env: Env<'a>, entry: Term<'a>) -> Term<'a> {
    let parsed = if let Ok(text) = entry.decode::<Binary>() {
        match std::str::from_utf8(text.as_slice()) {
            Ok(text) => nameserver::parse(text).map_err(|e| e.to_string()),
            Err(_) => Err("it is not UTF-8 text; write it as \"IP:PORT\"".into()),
        }
    } else if let Some([host, port]) = get_tuple(entry)
        .ok()
        .and_then(|parts| <[Term; 2]>::try_from(parts).ok())
    {
        pair(host, port)
    } else {
        Err("expected \"IP:PORT\", {host, port} or {ip_tuple, port}".into())
    };
    match parsed {
        Ok(addr) => (Ip(addr.ip()), addr.port()).encode(env),
        Err(message) => crate::error(env, atoms::bad_nameserver(), message),
    }
}

fn pair(host: Term, port: Term) -> Result<SocketAddr, String> {
    let port_text;
    let port = if let Ok(n) = port.decode::<i64>() {
        Port::Number(n)
    } else if let Ok(text) = port.decode::<Binary>() {
        port_text = String::from_utf8(text.as_slice().to_vec())
            .map_err(|_| "the port is not UTF-8 text".to_string())?;
        Port::Text(&port_text)
    } else {
        return Err("the port must be an integer or a string such as \"8600\"".into());
    };
    match host_text(host)? {
        HostText::Text(h) => nameserver::from_parts(&h, port),
        HostText::Ip(ip) => nameserver::check_port(port).map(|p| SocketAddr::new(ip, p)),
    }
    .map_err(|e| e.to_string())
}

enum HostText {
    Text(String),
    Ip(IpAddr),
}

fn host_text(host: Term) -> Result<HostText, String> {
    if let Ok(text) = host.decode::<Binary>() {
        return std::str::from_utf8(text.as_slice())
            .map(|t| HostText::Text(t.to_owned()))
            .map_err(|_| "the host is not UTF-8 text".into());
    }
    crate::terms::decode_ip(host)
        .map(HostText::Ip)
        .ok_or_else(|| {
            "the host must be an IP address as a string (\"127.0.0.1\") or a tuple ({127, 0, 0, 1})"
                .into()
        })
}

/// The options map, as `Caravan.DnsClient.Options.validate!/1` builds it.
#[derive(NifMap)]
struct OptionsTerm {
    nameservers: NameserversTerm,
    timeout: i64,
    attempts: i64,
    transport: TransportTerm,
    resolve_addresses: bool,
    max_records: i64,
}

#[derive(NifUntaggedEnum)]
enum NameserversTerm {
    System(SystemTerm),
    List(Vec<(Ip, u16)>),
}

#[derive(NifUnitEnum)]
enum SystemTerm {
    System,
}

#[derive(NifUnitEnum)]
enum TransportTerm {
    Udp,
    Tcp,
}

impl OptionsTerm {
    /// The core's checks: the one set of rules for options.
    fn check(self) -> Result<LookupOptions, String> {
        let nameservers = match self.nameservers {
            NameserversTerm::System(SystemTerm::System) => Nameservers::System,
            NameserversTerm::List(list) => Nameservers::Explicit(
                list.into_iter()
                    .map(|(Ip(ip), port)| SocketAddr::new(ip, port))
                    .collect(),
            ),
        };
        let transport = match self.transport {
            TransportTerm::Udp => Transport::Udp,
            TransportTerm::Tcp => Transport::Tcp,
        };
        LookupOptions::new(
            nameservers,
            self.timeout,
            self.attempts,
            transport,
            self.resolve_addresses,
            self.max_records,
        )
        .map_err(|e| e.to_string())
    }
}

#[derive(NifMap)]
struct TargetTerm {
    port: u16,
    host: String,
    priority: u16,
    weight: u16,
    addresses: Vec<Ip>,
    unresolved: bool,
}

#[derive(NifMap)]
struct StatsTerm {
    complete: bool,
    rejected: usize,
    rejected_example: Option<String>,
    over_limit: usize,
    unresolved: usize,
    unresolved_example: Option<String>,
}

/// `{:ok, [target], stats}`, with `stats` as `StatsTerm` shows.
fn encode_answer<'a>(env: Env<'a>, answer: &Answer) -> Term<'a> {
    let targets: Vec<TargetTerm> = answer
        .targets
        .iter()
        .map(|t| TargetTerm {
            port: t.port,
            host: t.host.clone(),
            priority: t.priority,
            weight: t.weight,
            addresses: t.addresses.iter().copied().map(Ip).collect(),
            unresolved: t.unresolved,
        })
        .collect();
    let stats = StatsTerm {
        complete: answer.complete,
        rejected: answer.rejected,
        rejected_example: answer.rejected_example.clone(),
        over_limit: answer.over_limit,
        unresolved: answer.unresolved,
        unresolved_example: answer.unresolved_example.clone(),
    };
    (atoms::ok(), targets, stats).encode(env)
}

/// A lookup in flight, held by its caller: dropped (the caller died, or
/// let go of it) or cancelled, it aborts the lookup.
struct LookupHandle(Lookup);

#[rustler::resource_impl]
impl rustler::Resource for LookupHandle {}

/// `dns_lookup(pid, ref, query, opts) :: {:ok, handle} | {:error, reason, message}`
///
/// `opts` is the map `OptionsTerm` shows. Bad values give
/// `{:error, :bad_option, message}` at once; otherwise `pid` later receives
/// exactly one `{ref, {:ok, targets, stats}}` or `{ref, {:error, reason,
/// message}}`, unless the handle is cancelled or dropped first.
#[rustler::nif]
fn dns_lookup<'a>(
    env: Env<'a>,
    pid: LocalPid,
    reference: Term<'a>,
    query: Binary<'a>,
    opts: OptionsTerm,
) -> Term<'a> {
    let checked = decode_query(query).and_then(|q| Ok((q, opts.check()?)));
    let (query, options) = match checked {
        Ok(checked) => checked,
        Err(message) => return crate::error(env, atoms::bad_option(), message),
    };
    let reply_env = OwnedEnv::new();
    let saved_ref = reply_env.save(reference);
    let deliver = move |result: &Result<Answer, LookupError>| {
        let mut reply_env = reply_env;
        // Runs on Caravan's runtime thread, so send_and_clear is allowed.
        let _ = reply_env.send_and_clear(&pid, |env| {
            let body = match result {
                Ok(answer) => encode_answer(env, answer),
                Err(e) => crate::error(env, reason(env, e), e.to_string()),
            };
            (saved_ref.load(env), body).encode(env)
        });
    };
    match spawn_lookup(query, options, deliver) {
        Ok(lookup) => (atoms::ok(), ResourceArc::new(LookupHandle(lookup))).encode(env),
        Err(e) => crate::error(env, reason(env, &e), e.to_string()),
    }
}

/// `dns_cancel(handle) :: :ok`: aborts the lookup; its message, if not sent
/// yet, never will be.
#[rustler::nif]
fn dns_cancel(handle: ResourceArc<LookupHandle>) -> Atom {
    handle.0.cancel();
    atoms::ok()
}

/// `dns_check_options(opts) :: :ok | {:error, :bad_option, message}`: the
/// option checks of `dns_lookup/4`, for clients that do not use it and for
/// checking a configuration at start.
#[rustler::nif]
fn dns_check_options<'a>(env: Env<'a>, opts: OptionsTerm) -> Term<'a> {
    match opts.check() {
        Ok(_) => atoms::ok().encode(env),
        Err(message) => crate::error(env, atoms::bad_option(), message),
    }
}

/// `dns_check_query(query) :: {:ok, normalized} | {:error, :bad_option, message}`:
/// the query check of `dns_lookup/4`; `normalized` is lowercase, without a
/// trailing dot.
#[rustler::nif]
fn dns_check_query<'a>(env: Env<'a>, query: Binary<'a>) -> Term<'a> {
    match decode_query(query) {
        Ok(q) => (atoms::ok(), q.as_str()).encode(env),
        Err(message) => crate::error(env, atoms::bad_option(), message),
    }
}

fn decode_query(query: Binary) -> Result<Query, String> {
    match std::str::from_utf8(query.as_slice()) {
        Ok(text) => Query::new(text).map_err(|e| e.to_string()),
        Err(_) => Err(
            "DNS query is not UTF-8 text; give a name such as \"likes-dist.service.consul\"".into(),
        ),
    }
}

/// `dns_shape(records, glue, max_records) :: {:ok, targets, stats}`
///
/// Shapes an answer obtained elsewhere (`:inet_res`) by the same rules:
/// `records` is `[{priority, weight, port, target}]`, `glue` is
/// `[{name, ip_tuple}]`, names as binaries. `complete` in `stats` then says
/// only that nothing was dropped beyond `max_records`.
#[rustler::nif]
fn dns_shape<'a>(
    env: Env<'a>,
    records: Vec<(u16, u16, u16, Binary<'a>)>,
    glue: Vec<(Binary<'a>, Ip)>,
    max_records: usize,
) -> Term<'a> {
    let records = records
        .into_iter()
        .map(|(priority, weight, port, target)| SrvRecord {
            priority,
            weight,
            port,
            target: String::from_utf8_lossy(target.as_slice()).into_owned(),
        });
    let glue = glue.into_iter().map(|(name, Ip(address))| Glue {
        name: String::from_utf8_lossy(name.as_slice()).into_owned(),
        address,
    });
    encode_answer(env, &answer::shape(records, glue, max_records))
}
