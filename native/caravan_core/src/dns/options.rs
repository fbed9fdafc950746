//! What a lookup may be asked to do, with defaults and limits.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | nameservers | the system's (`/etc/resolv.conf`) | whom to ask: 1 to 64, tried in turn |
//! | timeout | 5000 ms | the whole lookup: every attempt, the TCP retry, address lookups |
//! | attempts | 2 | how many times the query is sent: the next goes out `timeout / attempts` after the last, or at once when the last failed; a reply to any of them is taken until `timeout` |
//! | transport | UDP | UDP (EDNS, 4096-byte payload) with a TCP retry when the answer is truncated, or TCP always |
//! | resolve_addresses | false | look up A/AAAA for targets that arrived without addresses |
//! | max_records | 1024 | SRV records kept; the rest are counted and dropped |

use std::net::SocketAddr;
use std::time::Duration;

use super::error::OptionError;
use super::hostname;

/// The longest timeout accepted, in milliseconds (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// The most attempts accepted.
pub const MAX_ATTEMPTS: u8 = 16;
/// The most nameservers a lookup may be given.
pub const MAX_NAMESERVERS: usize = 64;
/// The most records a lookup may be asked to keep. A DNS message is at most
/// 64 KiB, so more could never arrive.
pub const MAX_MAX_RECORDS: usize = 65_535;

/// The EDNS UDP payload size advertised: what Consul trims UDP answers to.
pub const EDNS_PAYLOAD: u16 = 4096;

/// The longest UDP answer that can be known whole. Consul trims UDP answers
/// silently (no TC) to the advertised payload, dropping whole records, each
/// SRV with its target's ADDITIONAL records (`trimUDPResponse`,
/// `syncExtra`). An SRV with glue is under 300 bytes even with a
/// 253-character target; larger extras (node-meta TXT) widen the margin
/// (see `exchange::Received::complete`).
pub const COMPLETE_BELOW: usize = EDNS_PAYLOAD as usize - 512;

/// Whom to ask.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Nameservers {
    /// The nameservers in `/etc/resolv.conf`, read at each lookup.
    System,
    /// These, in order of preference.
    Explicit(Vec<SocketAddr>),
}

/// How queries travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP with EDNS, retried over TCP when the answer is truncated (TC bit).
    Udp,
    /// TCP only: for Consul without `dns_config.enable_truncate`, which trims
    /// UDP answers without setting TC.
    Tcp,
}

impl Transport {
    /// How the transport is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Transport::Udp => "udp with tcp fallback",
            Transport::Tcp => "tcp",
        }
    }
}

/// A validated set of lookup options. Build it with [`LookupOptions::new`];
/// [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupOptions {
    pub nameservers: Nameservers,
    pub timeout: Duration,
    pub attempts: u8,
    pub transport: Transport,
    pub resolve_addresses: bool,
    pub max_records: usize,
}

impl Default for LookupOptions {
    fn default() -> Self {
        LookupOptions {
            nameservers: Nameservers::System,
            timeout: Duration::from_millis(5000),
            attempts: 2,
            transport: Transport::Udp,
            resolve_addresses: false,
            max_records: 1024,
        }
    }
}

impl LookupOptions {
    /// Checks raw values (as integers arrive from the BEAM) against the
    /// limits above.
    pub fn new(
        nameservers: Nameservers,
        timeout_ms: i64,
        attempts: i64,
        transport: Transport,
        resolve_addresses: bool,
        max_records: i64,
    ) -> Result<Self, OptionError> {
        if let Nameservers::Explicit(list) = &nameservers {
            if list.is_empty() {
                return Err(OptionError::NoNameservers);
            }
            if list.len() > MAX_NAMESERVERS {
                return Err(OptionError::TooManyNameservers {
                    count: list.len(),
                    max: MAX_NAMESERVERS,
                });
            }
        }
        let timeout = u64::try_from(timeout_ms)
            .ok()
            .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
            .ok_or(OptionError::Timeout {
                value: timeout_ms,
                max: MAX_TIMEOUT_MS,
            })?;
        let attempts = u8::try_from(attempts)
            .ok()
            .filter(|n| (1..=MAX_ATTEMPTS).contains(n))
            .ok_or(OptionError::Attempts {
                value: attempts,
                max: MAX_ATTEMPTS,
            })?;
        let max_records = usize::try_from(max_records)
            .ok()
            .filter(|n| (1..=MAX_MAX_RECORDS).contains(n))
            .ok_or(OptionError::MaxRecords {
                value: max_records,
                max: MAX_MAX_RECORDS,
            })?;
        Ok(LookupOptions {
            nameservers,
            timeout: Duration::from_millis(timeout),
            attempts,
            transport,
            resolve_addresses,
            max_records,
        })
    }

