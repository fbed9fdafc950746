//! Consul's address-encoded hostnames.
//!
//! A service registered with its own IP address is answered with an SRV target
//! `<hex-ip>.addr.<dc>.consul`: 8 hex digits for IPv4 (`0a000105` is
//! 10.0.1.5), 32 for IPv6. The address is in the name, so it is decoded here
//! with no DNS query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP address encoded in a Consul `<hex>.addr.<dc>.consul` hostname, or
/// `None` when `host` is not one. Case-insensitive; a trailing dot is allowed.
pub fn decode_addr_host(host: &str) -> Option<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    // Bytes: this runs for every target of every answer.
    let mut labels = host.as_bytes().split(|&b| b == b'.');
    let hex = labels.next()?;
    if !labels.next()?.eq_ignore_ascii_case(b"addr") {
        return None;
    }
    let dc = labels.next()?;
    if dc.is_empty() || !labels.next()?.eq_ignore_ascii_case(b"consul") || labels.next().is_some() {
        return None;
    }
    decode_hex_ip(hex)
}

fn decode_hex_ip(hex: &[u8]) -> Option<IpAddr> {
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let hex = std::str::from_utf8(hex).ok()?;
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ipv4_targets() {
        assert_eq!(
            decode_addr_host("0a000105.addr.dc1.consul."),
            Some("10.0.1.5".parse().unwrap())
        );
        assert_eq!(
            decode_addr_host("7F000002.ADDR.dc1.Consul"),
            Some("127.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn decodes_ipv6_targets() {
        assert_eq!(
            decode_addr_host("20010db8000000000000000000000001.addr.dc1.consul"),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn other_names_are_not_addresses() {
        for host in [
            "node1.node.dc1.consul",
            "0a00010.addr.dc1.consul",
            "0a0001055.addr.dc1.consul",
            "0g000105.addr.dc1.consul",
            "0a000105.addr..consul",
            "0a000105.addr.dc1.consul.evil",
            "0a000105.addr.consul",
            "+a000105.addr.dc1.consul",
            "",
            "example.com",
        ] {
            assert_eq!(decode_addr_host(host), None, "{host}");
        }
    }
}
