//! Where DNS answers become node names: `<node_sname>-<port>@<host>`.
//!
//! Every part is validated before a name is built, because the strategy turns
//! the result into an atom and atoms are never garbage-collected. The result
//! always round-trips through [`crate::node_name::dist_port`] to `port`.

use std::net::IpAddr;

use crate::dns::hostname;
use crate::node_name::{self, MAX_NAME_CHARS};

/// Longest `node_sname`: leaves room for `-65535@` and a host.
pub const MAX_SNAME_CHARS: usize = 64;

/// The host part of a peer's node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// An SRV target, used as is (`node_host: :target`).
    Name(&'a str),
    /// An address, formatted as OTP does (`node_host: :address`).
    Ip(IpAddr),
}

/// Why no node name could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNameError {
    #[error("node_sname {sname:?} is not usable: {why}; use 1 to 64 letters, digits, '_' or '-', starting with a letter, such as \"likes-service\"")]
    BadSname { sname: String, why: &'static str },
    #[error("host {host:?} is not an RFC 1123 hostname: {why}; the DNS answer that carried it is ignored")]
    BadHost { host: String, why: &'static str },
    #[error("port 0 is not a distribution port; the DNS record that carried it is ignored")]
    PortZero,
}

impl PeerNameError {
    /// A fixed tag for the broken rule.
    pub fn reason(&self) -> &'static str {
        match self {
            PeerNameError::BadSname { .. } => "bad_sname",
            PeerNameError::BadHost { .. } => "bad_host",
            PeerNameError::PortZero => "bad_port",
        }
    }
}

/// Checks a `node_sname`: what comes before `-<port>` in every peer's name.
pub fn validate_sname(sname: &str) -> Result<(), PeerNameError> {
    let bad = |why| {
        Err(PeerNameError::BadSname {
            sname: sname.chars().take(80).collect(),
            why,
        })
    };
    let Some(first) = sname.chars().next() else {
        return bad("it is empty");
    };
    if sname.chars().count() > MAX_SNAME_CHARS {
        return bad("it is longer than 64 characters");
    }
    if !first.is_ascii_alphabetic() {
        return bad("it does not start with a letter");
    }
    if !sname
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("it has a character other than a letter, digit, '_' or '-'");
    }
    Ok(())
}

/// Checks an RFC 1123 hostname with the rule SRV targets are held to
/// ([`crate::dns::hostname`]). A single trailing dot is allowed.
pub fn validate_hostname(host: &str) -> Result<(), PeerNameError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    match hostname::hostname_problem(name) {
        None => Ok(()),
        Some(why) => Err(PeerNameError::BadHost {
            host: host.escape_debug().take(80).collect(),
            why,
        }),
    }
}

/// Builds `<sname>-<port>@<host>`, lowercasing a hostname and dropping its
/// trailing dot; addresses are formatted as `inet:ntoa/1` does.
pub fn peer_name(sname: &str, port: u16, host: Host<'_>) -> Result<String, PeerNameError> {
    validate_sname(sname)?;
    if port == 0 {
        return Err(PeerNameError::PortZero);
    }
    let host = match host {
        Host::Name(name) => {
            validate_hostname(name)?;
            name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
        }
        Host::Ip(ip) => ip.to_string(),
    };
    let name = format!("{sname}-{port}@{host}");
    // 64 + 1 + 5 + 1 + 253 can pass 255: check, and prove the round trip.
    if name.len() > MAX_NAME_CHARS {
        return Err(PeerNameError::BadHost {
            host,
            why: "the node name it makes is longer than 255 characters",
        });
    }
    debug_assert_eq!(node_name::dist_port_str(&name), Ok(port));
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_peers_by_target() {
        let name = peer_name("likes-service", 4001, Host::Name("Node1.Node.DC1.consul."));
        assert_eq!(
            name.as_deref(),
            Ok("likes-service-4001@node1.node.dc1.consul")
        );
    }

    #[test]
    fn names_peers_by_address_as_otp_formats_them() {
        let v4 = peer_name("app", 4370, Host::Ip("10.0.1.5".parse().unwrap()));
        assert_eq!(v4.as_deref(), Ok("app-4370@10.0.1.5"));
        let v6 = peer_name("app", 4370, Host::Ip("2001:DB8:0:0::1".parse().unwrap()));
        assert_eq!(v6.as_deref(), Ok("app-4370@2001:db8::1"));
    }

    #[test]
    fn snames_at_the_boundary() {
        assert!(validate_sname("a").is_ok());
        assert!(validate_sname(&"a".repeat(64)).is_ok());
        assert!(validate_sname(&"a".repeat(65)).is_err());
        assert!(validate_sname("").is_err());
        assert!(validate_sname("1app").is_err());
        assert!(validate_sname("-app").is_err());
        for bad in ["a@b", "a b", "a.b", "a\u{0}", "é"] {
            assert_eq!(
                validate_sname(bad).unwrap_err().reason(),
                "bad_sname",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hostnames_at_the_boundary() {
        assert!(validate_hostname("a").is_ok());
        assert!(validate_hostname("a.").is_ok());
        assert!(validate_hostname(&"a".repeat(63)).is_ok());
        assert!(validate_hostname(&"a".repeat(64)).is_err());
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(validate_hostname(&long).is_ok());
        assert!(validate_hostname(&format!("{long}e")).is_err());
        for bad in [
            "",
            ".",
            "a..b",
            "-a",
            "a-",
            "a b",
            "a@b",
            "a\u{7}",
            "é.consul",
            "a_b",
        ] {
            assert_eq!(
                validate_hostname(bad).unwrap_err().reason(),
                "bad_host",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn port_zero_is_refused() {
        assert_eq!(
            peer_name("app", 0, Host::Name("h")).unwrap_err().reason(),
            "bad_port"
        );
    }

    #[test]
    fn over_long_names_are_refused() {
        let host = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        let err = peer_name(&"s".repeat(64), 65535, Host::Name(&host)).unwrap_err();
        assert!(err.to_string().contains("longer than 255"), "{err}");
    }
}