    /// The time one attempt may take, so that all attempts fit the timeout.
    pub fn attempt_timeout(&self) -> Duration {
        (self.timeout / u32::from(self.attempts)).max(Duration::from_millis(1))
    }
}

/// A query checked to be a domain name, kept in lowercase without its
/// trailing dot (how it appears in messages). It is always sent fully
/// qualified: no search domain from `/etc/resolv.conf` is ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query(String);

impl Query {
    /// Checks `text` (see [`hostname::check_query`]).
    pub fn new(text: &str) -> Result<Self, OptionError> {
        hostname::check_query(text).map_err(|why| OptionError::Query {
            query: text.to_owned(),
            why,
        })?;
        let name = text.strip_suffix('.').unwrap_or(text);
        Ok(Query(name.to_ascii_lowercase()))
    }

    /// The name, lowercase, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with its trailing dot: what is sent.
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(timeout: i64, attempts: i64, max: i64) -> Result<LookupOptions, OptionError> {
        LookupOptions::new(
            Nameservers::System,
            timeout,
            attempts,
            Transport::Udp,
            false,
            max,
        )
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let d = LookupOptions::default();
        assert_eq!(opts(5000, 2, 1024), Ok(d.clone()));
        assert_eq!(d.attempt_timeout(), Duration::from_millis(2500));
    }

    #[test]
    fn limits() {
        assert_eq!(opts(0, 2, 1).unwrap_err().reason(), "bad_timeout");
        assert_eq!(opts(-5, 2, 1).unwrap_err().reason(), "bad_timeout");
        assert_eq!(opts(600_001, 2, 1).unwrap_err().reason(), "bad_timeout");
        assert!(opts(600_000, 16, 65_535).is_ok());
        assert_eq!(opts(1, 0, 1).unwrap_err().reason(), "bad_attempts");
        assert_eq!(opts(1, 17, 1).unwrap_err().reason(), "bad_attempts");
        assert_eq!(opts(1, 1, 0).unwrap_err().reason(), "bad_max_records");
        assert_eq!(opts(1, 1, 65_536).unwrap_err().reason(), "bad_max_records");
        assert_eq!(
            opts(1, 3, 1).unwrap().attempt_timeout(),
            Duration::from_millis(1)
        );
        let none = LookupOptions::new(
            Nameservers::Explicit(vec![]),
            1,
            1,
            Transport::Tcp,
            false,
            1,
        );
        assert_eq!(none.unwrap_err(), OptionError::NoNameservers);
        let many = |n| {
            let list = vec!["127.0.0.1:53".parse().unwrap(); n];
            LookupOptions::new(Nameservers::Explicit(list), 1, 1, Transport::Udp, false, 1)
        };
        assert!(many(64).is_ok());
        assert_eq!(many(65).unwrap_err().reason(), "too_many_nameservers");
    }

    #[test]
    fn queries_are_normalised() {
        let q = Query::new("Likes-Dist.Service.Consul.").unwrap();
        assert_eq!(q.as_str(), "likes-dist.service.consul");
        assert_eq!(q.fqdn(), "likes-dist.service.consul.");
        let err = Query::new("bad name").unwrap_err();
        assert_eq!(err.reason(), "bad_query");
        assert!(err
            .to_string()
            .starts_with("DNS query \"bad name\" is not a domain name"));
    }
}
