//! Every way a DNS discovery call can fail, each with a fixed reason tag.
//!
//! Two families:
//!
//! - bad input, found before anything is sent: [`NameserverError`] and
//!   [`OptionError`]. The caller raises these (Elixir: `ArgumentError`);
//! - a lookup that ran and failed: [`LookupError`]. These are values, never
//!   exceptions, and are never "no instances": NXDOMAIN and an empty answer
//!   are a successful, empty [`Answer`](super::Answer).
//!
//! `reason()` is a short fixed tag (the NIF maps it to an atom from a fixed
//! set, never from input); the `Display` text names the input, the rule and
//! the fix.

use std::time::Duration;

/// Quotes untrusted text for a message: escaped, cut to 80 characters, so a
/// hostile 64 KiB answer cannot turn into a 64 KiB log line.
pub(crate) fn quoted(text: &str) -> String {
    const KEEP: usize = 80;
    let head: String = text.chars().take(KEEP).collect();
    if head.len() < text.len() {
        format!("{:?}... ({} bytes)", head, text.len())
    } else {
        format!("{head:?}")
    }
}

/// A nameserver entry that is not an address Caravan can send queries to.
///
/// The text describes the rule and the fix; the caller prefixes the entry as
/// the user wrote it (`{"10.0.183.34", "87000"}`), which only it can print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameserverError {
    #[error("it is empty; write a nameserver as \"IP:PORT\", for example \"127.0.0.1:8600\"")]
    Empty,
    #[error("{} is not an IP address; nameservers are given by address (a nameserver's own name would need a nameserver to look it up), for example \"127.0.0.1:8600\" or \"[::1]:8600\"", quoted(.host))]
    NotAnIp { host: String },
    #[error("an IPv6 nameserver written as a string needs brackets, as in \"[{address}]:8600\" (or \"[{address}]\" for port 53); without them the port cannot be told from the address")]
    UnbracketedIpv6 { address: String },
    #[error("port {} is not a port number (1..65535); Consul's DNS listens on 8600 by default", quoted(.port))]
    BadPort { port: String },
}

impl NameserverError {
    /// A short, fixed tag for the rule that was broken.
    pub fn reason(&self) -> &'static str {
        match self {
            NameserverError::Empty => "empty",
            NameserverError::NotAnIp { .. } => "not_an_ip",
            NameserverError::UnbracketedIpv6 { .. } => "unbracketed_ipv6",
            NameserverError::BadPort { .. } => "bad_port",
        }
    }
}

/// An option value or query outside what a lookup accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("expected :timeout to be a number of milliseconds in 1..{max}, got: {value}")]
    Timeout { value: i64, max: u64 },
    #[error("expected :attempts to be an integer in 1..{max}, got: {value}")]
    Attempts { value: i64, max: u8 },
    #[error("expected :max_records to be an integer in 1..{max}, got: {value}")]
    MaxRecords { value: i64, max: usize },
    #[error("expected :nameservers to be :system or a non-empty list of nameservers such as [\"127.0.0.1:8600\"], got: []")]
    NoNameservers,
    #[error("expected :nameservers to hold at most {max} entries, got {count}")]
    TooManyNameservers { count: usize, max: usize },
    #[error("DNS query {} is not a domain name ({why}); give a name such as \"likes-dist.service.consul\"", quoted(.query))]
    Query { query: String, why: String },
}

impl OptionError {
    /// A short, fixed tag for the rule that was broken.
    pub fn reason(&self) -> &'static str {
        match self {
            OptionError::Timeout { .. } => "bad_timeout",
            OptionError::Attempts { .. } => "bad_attempts",
            OptionError::MaxRecords { .. } => "bad_max_records",
            OptionError::NoNameservers => "no_nameservers",
            OptionError::TooManyNameservers { .. } => "too_many_nameservers",
            OptionError::Query { .. } => "bad_query",
        }
    }
}

/// Why a lookup that was sent produced no answer. None of these means "the
/// service has no instances": a strategy must keep its current members.
///
/// `question` is the name and type asked, as in `likes.service.consul SRV`
/// (or `node1.node.dc1.consul A` for an address follow-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No usable answer within the lookup's `timeout` (all attempts included).
    #[error("no answer for {question} from {servers} within {} ms ({attempts} attempt(s)); check that the nameserver is up and reachable, or raise :timeout", .timeout.as_millis())]
    Timeout {
        question: String,
        servers: String,
        timeout: Duration,
        attempts: u8,
    },
    /// The nameserver answered REFUSED: it will not serve this name.
    #[error("{servers} refused the query for {question} (REFUSED); point :nameservers at a server that serves this domain (Consul's agent DNS, 127.0.0.1:8600 by default)")]
    Refused { question: String, servers: String },
    /// The nameserver could not be reached (connection refused, no route...).
    #[error("could not reach {servers} for {question}: {detail}; check the address and port in :nameservers")]
    Unreachable {
        question: String,
        servers: String,
        detail: String,
    },
    /// The nameserver answered SERVFAIL: it failed to produce an answer.
    #[error("{servers} failed to answer {question} (SERVFAIL); the server (for example the Consul agent) is unhealthy")]
    ServFail { question: String, servers: String },
    /// The nameserver answered with another error code (FORMERR, NOTIMP...).
    #[error("{servers} answered {question} with error code {rcode}")]
    ServerError {
        question: String,
        servers: String,
        rcode: String,
    },
    /// The answer could not be decoded, or stayed truncated over TCP.
    #[error("{servers} sent a malformed answer for {question}: {detail}")]
    Malformed {
        question: String,
        servers: String,
        detail: String,
    },
    /// No nameserver to ask: the system configuration names none.
    #[error("no nameserver to ask for {question}: {detail}; pass :nameservers, for example [\"127.0.0.1:8600\"]")]
    NoNameservers { question: String, detail: String },
    /// The lookup ended without an answer for a reason internal to Caravan
    /// (a bug, or the runtime shutting down).
    #[error("the DNS lookup for {question} ended without an answer: {detail}")]
    Internal { question: String, detail: String },
}

impl LookupError {
    /// A short, fixed tag for what went wrong.
    pub fn reason(&self) -> &'static str {
        match self {
            LookupError::Timeout { .. } => "timeout",
            LookupError::Refused { .. } => "refused",
            LookupError::Unreachable { .. } => "unreachable",
            LookupError::ServFail { .. } => "servfail",
            LookupError::ServerError { .. } => "server_error",
            LookupError::Malformed { .. } => "malformed",
            LookupError::NoNameservers { .. } => "no_nameservers",
            LookupError::Internal { .. } => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_cuts_and_escapes() {
        assert_eq!(quoted("a\"b"), r#""a\"b""#);
        let long = "x".repeat(200);
        assert!(quoted(&long).ends_with("... (200 bytes)"));
        assert_eq!(quoted("\u{7}"), r#""\u{7}""#);
    }

    #[test]
    fn option_errors_name_key_value_and_range() {
        let e = OptionError::Timeout {
            value: 0,
            max: 600_000,
        };
        assert_eq!(
            e.to_string(),
            "expected :timeout to be a number of milliseconds in 1..600000, got: 0"
        );
        assert_eq!(e.reason(), "bad_timeout");
    }
}
