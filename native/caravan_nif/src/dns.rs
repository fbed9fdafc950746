//! NIFs for `caravan_core::dns`: decode terms, start or shape a lookup,
//! encode the answer.
//!
//! `dns_lookup/4` returns at once; the answer is sent later as
//! `{ref, result}` from Caravan's runtime thread (never a scheduler thread:
//! `OwnedEnv::send_and_clear` must not run on one). The core guarantees
//! exactly one call of the delivery closure, so exactly one message, even
//! when the lookup task panics or is dropped.

use std::net::{IpAddr, SocketAddr};

use caravan_core::dns::answer::{self, Glue, SrvRecord};
use caravan_core::dns::nameserver::{self, Port};
use caravan_core::dns::{
    spawn_lookup, Answer, LookupError, LookupOptions, Nameservers, Query, Transport,
};
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, OwnedEnv, Term};

mod atoms {
    rustler::atoms! {
        ok,
        nil,
        system,
        udp,
        tcp,
        // result keys
        port,
        host,
        priority,
        weight,
        addresses,
        rejected,
        rejected_example,
        over_limit,
        // option keys
        nameservers,
        timeout,
        attempts,
        transport,
        resolve_addresses,
        max_records,
        // lookup reasons
        refused,
        unreachable,
        servfail,
        server_error,
        malformed,
        no_nameservers,
        internal,
        // argument reasons
        bad_nameserver,
        bad_option,
    }
}

fn lookup_reason(error: &LookupError) -> Atom {
    match error.reason() {
        "timeout" => atoms::timeout(),
        "refused" => atoms::refused(),
        "unreachable" => atoms::unreachable(),
        "servfail" => atoms::servfail(),
        "server_error" => atoms::server_error(),
        "malformed" => atoms::malformed(),
        "no_nameservers" => atoms::no_nameservers(),
        _ => atoms::internal(),
    }
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
        Ok(addr) => (crate::terms::encode_ip(env, addr.ip()), addr.port()).encode(env),
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

/// `dns_lookup(pid, ref, query, opts) :: :ok | {:error, reason, message}`
///
/// `opts` is a map with every key: `nameservers` (`:system` or a list of
/// `{ip_tuple, port}` as `dns_nameserver/1` returns), `timeout` (ms),
/// `attempts`, `transport` (`:udp` | `:tcp`), `resolve_addresses`,
/// `max_records`. Bad values give `{:error, :bad_option, message}` at once;
/// otherwise `pid` later receives exactly one `{ref, {:ok, targets, stats}}`
/// or `{ref, {:error, reason, message}}`.
#[rustler::nif]
fn dns_lookup<'a>(
    env: Env<'a>,
    pid: LocalPid,
    reference: Term<'a>,
    query: Binary<'a>,
    opts: Term<'a>,
) -> NifResult<Term<'a>> {
    let query = match decode_query(query) {
        Ok(q) => q,
        Err(message) => return Ok(crate::error(env, atoms::bad_option(), message)),
    };
    let options = match decode_options(opts)? {
        Ok(o) => o,
        Err(message) => return Ok(crate::error(env, atoms::bad_option(), message)),
    };

    let reply_env = OwnedEnv::new();
    let saved_ref = reply_env.save(reference);
    let deliver = move |result: &Result<Answer, LookupError>| {
        let mut reply_env = reply_env;
        // Runs on Caravan's runtime thread, so send_and_clear is allowed.
        let _ = reply_env.send_and_clear(&pid, |env| {
            let body = match result {
                Ok(answer) => encode_answer(env, answer),
                Err(e) => crate::error(env, lookup_reason(e), e.to_string()),
            };
            (saved_ref.load(env), body).encode(env)
        });
    };
    match spawn_lookup(query, options, deliver) {
        Ok(()) => Ok(atoms::ok().encode(env)),
        Err(e) => Ok(crate::error(env, lookup_reason(&e), e.to_string())),
    }
}

