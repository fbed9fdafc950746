//! Nameserver addresses as users write them.
//!
//! A nameserver is an IP address and a port. Consul's agent answers DNS on
//! 127.0.0.1:8600, so the port matters and is easy to forget: it defaults to
//! [`DEFAULT_PORT`] only when left out entirely.
//!
//! Text forms (parsed here): `"127.0.0.1:8600"`, `"127.0.0.1"`,
//! `"[::1]:8600"`, `"[::1]"`. An IPv6 address with a port needs brackets:
//! `"::1:8600"` is itself a valid IPv6 address, so without brackets a port
//! would silently become part of the address. Names (`"localhost:8600"`) are
//! refused: looking up the nameserver would need a nameserver.
//!
//! Pair forms (`{"10.0.183.34", "8700"}`, `{{127,0,0,1}, 8600}`) are split
//! by the caller and checked with [`from_parts`].

use std::net::{IpAddr, SocketAddr};

use super::error::NameserverError;

/// The DNS port, used when a nameserver is written without one.
pub const DEFAULT_PORT: u16 = 53;

/// A port as the user gave it: a number, or text such as `"8700"` (the
/// original library documented ports as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port<'a> {
    Number(i64),
    Text(&'a str),
}

/// Parses `"IP:PORT"`, `"IP"`, `"[IPv6]:PORT"` or `"[IPv6]"`.
pub fn parse(text: &str) -> Result<SocketAddr, NameserverError> {
    if text.is_empty() {
        return Err(NameserverError::Empty);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| not_an_ip(text))?;
        let ip: std::net::Ipv6Addr = inside.parse().map_err(|_| not_an_ip(inside))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(port) => port_from_text(port)?,
                None => return Err(not_an_ip(text)),
            },
        };
        return Ok(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(_) => Ok(SocketAddr::new(ip, DEFAULT_PORT)),
            IpAddr::V6(v6) => Err(NameserverError::UnbracketedIpv6 {
                address: v6.to_string(),
            }),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => {
            if host.contains(':') {
                // Several colons and no brackets: an IPv6 address with a port.
                return match host.parse::<IpAddr>() {
                    Ok(ip) => Err(NameserverError::UnbracketedIpv6 {
                        address: ip.to_string(),
                    }),
                    Err(_) => Err(not_an_ip(text)),
                };
            }
            let ip = host.parse::<IpAddr>().map_err(|_| not_an_ip(host))?;
            Ok(SocketAddr::new(ip, port_from_text(port)?))
        }
        None => Err(not_an_ip(text)),
    }
}

/// Builds a nameserver from a host text and a port given separately, as in
/// `{"10.0.183.34", "8700"}` or `{"::1", 8600}`. The host may be an IPv6
/// address with or without brackets: the port cannot be confused with it.
pub fn from_parts(host: &str, port: Port<'_>) -> Result<SocketAddr, NameserverError> {
    if host.is_empty() {
        return Err(NameserverError::Empty);
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = bare.parse::<IpAddr>().map_err(|_| not_an_ip(host))?;
    Ok(SocketAddr::new(ip, check_port(port)?))
}

/// A port given as a number or as text, checked to be in 1..65535.
pub fn check_port(port: Port<'_>) -> Result<u16, NameserverError> {
    match port {
        Port::Number(n) => match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(NameserverError::BadPort {
                port: n.to_string(),
            }),
        },
        Port::Text(text) => port_from_text(text),
    }
}

/// Ports are plain decimal: no sign, no spaces, no leading zeros, 1..65535.
fn port_from_text(text: &str) -> Result<u16, NameserverError> {
    let bad = || NameserverError::BadPort {
        port: text.to_owned(),
    };
    let plain = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if !plain {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(bad()),
    }
}

fn not_an_ip(host: &str) -> NameserverError {
    NameserverError::NotAnIp {
        host: host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        parse(text).unwrap().to_string()
    }

    #[test]
    fn string_forms() {
        assert_eq!(ok("127.0.0.1:8600"), "127.0.0.1:8600");
        assert_eq!(ok("10.0.183.34:8700"), "10.0.183.34:8700");
        assert_eq!(ok("127.0.0.1"), "127.0.0.1:53");
        assert_eq!(ok("[::1]:8600"), "[::1]:8600");
        assert_eq!(ok("[::1]"), "[::1]:53");
        assert_eq!(ok("[2001:db8::1]:53"), "[2001:db8::1]:53");
    }

    #[test]
    fn pair_forms() {
        let p = |h, port| from_parts(h, port).map(|a| a.to_string());
        assert_eq!(
            p("127.0.0.1", Port::Number(8600)).unwrap(),
            "127.0.0.1:8600"
        );
        assert_eq!(
            p("10.0.183.34", Port::Text("8700")).unwrap(),
            "10.0.183.34:8700"
        );
        assert_eq!(p("::1", Port::Number(8600)).unwrap(), "[::1]:8600");
        assert_eq!(p("[::1]", Port::Text("8600")).unwrap(), "[::1]:8600");
        assert_eq!(
            p("10.0.183.34", Port::Text("87000")).unwrap_err().reason(),
            "bad_port"
        );
        assert_eq!(
            p("localhost", Port::Number(53)).unwrap_err().reason(),
            "not_an_ip"
        );
        assert_eq!(p("", Port::Number(53)).unwrap_err().reason(), "empty");
    }

    #[test]
    fn ipv6_needs_brackets_when_written_as_a_string() {
        for text in ["::1", "::1:8600", "2001:db8::1"] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.reason(), "unbracketed_ipv6", "{text}");
            assert!(err.to_string().contains("needs brackets"), "{err}");
        }
    }

    #[test]
    fn bad_ports() {
        for text in [
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:99999",
            "127.0.0.1:08600",
            "127.0.0.1:+53",
            "127.0.0.1: 53",
            "127.0.0.1:53a",
            "[::1]:0",
        ] {
            assert_eq!(parse(text).unwrap_err().reason(), "bad_port", "{text}");
        }
        for n in [0, -1, 65536, i64::MAX, i64::MIN] {
            assert!(check_port(Port::Number(n)).is_err(), "{n}");
        }
        assert_eq!(check_port(Port::Number(65535)), Ok(65535));
    }

    #[test]
    fn names_and_junk_are_not_addresses() {
        for text in [
            "localhost:8600",
            "consul",
            "1.2.3:53",
            "[::1",
            "[::1]8600",
            "[127.0.0.1]:53",
            " 127.0.0.1:53",
            "127.0.0.1 :53",
        ] {
            assert_eq!(parse(text).unwrap_err().reason(), "not_an_ip", "{text}");
        }
        assert_eq!(parse("").unwrap_err(), NameserverError::Empty);
    }

    #[test]
    fn errors_name_the_part_at_fault() {
        let msg = parse("localhost:8600").unwrap_err().to_string();
        assert!(
            msg.starts_with("\"localhost\" is not an IP address"),
            "{msg}"
        );
        let msg = parse("127.0.0.1:99999").unwrap_err().to_string();
        assert!(
            msg.starts_with("port \"99999\" is not a port number"),
            "{msg}"
        );
    }
}