/// `dns_check_options(opts) :: :ok | {:error, :bad_option, message}`: the
/// option checks of `dns_lookup/4`, for clients that do not use it.
#[rustler::nif]
fn dns_check_options<'a>(env: Env<'a>, opts: Term<'a>) -> NifResult<Term<'a>> {
    Ok(match decode_options(opts)? {
        Ok(_) => atoms::ok().encode(env),
        Err(message) => crate::error(env, atoms::bad_option(), message),
    })
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

/// Decodes the options map. An `Err` inside is a bad value (a message for
/// `ArgumentError`); the outer `Err` is a term of the wrong shape (badarg,
/// which the Elixir side never sends).
fn decode_options(opts: Term) -> NifResult<Result<LookupOptions, String>> {
    let get = |key: Atom| opts.map_get(key.encode(opts.get_env()));
    let nameservers_term = get(atoms::nameservers())?;
    let nameservers = if nameservers_term.decode::<Atom>().ok() == Some(atoms::system()) {
        Nameservers::System
    } else {
        let mut list = Vec::new();
        for entry in nameservers_term.decode::<Vec<Term>>()? {
            let [ip, port]: [Term; 2] = get_tuple(entry)?
                .try_into()
                .map_err(|_| rustler::Error::BadArg)?;
            let ip = crate::terms::decode_ip(ip).ok_or(rustler::Error::BadArg)?;
            list.push(SocketAddr::new(ip, port.decode()?));
        }
        Nameservers::Explicit(list)
    };
    let transport = match get(atoms::transport())?.decode::<Atom>()? {
        t if t == atoms::udp() => Transport::Udp,
        t if t == atoms::tcp() => Transport::Tcp,
        _ => return Err(rustler::Error::BadArg),
    };
    let options = LookupOptions::new(
        nameservers,
        get(atoms::timeout())?.decode()?,
        get(atoms::attempts())?.decode()?,
        transport,
        get(atoms::resolve_addresses())?.decode()?,
        get(atoms::max_records())?.decode()?,
    );
    Ok(options.map_err(|e| e.to_string()))
}

/// `{:ok, [target], %{rejected: n, rejected_example: binary | nil, over_limit: n}}`
fn encode_answer<'a>(env: Env<'a>, answer: &Answer) -> Term<'a> {
    let keys = [
        atoms::port(),
        atoms::host(),
        atoms::priority(),
        atoms::weight(),
        atoms::addresses(),
    ]
    .map(|k| k.encode(env));
    let targets: Vec<Term> = answer
        .targets
        .iter()
        .map(|t| {
            let addresses: Vec<Term> = t
                .addresses
                .iter()
                .map(|ip| crate::terms::encode_ip(env, *ip))
                .collect();
            let values = [
                t.port.encode(env),
                t.host.encode(env),
                t.priority.encode(env),
                t.weight.encode(env),
                addresses.encode(env),
            ];
            Term::map_from_term_arrays(env, &keys, &values)
                .expect("distinct atom keys always make a map")
        })
        .collect();
    let example = match &answer.rejected_example {
        Some(text) => text.encode(env),
        None => atoms::nil().encode(env),
    };
    let stats = Term::map_from_term_arrays(
        env,
        &[
            atoms::rejected().encode(env),
            atoms::rejected_example().encode(env),
            atoms::over_limit().encode(env),
        ],
        &[
            answer.rejected.encode(env),
            example,
            answer.over_limit.encode(env),
        ],
    )
    .expect("distinct atom keys always make a map");
    (atoms::ok(), targets, stats).encode(env)
}

/// `dns_shape(records, glue, max_records) :: {:ok, targets, stats}`
///
/// Shapes an answer obtained elsewhere (`:inet_res`) by the same rules:
/// `records` is `[{priority, weight, port, target}]`, `glue` is
/// `[{name, ip_tuple}]`, names as binaries.
#[rustler::nif]
fn dns_shape<'a>(
    env: Env<'a>,
    records: Vec<(u16, u16, u16, Binary<'a>)>,
    glue: Vec<(Binary<'a>, Term<'a>)>,
    max_records: i64,
) -> NifResult<Term<'a>> {
    let records = records
        .into_iter()
        .map(|(priority, weight, port, target)| SrvRecord {
            priority,
            weight,
            port,
            target: String::from_utf8_lossy(target.as_slice()).into_owned(),
        });
    let glue: Vec<Glue> = glue
        .into_iter()
        .filter_map(|(name, ip)| {
            Some(Glue {
                name: String::from_utf8_lossy(name.as_slice()).into_owned(),
                address: crate::terms::decode_ip(ip)?,
            })
        })
        .collect();
    let max = usize::try_from(max_records).map_err(|_| rustler::Error::BadArg)?;
    Ok(encode_answer(env, &answer::shape(records, glue, max)))
}
